import { Server } from '@grpc/grpc-js';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { unmountAllUnder } from '../core/mountinfo.js';
import { PluginRegistry, PluginType, type PluginKey, type Registration } from '../core/plugin/index.js';
import type { GrpcServicePlugin } from '../cri/grpc-plugin.js';
import type { DaemonConfig } from './config.js';
import { listenGrpcUnix, type GrpcUnixListener } from './grpc-listener.js';
import { claimSocketPath, removeSocket, secureSocket } from './socket.js';

/** Where plugins put short-lived mounts; whatever a crash left here is unmounted at start. */
export function tmpMountsDir(config: DaemonConfig): string {
  return join(config.state, 'tmpmounts');
}

export interface RunningDaemon {
  readonly address: string;
  readonly registry: PluginRegistry;
  /** Stops accepting, lets in-flight calls finish (bounded), closes plugins in reverse order. */
  close(): Promise<void>;
}

async function prepareDirs(config: DaemonConfig, log: Logger): Promise<void> {
  await mkdir(config.root, { recursive: true, mode: 0o711 });
  await mkdir(config.state, { recursive: true, mode: 0o711 });
  const tmp = tmpMountsDir(config);
  const leftovers = await unmountAllUnder(tmp);
  if (leftovers.length > 0) log.warn({ mounts: leftovers }, 'unmounted temporary mounts left by a previous run');
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true, mode: 0o700 });
}

/** Starts every plugin, then serves the gRPC plugins on the UNIX socket. */
export async function startDaemon(config: DaemonConfig, registrations: readonly Registration[], log: Logger): Promise<RunningDaemon> {
  const address = config.grpc.address;
  await prepareDirs(config, log);
  await claimSocketPath(address);

  const registry = new PluginRegistry({
    registrations,
    root: config.root,
    state: config.state,
    pluginConfig: config.plugins as Partial<Record<PluginKey, unknown>>,
    disabled: config.disabled_plugins,
    required: config.required_plugins,
    log,
  });
  await registry.init();

  const server = new Server({
    'grpc.max_receive_message_length': config.grpc.max_recv_message_size,
    'grpc.max_send_message_length': config.grpc.max_send_message_size,
    // Nothing serves channelz; its per-call and per-connection bookkeeping only costs time.
    'grpc.enable_channelz': 0,
  });
  for (const [id, plugin] of registry.getAll<GrpcServicePlugin>(PluginType.GRPC)) {
    plugin.register(server);
    log.debug({ plugin: `grpc.${id}` }, 'grpc services registered');
  }
  let listener: GrpcUnixListener | undefined;
  try {
    listener = await listenGrpcUnix(server, address, log);
    await secureSocket(address, config.grpc.gid);
  } catch (err) {
    await listener?.close(0);
    server.forceShutdown();
    await registry.close();
    await removeSocket(address);
    throw err;
  }
  log.info({ address }, 'serving CRI');
  const serving = listener;

  let closing: Promise<void> | undefined;
  return {
    address,
    registry,
    close() {
      closing ??= (async () => {
        // The listener drains the connections (grpc-js's tryShutdown does not wait for injected ones).
        await serving.close(config.grpc.shutdown_timeout_seconds * 1000);
        server.forceShutdown(); // nothing is left in flight: this only releases grpc-js's state
        await registry.close();
        await removeSocket(address).catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'cannot remove socket'));
        log.info('stopped');
      })();
      return closing;
    },
  };
}
