/**
 * ContainerStats from a container's cgroup (cgroups stats reader) and its
 * writable layer (the snapshot's usage), shaped as kubelet's CRI stats
 * provider reads them. usage_nano_cores comes from the previous sample of
 * the same container.
 */
import { cpuNanoCores, type CgroupStats } from '../../core/runtime/cgroups/index.js';
import type { ContainerStats, UInt64Value } from '../../generated/api.js';
import type { ContainerRecord } from '../store/index.js';

function u64(v: bigint | undefined): UInt64Value | undefined {
  return v === undefined ? undefined : { value: v };
}

export type CpuSample = Pick<CgroupStats, 'timestampNs' | 'cpu'>;

/** The cpu and memory sections of a cgroup sample. */
export function cgroupSections(cur: CgroupStats, prev: CpuSample | undefined): Pick<ContainerStats, 'cpu' | 'memory'> {
  const out: Pick<ContainerStats, 'cpu' | 'memory'> = {};
  if (cur.cpu !== undefined) {
    out.cpu = {
      timestamp: cur.timestampNs,
      usageCoreNanoSeconds: u64(cur.cpu.usageNs),
      usageNanoCores: u64(prev === undefined ? undefined : cpuNanoCores(prev, cur)),
      psi: undefined,
    };
  }
  if (cur.memory !== undefined) {
    const m = cur.memory;
    out.memory = {
      timestamp: cur.timestampNs,
      workingSetBytes: u64(m.workingSetBytes),
      availableBytes: u64(m.availableBytes),
      usageBytes: u64(m.usageBytes),
      rssBytes: u64(m.rssBytes),
      pageFaults: u64(m.pageFaults),
      majorPageFaults: u64(m.majorPageFaults),
      psi: undefined,
    };
  }
  return out;
}

export function attributesOf(record: ContainerRecord): NonNullable<ContainerStats['attributes']> {
  return { id: record.id, metadata: record.config.metadata, labels: record.config.labels, annotations: record.config.annotations };
}
