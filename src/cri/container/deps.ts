/**
 * What the container service needs from the plugins around it, as
 * structural types: runtime.oci's OciRuntime, images.store's ImageStore,
 * the snapshotter and the events exchange satisfy them.
 */
import type { EventExchange } from '../../core/events/index.js';
import type { ImageRecord } from '../../core/images/index.js';
import type { Logger } from '../../core/log.js';
import type { HostFacts, OciResources, OciSpec } from '../../core/runtime/spec/index.js';
import type { Snapshotter } from '../../core/snapshotter/index.js';
import type { ContainerStore, SandboxStore } from '../store/index.js';

/** The part of runtime.oci's OciRuntime containers use. */
export interface ContainerRuntime {
  create(req: {
    id: string;
    handler: string;
    bundle: string;
    spec: OciSpec;
    logPath: string;
    tty: boolean;
    stdin: boolean;
    stdinOnce: boolean;
  }): Promise<{ pid: number }>;
  start(id: string): Promise<void>;
  /** The signal, then SIGKILL after `timeoutSec` (0: SIGKILL at once); fine for a stopped container. */
  stop(id: string, timeoutSec: number, signal?: string): Promise<void>;
  /** runc delete -f and monitor cleanup; fine for an unknown container. */
  delete(id: string): Promise<void>;
  state(id: string): Promise<'created' | 'running' | 'stopped' | 'unknown'>;
  exitStatus(id: string): Promise<{ exitCode: number; exitedAt: Date; oomKilled: boolean } | undefined>;
  exec(
    id: string,
    req: { cmd: string[]; timeoutSec: number; maxOutputBytes?: number },
    signal?: AbortSignal,
  ): Promise<{ exitCode: number; stdout: Buffer; stderr: Buffer; timedOut: boolean }>;
  update(id: string, resources: OciResources): Promise<void>;
  reopenLog(id: string): Promise<void>;
  recover(id: string, handler: string): Promise<void>;
}

export interface ContainerServiceDeps {
  containers: ContainerStore;
  sandboxes: SandboxStore;
  runtime: ContainerRuntime;
  images: { get(refOrId: string): ImageRecord | undefined };
  snapshotter: Pick<Snapshotter, 'prepare' | 'remove' | 'usage' | 'fsInfo'>;
  events: Pick<EventExchange, 'publish' | 'subscribe'>;
  log: Logger;
  /** cri.service's state dir: containers' bundles and rootfs mounts go under `<stateDir>/containers/<id>`. */
  stateDir: string;
  /** Host facts for spec generation; read from the host once when not given. */
  host?: HostFacts;
}
