/**
 * The records the CRI service keeps for sandboxes and containers, and how
 * they become JSON in the metadata DB. CRI messages inside a record (the
 * configs, mounts, resources) go through ts-proto's toJSON/fromJSON, so their
 * int64 fields survive as decimal strings and fields added to the CRI later
 * read back with their defaults; the record's own bigint fields are listed in
 * its codec and stored as decimal strings.
 */
import { BerthError, errorMessage } from '../../core/errors.js';
import type { PodNetworkRecord } from '../../cni/index.js';
import { ContainerConfig, LinuxContainerResources, Mount, PodSandboxConfig } from '../../generated/api.js';

export type SandboxState = 'ready' | 'notready';

export interface SandboxRecord {
  /** 64 hex digits. */
  id: string;
  /** `k8s_POD_<name>_<namespace>_<uid>_<attempt>` (see names.ts). */
  name: string;
  config: PodSandboxConfig;
  /** The handler as the request named it ('' = default), reported back in status. */
  runtimeHandler: string;
  /** The runtime.oci handler the sandbox and its containers run under (resolved name). */
  handler: string;
  state: SandboxState;
  /** ns since the epoch. */
  createdAt: bigint;
  /** The pod uses the host's network namespace: no netns, no CNI. */
  hostNetwork: boolean;
  /** Pinned network namespace file; '' with host network. */
  netnsPath: string;
  /** What CNI ADD gave, for DEL; absent with host network and once torn down. */
  network?: PodNetworkRecord | undefined;
  /** Pod IPs, primary first; empty with host network and once the network is torn down. */
  ips: string[];
  /** Process id of the pause process; 0 before it runs. */
  pid: number;
  /** The sandbox image: its id (config digest) and the reference it was found by. */
  image: { id: string; ref: string };
  /** Active snapshot holding the pause container's rootfs. */
  snapshotKey: string;
  /** Where that snapshot is mounted (the OCI bundle's rootfs). */
  rootfs: string;
  /** The sandbox's dir under cri.service's root dir (bundle). */
  dir: string;
  /** The sandbox's dir under cri.service's state dir (hostname, hosts, resolv.conf, shm). */
  stateDir: string;
  /** Files and the shm dir handed to containers ('' shm with host IPC). */
  hostnamePath: string;
  hostsPath: string;
  resolvConfPath: string;
  shmPath: string;
  /** The pause container's exit, once known. */
  exitCode?: number | undefined;
  exitedAt?: bigint | undefined;
}

export type ContainerRecordState = 'created' | 'running' | 'exited' | 'unknown';

export interface ContainerRecord {
  id: string;
  sandboxId: string;
  /** `k8s_<name>_<pod>_<namespace>_<uid>_<attempt>` (see names.ts). */
  name: string;
  config: ContainerConfig;
  /** The image's id, the digested reference reported as image_ref, and the reference the user gave. */
  image: { id: string; ref: string; userSpecified: string };
  state: ContainerRecordState;
  /** ns since the epoch; 0n when it has not happened. */
  createdAt: bigint;
  startedAt: bigint;
  finishedAt: bigint;
  exitCode: number;
  /** 'Completed' | 'Error' | 'OOMKilled' | '' (not exited). */
  reason: string;
  message: string;
  /** Process id of the container's init; 0 when not known. */
  pid: number;
  /** Host path of the CRI log file. */
  logPath: string;
  snapshotKey: string;
  rootfs: string;
  /** OCI bundle dir. */
  bundle: string;
  /** runtime.oci handler name. */
  handler: string;
  /** The container's CRI mounts (after resolving them), for status. */
  mounts: Mount[];
  /** The resources in effect (from the config, then UpdateContainerResources). */
  resources?: LinuxContainerResources | undefined;
  /** The signal StopContainer sends first ('' = SIGTERM). */
  stopSignal: string;
}

/** How a record type maps to JSON: its CRI message fields and bigint fields. */
interface MessageCodec {
  fromJSON(object: unknown): unknown;
  toJSON(message: never): unknown;
}

export interface RecordCodec<R> {
  kind: string;
  /** Fields holding one CRI message, or an array of them. */
  messages: Partial<Record<keyof R & string, MessageCodec>>;
  /** Fields holding a bigint (or undefined). */
  bigints: ReadonlyArray<keyof R & string>;
}

/** Format version written into each row, so a later berthd can convert old rows. */
const FORMAT = 1;

export function encodeRecord<R extends { id: string }>(codec: RecordCodec<R>, record: R): string {
  const out: Record<string, unknown> = { ...record, v: FORMAT };
  for (const key of codec.bigints) {
    const value = out[key];
    if (value !== undefined) out[key] = (value as bigint).toString();
  }
  for (const [key, fns] of Object.entries(codec.messages) as Array<[string, MessageCodec]>) {
    const value = out[key];
    if (value === undefined) continue;
    out[key] = Array.isArray(value) ? value.map((m) => fns.toJSON(m as never)) : fns.toJSON(value as never);
  }
  return JSON.stringify(out);
}

export function decodeRecord<R extends { id: string }>(codec: RecordCodec<R>, text: string): R {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
    if (typeof parsed !== 'object' || parsed === null || typeof parsed['id'] !== 'string') throw new Error('not a record object');
    if (parsed['v'] !== FORMAT) throw new Error(`unknown record format ${String(parsed['v'])}`);
    delete parsed['v'];
    for (const key of codec.bigints) {
      const value = parsed[key];
      if (value !== undefined && value !== null) parsed[key] = BigInt(value as string);
    }
    for (const [key, fns] of Object.entries(codec.messages) as Array<[string, MessageCodec]>) {
      const value = parsed[key];
      if (value === undefined || value === null) continue;
      parsed[key] = Array.isArray(value) ? value.map((m) => fns.fromJSON(m)) : fns.fromJSON(value);
    }
  } catch (err) {
    throw new BerthError('internal', 'ERR_CRI_RECORD_INVALID', `cannot read a stored ${codec.kind} record: ${errorMessage(err)}`, {
      context: { kind: codec.kind },
      cause: err,
    });
  }
  return parsed as unknown as R;
}

export const sandboxCodec: RecordCodec<SandboxRecord> = {
  kind: 'sandbox',
  messages: { config: PodSandboxConfig },
  bigints: ['createdAt', 'exitedAt'],
};

export const containerCodec: RecordCodec<ContainerRecord> = {
  kind: 'container',
  messages: { config: ContainerConfig, mounts: Mount, resources: LinuxContainerResources },
  bigints: ['createdAt', 'startedAt', 'finishedAt'],
};

/** Now, in ns since the epoch. */
export function nowNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
}
