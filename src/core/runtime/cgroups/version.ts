/**
 * Which cgroup layout the host uses: v2 when the root is a cgroup2 mount
 * (unified), v1 otherwise (legacy, or hybrid with a controller-less
 * `unified` dir beside the v1 hierarchies, as on this host).
 */
import { access, statfs } from 'node:fs/promises';
import path from 'node:path';
import { BerthError, errorMessage } from '../../errors.js';

export type CgroupVersion = 1 | 2;

export const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup';

/** statfs `f_type` of a cgroup2 mount. */
export const CGROUP2_SUPER_MAGIC = 0x63677270;

/**
 * The cgroup version at `root`: 2 for a cgroup2 mount, or for a tree whose
 * root has `cgroup.controllers` (which only v2 roots have); else 1.
 */
export async function detectCgroupVersion(root: string = DEFAULT_CGROUP_ROOT): Promise<CgroupVersion> {
  try {
    if (Number((await statfs(root)).type) === CGROUP2_SUPER_MAGIC) return 2;
  } catch (err) {
    throw new BerthError('failed-precondition', 'ERR_CGROUP_ROOT', `cannot read cgroup root ${root}: ${errorMessage(err)}`, {
      context: { root },
      cause: err,
    });
  }
  try {
    await access(path.join(root, 'cgroup.controllers'));
    return 2;
  } catch {
    return 1;
  }
}
