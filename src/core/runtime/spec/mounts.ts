/**
 * The mounts of a container: the kernel filesystems every container gets,
 * the pod's files (/etc/hosts, /etc/resolv.conf, /etc/hostname, /dev/shm),
 * and the CRI volume mounts, ordered so that no mount hides a deeper one.
 */
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { BerthError, errorMessage } from '../../errors.js';
import { MountPropagation, type Mount } from '../../../generated/api.js';
import type { OciMount, SpecNote } from './types.js';

/** Kernel filesystems of every container, before CRI mounts replace any of them. */
export function defaultMounts(opts: { privileged: boolean; cgroupMount: boolean }): OciMount[] {
  const sysMode = opts.privileged ? 'rw' : 'ro';
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', sysMode] },
  ];
  if (opts.cgroupMount) {
    mounts.push({ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', sysMode] });
  }
  return mounts;
}

function mountError(message: string, m: Mount, cause?: unknown): BerthError {
  return new BerthError('invalid-argument', 'ERR_SPEC_MOUNT', message, {
    context: { hostPath: m.hostPath, containerPath: m.containerPath },
    cause,
  });
}

function depth(p: string): number {
  return (path.posix.normalize(p).match(/\//g) ?? []).length;
}

export interface PodFileMounts {
  resolvConfPath: string;
  hostsPath: string;
  hostnamePath: string;
  shmPath: string;
}

/** The pod's shared files as CRI mounts; read-only with a read-only rootfs, as containerd does. '' paths are left out. */
export function podFileMounts(files: PodFileMounts, readonlyRootfs: boolean): Mount[] {
  const mk = (containerPath: string, hostPath: string, readonly: boolean): Mount => ({
    containerPath,
    hostPath,
    readonly,
    selinuxRelabel: false,
    propagation: MountPropagation.PROPAGATION_PRIVATE,
    uidMappings: [],
    gidMappings: [],
    recursiveReadOnly: false,
    image: undefined,
    imageSubPath: '',
  });
  const out: Mount[] = [];
  if (files.hostnamePath !== '') out.push(mk('/etc/hostname', files.hostnamePath, readonlyRootfs));
  if (files.hostsPath !== '') out.push(mk('/etc/hosts', files.hostsPath, readonlyRootfs));
  if (files.resolvConfPath !== '') out.push(mk('/etc/resolv.conf', files.resolvConfPath, readonlyRootfs));
  if (files.shmPath !== '') out.push(mk('/dev/shm', files.shmPath, false));
  return out;
}

export interface MountPlan {
  mounts: OciMount[];
  rootfsPropagation?: 'rslave' | 'rshared';
  notes: SpecNote[];
}

/**
 * Merges defaults, pod files and CRI mounts. A CRI mount replaces a pod file
 * or default at the same destination; a CRI or pod-file mount of /dev drops
 * every default below /dev. Bind mounts are sorted by depth (stable), so /a
 * is mounted before /a/b. Host paths must exist (symlinks are followed), as
 * the CRI asks; selinux_relabel is ignored (no SELinux here).
 */
export async function planMounts(defaults: OciMount[], podFiles: Mount[], criMounts: Mount[]): Promise<MountPlan> {
  const notes: SpecNote[] = [];
  for (const m of criMounts) {
    if (!m.containerPath.startsWith('/')) throw mountError(`mount destination ${JSON.stringify(m.containerPath)} is not an absolute path`, m);
    if (m.image !== undefined && m.image.image !== '') throw new BerthError('unimplemented', 'ERR_SPEC_MOUNT_IMAGE', `image volumes are not supported (mount at ${m.containerPath})`, { context: { containerPath: m.containerPath } });
    if (m.uidMappings.length > 0 || m.gidMappings.length > 0) {
      throw new BerthError('unimplemented', 'ERR_SPEC_MOUNT_IDMAP', `ID-mapped mounts are not supported (mount at ${m.containerPath})`, { context: { containerPath: m.containerPath } });
    }
  }
  const criDest = new Set(criMounts.map((m) => path.posix.normalize(m.containerPath)));
  const binds = [...criMounts, ...podFiles.filter((m) => !criDest.has(path.posix.normalize(m.containerPath)))];
  const ordered = binds.map((m, i) => ({ m, i })).sort((a, b) => depth(a.m.containerPath) - depth(b.m.containerPath) || a.i - b.i).map((x) => x.m);

  const bindDest = new Set(binds.map((m) => path.posix.normalize(m.containerPath)));
  const devReplaced = bindDest.has('/dev');
  const out: OciMount[] = defaults.filter((d) => {
    const dst = path.posix.normalize(d.destination);
    return !bindDest.has(dst) && !(devReplaced && dst.startsWith('/dev/'));
  });

  let rootfsPropagation: MountPlan['rootfsPropagation'];
  const podFileSet = new Set(podFiles);
  for (const m of ordered) {
    const isCri = !podFileSet.has(m);
    let source = m.hostPath;
    if (isCri) {
      if (!m.hostPath.startsWith('/')) throw mountError(`mount source ${JSON.stringify(m.hostPath)} is not an absolute path`, m);
      try {
        source = await realpath(m.hostPath);
      } catch (err) {
        throw mountError(`mount source ${m.hostPath} (for ${m.containerPath}): ${errorMessage(err)}`, m, err);
      }
    }
    const options = ['rbind'];
    switch (m.propagation) {
      case MountPropagation.PROPAGATION_BIDIRECTIONAL:
        options.push('rshared');
        rootfsPropagation = 'rshared';
        notes.push({ kind: 'mount-propagation', hostPath: source, containerPath: m.containerPath, needs: 'shared' });
        break;
      case MountPropagation.PROPAGATION_HOST_TO_CONTAINER:
        options.push('rslave');
        if (rootfsPropagation !== 'rshared') rootfsPropagation = 'rslave';
        notes.push({ kind: 'mount-propagation', hostPath: source, containerPath: m.containerPath, needs: 'shared-or-slave' });
        break;
      default:
        options.push('rprivate');
    }
    if (m.recursiveReadOnly) {
      if (!m.readonly) throw mountError(`recursive read-only mount at ${m.containerPath} must also be read-only`, m);
      if (m.propagation !== MountPropagation.PROPAGATION_PRIVATE) {
        throw mountError(`recursive read-only mount at ${m.containerPath} needs private propagation`, m);
      }
    }
    options.push(m.readonly ? 'ro' : 'rw');
    // runc (1.1+, kernel 5.12+ mount_setattr) makes every submount read-only too; the handler's
    // features report whether it can, and kubelet asks only then.
    if (m.recursiveReadOnly) options.push('rro');
    out.push({ destination: m.containerPath, type: 'bind', source, options });
  }
  const plan: MountPlan = { mounts: out, notes };
  if (rootfsPropagation !== undefined) plan.rootfsPropagation = rootfsPropagation;
  return plan;
}
