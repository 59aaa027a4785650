/** CRI views of a sandbox record (answered from memory). */
import {
  ListPodSandboxResponse,
  NamespaceOption,
  PodSandboxConfig,
  PodSandboxState,
  type PodSandbox,
  type PodSandboxStatus,
} from '../../generated/api.js';
import { EntryCache } from '../encoded-list.js';
import type { SandboxRecord } from '../store/index.js';

export function criState(state: SandboxRecord['state']): PodSandboxState {
  return state === 'ready' ? PodSandboxState.SANDBOX_READY : PodSandboxState.SANDBOX_NOTREADY;
}

/** The record's state for a CRI filter state; undefined for an unknown value (matches nothing). */
export function recordState(state: PodSandboxState): SandboxRecord['state'] | undefined {
  if (state === PodSandboxState.SANDBOX_READY) return 'ready';
  if (state === PodSandboxState.SANDBOX_NOTREADY) return 'notready';
  return undefined;
}

export function toCriSandbox(r: SandboxRecord): PodSandbox {
  return {
    id: r.id,
    metadata: r.config.metadata,
    state: criState(r.state),
    createdAt: r.createdAt,
    labels: r.config.labels,
    annotations: r.config.annotations,
    runtimeHandler: r.runtimeHandler,
  };
}

/** ListPodSandboxResponse bytes of records, each record's entry encoded once. */
export const sandboxList = new EntryCache<SandboxRecord, ListPodSandboxResponse>(ListPodSandboxResponse, (r) => ({ items: [toCriSandbox(r)] }));

export function toCriStatus(r: SandboxRecord): PodSandboxStatus {
  const [ip, ...additional] = r.ips;
  return {
    id: r.id,
    metadata: r.config.metadata,
    state: criState(r.state),
    createdAt: r.createdAt,
    // Always set (empty for host network, as containerd): kubelet logs a complaint when it is missing.
    network: { ip: ip ?? '', additionalIps: additional.map((a) => ({ ip: a })) },
    // No options in the config means POD for every namespace (what the sandbox was made with): say so.
    linux: { namespaces: { options: r.config.linux?.securityContext?.namespaceOptions ?? NamespaceOption.fromPartial({}) } },
    labels: r.config.labels,
    annotations: r.config.annotations,
    runtimeHandler: r.runtimeHandler,
  };
}

/** The verbose `info` entry: what crictl inspectp shows next to the status. */
export function verboseInfo(r: SandboxRecord): Record<string, string> {
  const info = {
    pid: r.pid,
    processStatus: r.state === 'ready' ? 'running' : 'stopped',
    netNamespacePath: r.netnsPath,
    netNamespaceClosed: r.network === undefined && !r.hostNetwork,
    hostNetwork: r.hostNetwork,
    image: r.image.ref,
    imageId: r.image.id,
    snapshotKey: r.snapshotKey,
    rootfs: r.rootfs,
    runtimeHandler: r.handler,
    shmPath: r.shmPath,
    resolvConfPath: r.resolvConfPath,
    hostsPath: r.hostsPath,
    hostnamePath: r.hostnamePath,
    exitCode: r.exitCode,
    config: PodSandboxConfig.toJSON(r.config),
    cniResult: r.network === undefined ? null : Object.fromEntries(r.network.attachments.map((a) => [a.ifName, { network: a.network, result: a.result }])),
  };
  return { info: JSON.stringify(info) };
}
