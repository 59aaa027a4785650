import { Server, ServerCredentials } from '@grpc/grpc-js';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { unmountAllUnder } from '../core/mountinfo.js';
import { PluginRegistry, PluginType, type PluginKey, type Registration } from '../core/plugin/index.js';
import type { GrpcServicePlugin } from '../cri/grpc-plugin.js';
import type { DaemonConfig } from './config.js';
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

function bind(server: Server, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // The socket is born 0660: no window in which others may connect.
    const previous = process.umask(0o117);
    server.bindAsync(`unix://${address}`, ServerCredentials.createInsecure(), (err) => {
      process.umask(previous);
      if (err) {
        reject(new BerthError('unavailable', 'ERR_SOCKET_BIND', `cannot listen on ${address}: ${err.message}`, { context: { path: address }, cause: err }));
      } else {
        resolve();
      }
    });
  });
}

function shutdownServer(server: Server, timeoutMs: number, log: Logger): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      log.warn({ timeoutMs }, 'in-flight calls did not finish in time; cancelling them');
      server.forceShutdown();
      resolve();
    }, timeoutMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
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
  });
  for (const [id, plugin] of registry.getAll<GrpcServicePlugin>(PluginType.GRPC)) {
    plugin.register(server);
    log.debug({ plugin: `grpc.${id}` }, 'grpc services registered');
  }
  try {
    await bind(server, address);
    await secureSocket(address, config.grpc.gid);
  } catch (err) {
    server.forceShutdown();
    await registry.close();
    await removeSocket(address);
    throw err;
  }
  log.info({ address }, 'serving CRI');

  let closing: Promise<void> | undefined;
  return {
    address,
    registry,
    close() {
      closing ??= (async () => {
        await shutdownServer(server, config.grpc.shutdown_timeout_seconds * 1000, log);
        await registry.close();
        await removeSocket(address).catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'cannot remove socket'));
        log.info('stopped');
      })();
      return closing;
    },
  };
}
