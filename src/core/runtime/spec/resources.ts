/**
 * cgroup limits and the OOM score of a container, from CRI
 * LinuxContainerResources (0 or "" means "not set" throughout).
 */
import { BerthError } from '../../errors.js';
import type { LinuxContainerResources } from '../../../generated/api.js';
import type { HostFacts, OciResources, SpecNote } from './types.js';

function invalid(message: string, field: string): BerthError {
  return new BerthError('invalid-argument', 'ERR_SPEC_RESOURCES', message, { context: { field } });
}

/** A bigint as a JS number; refuses values past 2^53 rather than rounding them. */
export function safeNumber(v: bigint, field: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw invalid(`${field} ${v} is out of range`, field);
  return Number(v);
}

function nonNegative(v: bigint, field: string): number {
  if (v < 0n) throw invalid(`${field} ${v} is negative`, field);
  return safeNumber(v, field);
}

/** cpuset list syntax: "0-3,6". */
const CPUSET = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;

/**
 * The resources section (without devices, which the caller owns). Without a
 * swap limit the swap limit equals the memory limit (no swapping), as in
 * containerd, when the host accounts swap. Hugepage limits need the hugetlb
 * controller and are left out (noted) without it. `unified` keys are cgroup
 * v2 files and are refused on a v1 host, where runc could not apply them.
 */
export function containerResources(r: LinuxContainerResources | undefined, host: HostFacts, notes: SpecNote[]): Omit<OciResources, 'devices'> {
  if (r === undefined) return {};
  const out: Omit<OciResources, 'devices'> = {};
  const cpu: NonNullable<OciResources['cpu']> = {};
  if (r.cpuPeriod !== 0n) cpu.period = nonNegative(r.cpuPeriod, 'cpu_period');
  // A negative quota (-1) means "no limit" to the kernel; pass it on.
  if (r.cpuQuota !== 0n) cpu.quota = safeNumber(r.cpuQuota, 'cpu_quota');
  if (r.cpuShares !== 0n) cpu.shares = nonNegative(r.cpuShares, 'cpu_shares');
  if (r.cpusetCpus !== '') {
    if (!CPUSET.test(r.cpusetCpus)) throw invalid(`cpuset_cpus ${JSON.stringify(r.cpusetCpus)} is not a cpu list`, 'cpuset_cpus');
    cpu.cpus = r.cpusetCpus;
  }
  if (r.cpusetMems !== '') {
    if (!CPUSET.test(r.cpusetMems)) throw invalid(`cpuset_mems ${JSON.stringify(r.cpusetMems)} is not a node list`, 'cpuset_mems');
    cpu.mems = r.cpusetMems;
  }
  if (Object.keys(cpu).length > 0) out.cpu = cpu;

  const memory: NonNullable<OciResources['memory']> = {};
  if (r.memoryLimitInBytes !== 0n) {
    memory.limit = nonNegative(r.memoryLimitInBytes, 'memory_limit_in_bytes');
    if (r.memorySwapLimitInBytes === 0n && host.swapAccounting) memory.swap = memory.limit;
  }
  if (r.memorySwapLimitInBytes !== 0n) {
    if (host.swapAccounting) memory.swap = safeNumber(r.memorySwapLimitInBytes, 'memory_swap_limit_in_bytes');
    else notes.push({ kind: 'ignored', setting: 'memory_swap_limit_in_bytes', reason: 'swap is not accounted on this host' });
  }
  if (Object.keys(memory).length > 0) out.memory = memory;

  if (r.hugepageLimits.length > 0) {
    if (host.hugetlb) {
      out.hugepageLimits = r.hugepageLimits.map((h) => {
        if (!/^\d+[KMGT]B$/.test(h.pageSize)) throw invalid(`hugepage size ${JSON.stringify(h.pageSize)} is not like "2MB"`, 'hugepage_limits');
        return { pageSize: h.pageSize, limit: nonNegative(h.limit, 'hugepage limit') };
      });
    } else {
      notes.push({ kind: 'ignored', setting: 'hugepage_limits', reason: 'the hugetlb cgroup controller is not available' });
    }
  }

  const unified = Object.entries(r.unified);
  if (unified.length > 0) {
    if (host.cgroupVersion !== 2) throw invalid(`unified cgroup settings (${unified.map(([k]) => k).join(', ')}) need cgroup v2; this host uses cgroup v1`, 'unified');
    out.unified = Object.fromEntries(unified);
  }
  return out;
}

/**
 * The OOM score adjustment: the request's (0 when unset), raised to berthd's
 * own when lower, since lowering it needs CAP_SYS_RESOURCE (containerd's
 * restrict_oom_score_adj). A raise is noted.
 */
export function clampOomScoreAdj(requested: number, host: HostFacts, notes: SpecNote[]): number {
  if (requested < -1000 || requested > 1000) throw invalid(`oom_score_adj ${requested} is outside -1000..1000`, 'oom_score_adj');
  if (requested < host.oomScoreAdjFloor) {
    notes.push({ kind: 'oom-score-adj-clamped', requested, applied: host.oomScoreAdjFloor });
    return host.oomScoreAdjFloor;
  }
  return requested;
}
