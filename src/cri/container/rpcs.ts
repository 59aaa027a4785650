import { status as GrpcStatus, type ServerWritableStream } from '@grpc/grpc-js';
import type { Logger } from '../../core/log.js';
import type {
  ContainerEventResponse,
  ContainerStatsRequest,
  ContainerStatsResponse,
  ContainerStatusRequest,
  ContainerStatusResponse,
  CreateContainerRequest,
  CreateContainerResponse,
  ExecSyncRequest,
  ExecSyncResponse,
  GetEventsRequest,
  ListContainersRequest,
  ListContainerStatsRequest,
  ListContainerStatsResponse,
  RemoveContainerRequest,
  RemoveContainerResponse,
  ReopenContainerLogRequest,
  ReopenContainerLogResponse,
  StartContainerRequest,
  StartContainerResponse,
  StopContainerRequest,
  StopContainerResponse,
  UpdateContainerResourcesRequest,
  UpdateContainerResourcesResponse,
} from '../../generated/api.js';
import { unary, withCallSignal } from '../rpc.js';
import type { ContainerService } from './service.js';
import { containerList } from './status.js';

/**
 * Events a GetContainerEvents client may fall behind by (grpc-js streams
 * count queued messages) before its stream is ended (it reconnects and
 * relists), so a stuck client cannot make berthd buffer without bound.
 */
export const EVENT_STREAM_MAX_BACKLOG = 10_000;

/** The longest timer Node.js keeps (2^31-1 ms), in whole seconds. */
const MAX_TIMER_SECONDS = 2_147_483n;

/** A CRI int64 count of seconds as a JS number, at least 0 and at most what a timer can wait. */
function seconds(v: bigint): number {
  if (v <= 0n) return 0;
  return Number(v > MAX_TIMER_SECONDS ? MAX_TIMER_SECONDS : v);
}

/** grpc-js handlers of the container RPCs of RuntimeService, for implementService. */
export function containerRpcs(log: Logger, service: ContainerService) {
  return {
    createContainer: unary<CreateContainerRequest, CreateContainerResponse>(log, 'CreateContainer', async (req) => ({
      containerId: await service.create(req),
    })),
    startContainer: unary<StartContainerRequest, StartContainerResponse>(log, 'StartContainer', async (req) => {
      await service.start(req.containerId);
      return {};
    }),
    stopContainer: unary<StopContainerRequest, StopContainerResponse>(log, 'StopContainer', async (req) => {
      await service.stopContainer(req.containerId, seconds(req.timeout));
      return {};
    }),
    removeContainer: unary<RemoveContainerRequest, RemoveContainerResponse>(log, 'RemoveContainer', async (req) => {
      await service.removeContainer(req.containerId);
      return {};
    }),
    listContainers: unary<ListContainersRequest, Buffer>(log, 'ListContainers', (req) => containerList.encode(service.list(req.filter))),
    containerStatus: unary<ContainerStatusRequest, ContainerStatusResponse>(log, 'ContainerStatus', (req) => service.status(req.containerId, req.verbose)),
    updateContainerResources: unary<UpdateContainerResourcesRequest, UpdateContainerResourcesResponse>(log, 'UpdateContainerResources', async (req) => {
      await service.updateResources(req.containerId, req.linux);
      return {};
    }),
    reopenContainerLog: unary<ReopenContainerLogRequest, ReopenContainerLogResponse>(log, 'ReopenContainerLog', async (req) => {
      await service.reopenLog(req.containerId);
      return {};
    }),
    execSync: unary<ExecSyncRequest, ExecSyncResponse>(log, 'ExecSync', (req, call) =>
      withCallSignal(call, (signal) => service.execSync(req.containerId, req.cmd, seconds(req.timeout), signal)),
    ),
    containerStats: unary<ContainerStatsRequest, ContainerStatsResponse>(log, 'ContainerStats', async (req) => ({ stats: await service.stats(req.containerId) })),
    listContainerStats: unary<ListContainerStatsRequest, ListContainerStatsResponse>(log, 'ListContainerStats', async (req) => ({
      stats: await service.listStats(req.filter),
    })),
    getContainerEvents: (call: ServerWritableStream<GetEventsRequest, ContainerEventResponse>): void => {
      log.debug({ rpc: 'GetContainerEvents' }, 'event stream opened');
      let open = true;
      const close = (): void => {
        if (!open) return;
        open = false;
        unsubscribe();
        log.debug({ rpc: 'GetContainerEvents' }, 'event stream closed');
      };
      const unsubscribe = service.subscribeEvents((event) => {
        if (!open) return;
        if (call.writableLength >= EVENT_STREAM_MAX_BACKLOG) {
          close();
          log.warn({ rpc: 'GetContainerEvents', queued: call.writableLength }, 'event stream client too slow: ending its stream');
          call.emit('error', { code: GrpcStatus.RESOURCE_EXHAUSTED, details: 'the client fell too far behind the container event stream' });
          return;
        }
        call.write(event);
      });
      call.on('cancelled', close);
      call.on('close', close);
      call.on('error', close);
    },
  };
}
