/**
 * CRI usage messages from cgroup stats (src/core/runtime/cgroups) and pod
 * network counters from /proc/<pid>/net/dev of a process in the pod's
 * network namespace.
 */
import { readFile } from 'node:fs/promises';
import { cpuNanoCores, type CgroupStats, type Psi } from '../../core/runtime/cgroups/index.js';
import type {
  CpuUsage,
  MemoryUsage,
  NetworkInterfaceUsage,
  NetworkUsage,
  ProcessUsage,
  PsiStats,
  UInt64Value,
} from '../../generated/api.js';

function u64(value: bigint | undefined): UInt64Value | undefined {
  return value === undefined ? undefined : { value };
}

function psiOf(psi: Psi | undefined): PsiStats | undefined {
  if (psi === undefined) return undefined;
  const data = (d: Psi['some']) => ({ Total: d.totalUs * 1000n, Avg10: d.avg10, Avg60: d.avg60, Avg300: d.avg300 });
  return { Some: data(psi.some), ...(psi.full === undefined ? {} : { Full: data(psi.full) }) };
}

/** CPU usage, with the rate since `previous` (an earlier read of the same cgroup) when given. */
export function cpuUsageOf(stats: CgroupStats, previous: CgroupStats | undefined): CpuUsage | undefined {
  if (stats.cpu === undefined) return undefined;
  const rate = previous === undefined ? undefined : cpuNanoCores(previous, stats);
  return {
    timestamp: stats.timestampNs,
    usageCoreNanoSeconds: u64(stats.cpu.usageNs),
    usageNanoCores: u64(rate),
    psi: psiOf(stats.cpu.psi),
  };
}

export function memoryUsageOf(stats: CgroupStats): MemoryUsage | undefined {
  const m = stats.memory;
  if (m === undefined) return undefined;
  return {
    timestamp: stats.timestampNs,
    workingSetBytes: u64(m.workingSetBytes),
    availableBytes: u64(m.availableBytes),
    usageBytes: u64(m.usageBytes),
    rssBytes: u64(m.rssBytes),
    pageFaults: u64(m.pageFaults),
    majorPageFaults: u64(m.majorPageFaults),
    psi: psiOf(m.psi),
  };
}

export function processUsageOf(stats: CgroupStats): ProcessUsage | undefined {
  if (stats.pids === undefined) return undefined;
  return { timestamp: stats.timestampNs, processCount: u64(stats.pids.current) };
}

/** Interface counters of a /proc/net/dev text, by interface name. */
export function parseNetDev(text: string): Map<string, NetworkInterfaceUsage> {
  const out = new Map<string, NetworkInterfaceUsage>();
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const f = line.slice(colon + 1).trim().split(/\s+/);
    // Receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes packets errs ...
    if (f.length < 11 || !f.every((x) => /^\d+$/.test(x))) continue;
    out.set(name, {
      name,
      rxBytes: { value: BigInt(f[0]!) },
      rxErrors: { value: BigInt(f[2]!) },
      txBytes: { value: BigInt(f[8]!) },
      txErrors: { value: BigInt(f[10]!) },
    });
  }
  return out;
}

/**
 * Network usage of the namespace `pid` lives in: `defaultIf` as the default
 * interface, the others but loopback as further interfaces; undefined when
 * the process is gone.
 */
export async function networkUsageOf(pid: number, defaultIf: string, timestamp: bigint): Promise<NetworkUsage | undefined> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/net/dev`, 'utf8');
  } catch {
    return undefined;
  }
  const all = parseNetDev(text);
  return {
    timestamp,
    defaultInterface: all.get(defaultIf),
    interfaces: [...all.values()].filter((i) => i.name !== defaultIf && i.name !== 'lo'),
  };
}
