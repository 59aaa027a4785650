import type { Server } from '@grpc/grpc-js';
import { PluginType, type Registration } from '../core/plugin/types.js';
import {
  ImageServiceService,
  RuntimeServiceService,
  type RuntimeConfigRequest,
  type RuntimeConfigResponse,
  type StatusRequest,
  type StatusResponse,
  type UpdateRuntimeConfigRequest,
  type UpdateRuntimeConfigResponse,
  type VersionRequest,
  type VersionResponse,
} from '../generated/api.js';
import { implementService, unary } from './rpc.js';
import type { CriService } from './service.js';

/** A plugin that serves gRPC services on the daemon's server. */
export interface GrpcServicePlugin {
  register(server: Server): void;
}

/** Serves the CRI RuntimeService and ImageService over the CRI service plugin. */
export const criGrpcRegistration: Registration<Record<string, never>, GrpcServicePlugin> = {
  type: PluginType.GRPC,
  id: 'cri',
  requires: [PluginType.CRI],
  init(ctx) {
    const cri = ctx.get<CriService>(PluginType.CRI);
    const log = ctx.log;
    const runtime = implementService(RuntimeServiceService, {
      version: unary<VersionRequest, VersionResponse>(log, 'Version', () => cri.version()),
      status: unary<StatusRequest, StatusResponse>(log, 'Status', (req) => cri.status(req.verbose)),
      updateRuntimeConfig: unary<UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse>(log, 'UpdateRuntimeConfig', async (req) => {
        await cri.updateRuntimeConfig(req);
        return {};
      }),
      runtimeConfig: unary<RuntimeConfigRequest, RuntimeConfigResponse>(log, 'RuntimeConfig', () => cri.runtimeConfig()),
    });
    const image = implementService(ImageServiceService, {});
    return {
      register(server: Server) {
        server.addService(RuntimeServiceService, runtime);
        server.addService(ImageServiceService, image);
      },
    };
  },
};
