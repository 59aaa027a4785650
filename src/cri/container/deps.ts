/**
 * What the container service needs from the plugins around it: a slice of
 * runtime.oci's OciRuntime, and structural types that images.store's
 * ImageStore, the snapshotter and the events exchange satisfy.
 */
import type { EventExchange } from '../../core/events/index.js';
import type { ImageRecord } from '../../core/images/index.js';
import type { Logger } from '../../core/log.js';
import type { OciRuntime } from '../../core/runtime/index.js';
import type { HostFacts } from '../../core/runtime/spec/index.js';
import type { Snapshotter } from '../../core/snapshotter/index.js';
import type { ContainerStore, SandboxStore } from '../store/index.js';

/** The part of runtime.oci's OciRuntime containers use. */
export type ContainerRuntime = Pick<
  OciRuntime,
  'create' | 'start' | 'stop' | 'delete' | 'state' | 'exitStatus' | 'exec' | 'update' | 'reopenLog' | 'recover'
>;

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
