import type { Server } from '@grpc/grpc-js';
import { PluginType, type Registration } from '../core/plugin/types.js';
import {
  ImageServiceService,
  type ImageFsInfoRequest,
  type ImageFsInfoResponse,
  type ImageStatusRequest,
  type ImageStatusResponse,
  type ListImagesRequest,
  type ListImagesResponse,
  type PullImageRequest,
  type PullImageResponse,
  type RemoveImageRequest,
  type RemoveImageResponse,
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
import { implementService, unary, withCallSignal } from './rpc.js';
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
    const images = cri.images;
    const image = implementService(ImageServiceService, {
      pullImage: unary<PullImageRequest, PullImageResponse>(log, 'PullImage', (req, call) => withCallSignal(call, (signal) => images.pull(req, signal))),
      imageStatus: unary<ImageStatusRequest, ImageStatusResponse>(log, 'ImageStatus', (req) => images.status(req.image, req.verbose)),
      listImages: unary<ListImagesRequest, ListImagesResponse>(log, 'ListImages', (req) => images.list(req)),
      removeImage: unary<RemoveImageRequest, RemoveImageResponse>(log, 'RemoveImage', async (req) => {
        await images.remove(req);
        return {};
      }),
      imageFsInfo: unary<ImageFsInfoRequest, ImageFsInfoResponse>(log, 'ImageFsInfo', () => images.fsInfo()),
    });
    return {
      register(server: Server) {
        server.addService(RuntimeServiceService, runtime);
        server.addService(ImageServiceService, image);
      },
    };
  },
};
