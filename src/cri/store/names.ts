/**
 * Names of sandboxes and containers, built from their CRI metadata the way
 * kubelet-era dockershim and containerd build them, and unique: a name maps
 * to the one id holding it. A name is reserved before a sandbox or container
 * is made (so two concurrent requests for the same pod cannot both go
 * ahead) and released when making it fails or when it is removed.
 */
import { BerthError } from '../../core/errors.js';
import type { ContainerMetadata, PodSandboxMetadata } from '../../generated/api.js';

const DELIMITER = '_';

/** `k8s_POD_<name>_<namespace>_<uid>_<attempt>`. */
export function sandboxName(meta: PodSandboxMetadata): string {
  return ['k8s', 'POD', meta.name, meta.namespace, meta.uid, String(meta.attempt)].join(DELIMITER);
}

/** `k8s_<container>_<pod name>_<pod namespace>_<pod uid>_<container attempt>`. */
export function containerName(meta: ContainerMetadata, pod: PodSandboxMetadata): string {
  return ['k8s', meta.name, pod.name, pod.namespace, pod.uid, String(meta.attempt)].join(DELIMITER);
}

/** Name → id, for one kind of object. */
export class NameIndex {
  private readonly owners = new Map<string, string>();

  constructor(private readonly kind: string) {}

  /** Reserves `name` for `id`; already-exists when another id holds it (reserving it again for the same id is fine). */
  reserve(name: string, id: string): void {
    const owner = this.owners.get(name);
    if (owner !== undefined && owner !== id) {
      throw new BerthError('already-exists', 'ERR_CRI_NAME_RESERVED', `${this.kind} name ${JSON.stringify(name)} is already reserved for ${owner}`, {
        context: { kind: this.kind, name, owner },
      });
    }
    this.owners.set(name, id);
  }

  /** Releases `name` if `id` holds it. */
  release(name: string, id: string): void {
    if (this.owners.get(name) === id) this.owners.delete(name);
  }

  owner(name: string): string | undefined {
    return this.owners.get(name);
  }
}
