/**
 * Which Linux namespaces a container creates and which it joins.
 */
import { BerthError } from '../../errors.js';
import { NamespaceMode, type NamespaceOption } from '../../../generated/api.js';
import type { OciNamespace } from './types.js';

function nsError(message: string, kind: 'invalid-argument' | 'unimplemented' = 'invalid-argument'): BerthError {
  return new BerthError(kind, 'ERR_SPEC_NAMESPACE', message);
}

/** Namespace options with an unset message read as "all POD" (what older kubelets meant). */
export function namespaceModes(opts: NamespaceOption | undefined): { network: NamespaceMode; pid: NamespaceMode; ipc: NamespaceMode; targetId: string } {
  return {
    network: opts?.network ?? NamespaceMode.POD,
    pid: opts?.pid ?? NamespaceMode.POD,
    ipc: opts?.ipc ?? NamespaceMode.POD,
    targetId: opts?.targetId ?? '',
  };
}

/** User namespaces are not supported: only "none" or NODE is accepted. */
export function refuseUserNamespace(opts: NamespaceOption | undefined): void {
  const userns = opts?.usernsOptions;
  if (userns !== undefined && userns.mode !== NamespaceMode.NODE) {
    throw nsError('user namespaces (hostUsers: false) are not supported', 'unimplemented');
  }
}

export interface ContainerNamespaceInput {
  options: NamespaceOption | undefined;
  /** The sandbox's pause process. */
  sandboxPid: number;
  /** Pinned network namespace of the pod, joined instead of /proc/<pid>/ns/net when given. */
  netnsPath?: string | undefined;
  /** Process in the pid namespace to join for pid mode TARGET. */
  targetPid?: number | undefined;
  /** A private cgroup namespace (cgroup v2, unprivileged). */
  cgroupNamespace: boolean;
}

/**
 * A container joins its pod's network, IPC and UTS namespaces through the
 * pause process; NODE modes mean the host's (no namespace entry); the pid
 * namespace is the pod's (POD), its own (CONTAINER), the host's (NODE) or
 * another container's (TARGET). The mount namespace is always new.
 */
export function containerNamespaces(input: ContainerNamespaceInput): OciNamespace[] {
  const modes = namespaceModes(input.options);
  refuseUserNamespace(input.options);
  if (!Number.isInteger(input.sandboxPid) || input.sandboxPid <= 0) throw nsError(`invalid sandbox pid ${input.sandboxPid}`);
  const proc = (pid: number, ns: string) => `/proc/${pid}/ns/${ns}`;
  const out: OciNamespace[] = [{ type: 'mount' }];

  switch (modes.network) {
    case NamespaceMode.NODE:
      break;
    case NamespaceMode.POD:
      out.push({ type: 'network', path: input.netnsPath ?? proc(input.sandboxPid, 'net') });
      break;
    case NamespaceMode.CONTAINER:
      out.push({ type: 'network' });
      break;
    default:
      throw nsError(`network namespace mode ${modes.network} is not supported`);
  }
  // The pod's hostname lives in its UTS namespace; host-network pods use the host's.
  if (modes.network !== NamespaceMode.NODE) out.push({ type: 'uts', path: proc(input.sandboxPid, 'uts') });

  switch (modes.ipc) {
    case NamespaceMode.NODE:
      break;
    case NamespaceMode.POD:
      out.push({ type: 'ipc', path: proc(input.sandboxPid, 'ipc') });
      break;
    case NamespaceMode.CONTAINER:
      out.push({ type: 'ipc' });
      break;
    default:
      throw nsError(`ipc namespace mode ${modes.ipc} is not supported`);
  }

  switch (modes.pid) {
    case NamespaceMode.NODE:
      break;
    case NamespaceMode.POD:
      out.push({ type: 'pid', path: proc(input.sandboxPid, 'pid') });
      break;
    case NamespaceMode.CONTAINER:
      out.push({ type: 'pid' });
      break;
    case NamespaceMode.TARGET:
      if (input.targetPid === undefined || !Number.isInteger(input.targetPid) || input.targetPid <= 0) {
        throw nsError(`pid namespace mode TARGET (${modes.targetId || 'no target_id'}) needs the target container's pid`);
      }
      out.push({ type: 'pid', path: proc(input.targetPid, 'pid') });
      break;
    default:
      throw nsError(`pid namespace mode ${modes.pid} is not supported`);
  }
  if (input.cgroupNamespace) out.push({ type: 'cgroup' });
  return out;
}

/**
 * The pause container's namespaces: new ones of every kind but those the pod
 * shares with the host (NODE); its network namespace is the pinned one when
 * given. A host-network pod also keeps the host's UTS namespace.
 */
export function sandboxNamespaces(options: NamespaceOption | undefined, netnsPath: string | undefined): OciNamespace[] {
  const modes = namespaceModes(options);
  refuseUserNamespace(options);
  const out: OciNamespace[] = [{ type: 'mount' }];
  if (modes.network !== NamespaceMode.NODE) {
    out.push(netnsPath === undefined ? { type: 'network' } : { type: 'network', path: netnsPath });
    out.push({ type: 'uts' });
  }
  if (modes.ipc !== NamespaceMode.NODE) out.push({ type: 'ipc' });
  if (modes.pid !== NamespaceMode.NODE) out.push({ type: 'pid' });
  return out;
}
