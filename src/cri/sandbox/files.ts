/**
 * The per-pod files containers share: /etc/hostname, /etc/hosts and
 * /etc/resolv.conf (written under the sandbox's root-side dir, as containerd
 * does) and /dev/shm (a tmpfs per pod under its state-side dir, unless the pod
 * shares the host's IPC namespace).
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BerthError, errorMessage } from '../../core/errors.js';
import { unmount } from '../../core/snapshotter/index.js';
import type { DNSConfig } from '../../generated/api.js';

const run = promisify(execFile);

/** Size of a pod's /dev/shm (Docker's and containerd's default). */
export const SHM_SIZE_BYTES = 64 * 1024 * 1024;

export interface PodFiles {
  hostnamePath: string;
  hostsPath: string;
  resolvConfPath: string;
}

export interface HostFiles {
  /** The host's /etc/hosts and /etc/resolv.conf (copied into pods without their own). */
  hosts: string;
  resolvConf: string;
}

export const DEFAULT_HOST_FILES: HostFiles = { hosts: '/etc/hosts', resolvConf: '/etc/resolv.conf' };

/** resolv.conf text of a CRI DNSConfig; '' when it sets nothing. */
export function resolvConfOf(dns: DNSConfig | undefined): string {
  if (dns === undefined) return '';
  let text = '';
  if (dns.searches.length > 0) text += `search ${dns.searches.join(' ')}\n`;
  for (const server of dns.servers) text += `nameserver ${server}\n`;
  if (dns.options.length > 0) text += `options ${dns.options.join(' ')}\n`;
  return text;
}

/** Writes hostname, hosts and resolv.conf into `dir` (which must exist). */
export async function writePodFiles(dir: string, hostname: string, dns: DNSConfig | undefined, host: HostFiles): Promise<PodFiles> {
  const files: PodFiles = {
    hostnamePath: join(dir, 'hostname'),
    hostsPath: join(dir, 'hosts'),
    resolvConfPath: join(dir, 'resolv.conf'),
  };
  const resolv = resolvConfOf(dns);
  try {
    await Promise.all([
      writeFile(files.hostnamePath, `${hostname === '' ? osHostname() : hostname}\n`, { mode: 0o644 }),
      copyFile(host.hosts, files.hostsPath),
      resolv === '' ? copyFile(host.resolvConf, files.resolvConfPath) : writeFile(files.resolvConfPath, resolv, { mode: 0o644 }),
    ]);
  } catch (err) {
    throw new BerthError('internal', 'ERR_SANDBOX_FILES', `cannot write the pod's hostname, hosts and resolv.conf in ${dir}: ${errorMessage(err)}`, {
      context: { dir },
      cause: err,
    });
  }
  return files;
}

/** The command that mounts a fresh tmpfs for the pod's /dev/shm at `path` (which must exist). */
export function shmMountCommand(path: string): string[] {
  return ['mount', '-t', 'tmpfs', '-o', `nosuid,nodev,noexec,mode=1777,size=${SHM_SIZE_BYTES}`, 'shm', path];
}

/** Makes the pod's /dev/shm mount point at `path`. */
export async function makeShmDir(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 });
}

/** Mounts a fresh tmpfs for the pod's /dev/shm at `path` (created). */
export async function mountShm(path: string): Promise<void> {
  try {
    await makeShmDir(path);
    const [file, ...args] = shmMountCommand(path);
    await run(file!, args);
  } catch (err) {
    const stderr = (err as { stderr?: unknown }).stderr;
    const why = typeof stderr === 'string' && stderr.trim() !== '' ? stderr.trim() : errorMessage(err);
    throw new BerthError('internal', 'ERR_SANDBOX_SHM', `cannot mount the pod's /dev/shm at ${path}: ${why}`, { context: { path }, cause: err });
  }
}

/** Unmounts the pod's shm (not mounted: fine). A busy one is detached: a container may still hold it. */
export async function unmountShm(path: string): Promise<void> {
  if (path === '') return;
  await unmount(path, { detach: true });
}
