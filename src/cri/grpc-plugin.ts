import type { Server } from '@grpc/grpc-js';
import type { Logger } from '../core/log.js';
import { PluginType, type Registration } from '../core/plugin/types.js';
import {
  ImageServiceService,
  type ImageFsInfoRequest,
  type ListPodSandboxRequest,
  type ListPodSandboxStatsRequest,
  type ListPodSandboxStatsResponse,
  type PodSandboxStatsRequest,
  type PodSandboxStatsResponse,
  type PodSandboxStatusRequest,
  type PodSandboxStatusResponse,
  type RemovePodSandboxRequest,
  type RemovePodSandboxResponse,
  type RunPodSandboxRequest,
  type RunPodSandboxResponse,
  type StopPodSandboxRequest,
  type StopPodSandboxResponse,
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
import { containerRpcs } from './container/index.js';
import { acceptingEncodedResponses } from './encoded-list.js';
import { sandboxList } from './sandbox/status.js';
import { implementService, unary, withCallSignal } from './rpc.js';
import type { CriService } from './service.js';

/** RuntimeService, with the list methods answering with bytes their records keep encoded (encoded-list.ts). */
const RUNTIME_SERVICE = acceptingEncodedResponses(RuntimeServiceService, ['listContainers', 'listPodSandbox']);

/** A plugin that serves gRPC services on the daemon's server. */
export interface GrpcServicePlugin {
  register(server: Server): void;
}

/** The pod sandbox RPCs of the RuntimeService. */
function sandboxHandlers(cri: CriService, log: Logger) {
  const pods = cri.sandboxes;
  return {
    runPodSandbox: unary<RunPodSandboxRequest, RunPodSandboxResponse>(log, 'RunPodSandbox', (req, call) =>
      withCallSignal(call, async (signal) => ({ podSandboxId: await pods.run(req, signal) })),
    ),
    stopPodSandbox: unary<StopPodSandboxRequest, StopPodSandboxResponse>(log, 'StopPodSandbox', async (req) => {
      await pods.stop(req.podSandboxId);
      return {};
    }),
    removePodSandbox: unary<RemovePodSandboxRequest, RemovePodSandboxResponse>(log, 'RemovePodSandbox', async (req) => {
      await pods.remove(req.podSandboxId);
      return {};
    }),
    podSandboxStatus: unary<PodSandboxStatusRequest, PodSandboxStatusResponse>(log, 'PodSandboxStatus', (req) => pods.status(req.podSandboxId, req.verbose)),
    listPodSandbox: unary<ListPodSandboxRequest, Buffer>(log, 'ListPodSandbox', (req) => sandboxList.encode(pods.list(req.filter))),
    podSandboxStats: unary<PodSandboxStatsRequest, PodSandboxStatsResponse>(log, 'PodSandboxStats', async (req) => ({ stats: await pods.stats(req.podSandboxId) })),
    listPodSandboxStats: unary<ListPodSandboxStatsRequest, ListPodSandboxStatsResponse>(log, 'ListPodSandboxStats', async (req) => ({
      stats: await pods.listStats(req),
    })),
  };
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
      ...sandboxHandlers(cri, log),
      ...containerRpcs(log, cri.containers),
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
        server.addService(RUNTIME_SERVICE, runtime);
        server.addService(ImageServiceService, image);
      },
    };
  },
};
