/**
 * Pod-level parts of PodSandboxStats: the process count of the pod cgroup
 * and the network counters from /proc/<pid>/net/dev of a process in the
 * pod's network namespace (cpu and memory come from the container
 * service's cgroupSections).
 */
import { readFile } from 'node:fs/promises';
import type { CgroupStats } from '../../core/runtime/cgroups/index.js';
import type { NetworkInterfaceUsage, NetworkUsage, ProcessUsage } from '../../generated/api.js';

export function processUsageOf(stats: CgroupStats): ProcessUsage | undefined {
  if (stats.pids === undefined) return undefined;
  return { timestamp: stats.timestampNs, processCount: { value: stats.pids.current } };
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
