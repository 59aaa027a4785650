/**
 * Facts about this host that decide what a runtime spec may contain. Read
 * once at start-up; none of them change while berthd runs.
 */
import { access, readFile, statfs } from 'node:fs/promises';
import { BerthError, errorMessage } from '../../errors.js';
import { capabilitiesFromMask } from './capabilities.js';
import type { HostFacts } from './types.js';

/** statfs f_type of a cgroup2 mount (linux/magic.h CGROUP2_SUPER_MAGIC). */
const CGROUP2_SUPER_MAGIC = 0x63677270;

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** The CapBnd mask of a /proc/<pid>/status text. */
export function boundingMaskFromStatus(status: string): string {
  const line = status.split('\n').find((l) => l.startsWith('CapBnd:'));
  if (line === undefined) throw new BerthError('internal', 'ERR_SPEC_HOST_FACTS', 'no CapBnd line in /proc/self/status');
  return line.slice('CapBnd:'.length).trim();
}

/** The cgroup path of this process in the unified hierarchy, from /proc/self/cgroup ("0::/path"). */
function unifiedCgroupOf(procCgroup: string): string {
  const line = procCgroup.split('\n').find((l) => l.startsWith('0::'));
  return line === undefined ? '/' : line.slice(3);
}

export async function hostFacts(): Promise<HostFacts> {
  try {
    const status = await readFile('/proc/self/status', 'utf8');
    const capabilities = capabilitiesFromMask(boundingMaskFromStatus(status));
    const oomText = (await readFile('/proc/self/oom_score_adj', 'utf8')).trim();
    const oomScoreAdjFloor = Number.parseInt(oomText, 10);
    if (!Number.isInteger(oomScoreAdjFloor)) throw new Error(`oom_score_adj is ${JSON.stringify(oomText)}`);
    const fsType = (await statfs('/sys/fs/cgroup')).type;
    const cgroupVersion = fsType === CGROUP2_SUPER_MAGIC ? 2 : 1;
    let swapAccounting: boolean;
    let hugetlb: boolean;
    if (cgroupVersion === 2) {
      // memory.swap.max is absent in the root cgroup: look next to our own.
      const own = unifiedCgroupOf(await readFile('/proc/self/cgroup', 'utf8'));
      swapAccounting = await exists(`/sys/fs/cgroup${own === '/' ? '' : own}/memory.swap.max`);
      const controllers = await readFile('/sys/fs/cgroup/cgroup.controllers', 'utf8').catch(() => '');
      hugetlb = controllers.split(/\s+/).includes('hugetlb');
    } else {
      swapAccounting = await exists('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes');
      hugetlb = await exists('/sys/fs/cgroup/hugetlb');
    }
    const apparmor = (await readFile('/sys/module/apparmor/parameters/enabled', 'utf8').catch(() => 'N')).trim() === 'Y';
    return { capabilities, oomScoreAdjFloor, cgroupVersion, swapAccounting, hugetlb, apparmor };
  } catch (err) {
    if (err instanceof BerthError) throw err;
    throw new BerthError('internal', 'ERR_SPEC_HOST_FACTS', `cannot read host facts: ${errorMessage(err)}`, { cause: err });
  }
}
