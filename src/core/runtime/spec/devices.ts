/**
 * Device nodes for a spec: CRI devices (a node, or a directory of nodes) and,
 * for privileged containers, every device under the host's /dev.
 */
import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { BerthError, errorMessage, isErrnoCode } from '../../errors.js';
import type { Device } from '../../../generated/api.js';
import type { OciDevice, OciDeviceRule } from './types.js';

/** glibc's major()/minor() of a dev_t. */
export function majorOf(dev: bigint): number {
  return Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
}
export function minorOf(dev: bigint): number {
  return Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
}

const S_IFMT = 0o170000n;
const S_IFCHR = 0o020000n;
const S_IFBLK = 0o060000n;
const S_IFIFO = 0o010000n;

/** The device at `hostPath` (not following a final symlink), or null if it is no device node. */
export async function deviceFromPath(hostPath: string): Promise<OciDevice | null> {
  const st = await lstat(hostPath, { bigint: true });
  const fmt = st.mode & S_IFMT;
  let type: OciDevice['type'];
  if (fmt === S_IFCHR) type = 'c';
  else if (fmt === S_IFBLK) type = 'b';
  else if (fmt === S_IFIFO) type = 'p';
  else return null;
  return {
    type,
    path: hostPath,
    major: majorOf(st.rdev),
    minor: minorOf(st.rdev),
    fileMode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
  };
}

/** Directories under /dev that hold no device nodes of their own to pass on (mounts, runtime state). */
const SKIPPED_DIRS = new Set(['pts', 'shm', 'fd', 'mqueue', '.lxc', '.lxd-mounts', '.udev']);

/**
 * Device nodes in the directory `dir`, recursively, placed under
 * `containerDir` (or at their host path when that is ''). FIFOs, /dev/console
 * and other non-devices are skipped.
 */
export async function devicesUnder(dir: string, containerDir: string): Promise<OciDevice[]> {
  const out: OciDevice[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const hostPath = path.join(dir, entry.name);
    const inContainer = containerDir === '' ? '' : path.posix.join(containerDir, entry.name);
    if (entry.isDirectory()) {
      if (SKIPPED_DIRS.has(entry.name)) continue;
      out.push(...(await devicesUnder(hostPath, inContainer)));
      continue;
    }
    if (entry.name === 'console') continue;
    let dev: OciDevice | null;
    try {
      dev = await deviceFromPath(hostPath);
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) continue; // went away while listing
      throw err;
    }
    if (dev === null || dev.type === 'p') continue;
    if (inContainer !== '') dev.path = inContainer;
    out.push(dev);
  }
  return out;
}

/** Every device node of the host's /dev, at the same paths (privileged containers). */
export function hostDevices(): Promise<OciDevice[]> {
  return devicesUnder('/dev', '');
}

function deviceError(message: string, device: Device, cause?: unknown): BerthError {
  return new BerthError('invalid-argument', 'ERR_SPEC_DEVICE', message, {
    context: { hostPath: device.hostPath, containerPath: device.containerPath },
    cause,
  });
}

/**
 * The nodes and cgroup allow rules of CRI devices. A host path may be a
 * symlink (followed) or a directory (every device below it, placed under the
 * container path). Permissions are any of r, w, m; '' means rwm.
 */
export async function criDevices(devices: Device[]): Promise<{ devices: OciDevice[]; rules: OciDeviceRule[] }> {
  const nodes: OciDevice[] = [];
  const rules: OciDeviceRule[] = [];
  for (const d of devices) {
    const access = d.permissions === '' ? 'rwm' : d.permissions;
    if (!/^[rwm]{1,3}$/.test(access) || new Set(access).size !== access.length) {
      throw deviceError(`device ${d.hostPath}: invalid permissions ${JSON.stringify(d.permissions)} (any of r, w, m)`, d);
    }
    if (!d.hostPath.startsWith('/')) throw deviceError(`device host path ${JSON.stringify(d.hostPath)} is not absolute`, d);
    const containerPath = d.containerPath === '' ? d.hostPath : d.containerPath;
    if (!containerPath.startsWith('/')) throw deviceError(`device container path ${JSON.stringify(containerPath)} is not absolute`, d);
    let found: OciDevice[];
    try {
      const real = await realpath(d.hostPath);
      if ((await stat(real)).isDirectory()) {
        found = await devicesUnder(real, containerPath);
      } else {
        const dev = await deviceFromPath(real);
        if (dev === null || dev.type === 'p') throw deviceError(`${d.hostPath} is not a device node`, d);
        dev.path = containerPath;
        found = [dev];
      }
    } catch (err) {
      if (err instanceof BerthError) throw err;
      throw deviceError(`device ${d.hostPath}: ${errorMessage(err)}`, d, err);
    }
    for (const dev of found) {
      nodes.push(dev);
      rules.push({ allow: true, type: dev.type === 'b' ? 'b' : 'c', major: dev.major, minor: dev.minor, access });
    }
  }
  return { devices: nodes, rules };
}
