/**
 * Reading /etc/passwd and /etc/group of a container's root filesystem. The
 * rootfs is untrusted image content: a symlink in it is resolved as if the
 * rootfs were `/` (absolute targets and `..` never leave it), the final file
 * is opened with O_NOFOLLOW, must be a regular file, and is read up to a cap.
 * Nothing runs in the rootfs while a spec is made, so the tree does not
 * change under the walk.
 */
import { constants } from 'node:fs';
import { lstat, open, readlink } from 'node:fs/promises';
import path from 'node:path';
import { BerthError, errorMessage, isErrnoCode } from '../../errors.js';
import type { GroupEntry, PasswdEntry, PasswdLookup } from './types.js';

/** Real user databases are far smaller; this only bounds memory on a hostile image. */
export const MAX_USER_FILE_BYTES = 10 * 1024 * 1024;
const MAX_SYMLINKS = 40;

function unsafe(file: string, why: string, cause?: unknown): BerthError {
  return new BerthError('failed-precondition', 'ERR_SPEC_PASSWD_READ', `cannot read ${file} of the container image: ${why}`, {
    context: { file },
    cause,
  });
}

/**
 * Resolves `name` (a path inside the rootfs) to a host path under `root`,
 * following symlinks with `root` as the root directory. Returns null when a
 * component is missing or not a directory.
 */
export async function resolveInRoot(root: string, name: string): Promise<string | null> {
  const pending = name.split('/').filter((c) => c !== '' && c !== '.');
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const comp = pending.shift() as string;
    if (comp === '..') {
      resolved.pop();
      continue;
    }
    const hostPath = path.join(root, ...resolved, comp);
    let st;
    try {
      st = await lstat(hostPath);
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR')) return null;
      throw err;
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) throw unsafe(name, 'too many levels of symbolic links');
      const target = await readlink(hostPath);
      if (target.startsWith('/')) resolved.length = 0;
      pending.unshift(...target.split('/').filter((c) => c !== '' && c !== '.'));
      continue;
    }
    if (pending.length > 0 && !st.isDirectory()) return null;
    resolved.push(comp);
  }
  return path.join(root, ...resolved);
}

/** Reads a file of the rootfs safely; null when it does not exist. */
export async function readRootfsFile(root: string, name: string, maxBytes = MAX_USER_FILE_BYTES): Promise<string | null> {
  let hostPath: string | null;
  try {
    hostPath = await resolveInRoot(root, name);
  } catch (err) {
    if (err instanceof BerthError) throw err;
    throw unsafe(name, errorMessage(err), err);
  }
  if (hostPath === null) return null;
  let fh;
  try {
    // O_NONBLOCK: a FIFO planted at /etc/passwd must not hang the open.
    fh = await open(hostPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return null;
    throw unsafe(name, errorMessage(err), err);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw unsafe(name, 'not a regular file');
    // Sized by the file (one byte over, to see it end), not by the cap: a zeroed
    // cap-sized buffer per read made every pod and container cost megabytes.
    let buf = Buffer.allocUnsafe(Math.min(st.size, maxBytes) + 1);
    let total = 0;
    for (;;) {
      if (total === buf.length) {
        // The file grew since the stat.
        const bigger = Buffer.allocUnsafe(Math.min(buf.length * 2, maxBytes + 1));
        buf.copy(bigger, 0, 0, total);
        buf = bigger;
      }
      const { bytesRead } = await fh.read(buf, total, buf.length - total, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > maxBytes) throw unsafe(name, `larger than ${maxBytes} bytes`);
    }
    return buf.subarray(0, total).toString('utf8');
  } finally {
    await fh.close();
  }
}

function parseId(field: string | undefined): number | undefined {
  if (field === undefined || !/^\d{1,10}$/.test(field)) return undefined;
  const n = Number(field);
  return n <= 0x7fffffff ? n : undefined;
}

function dataLines(text: string): string[] {
  // Comments and NIS compat entries (+/-) name no local user.
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith('+') && !l.startsWith('-'));
}

/** Entries of an /etc/passwd text; malformed lines (bad ids) are skipped, never read as uid 0. */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of dataLines(text)) {
    const f = line.split(':');
    const uid = parseId(f[2]);
    const gid = parseId(f[3]);
    if (!f[0] || uid === undefined || gid === undefined) continue;
    out.push({ name: f[0], uid, gid, home: f[5] ?? '' });
  }
  return out;
}

/** Entries of an /etc/group text; malformed lines are skipped. */
export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of dataLines(text)) {
    const f = line.split(':');
    const gid = parseId(f[2]);
    if (!f[0] || gid === undefined) continue;
    const members = (f[3] ?? '')
      .split(',')
      .map((m) => m.trim())
      .filter((m) => m !== '');
    out.push({ name: f[0], gid, members });
  }
  return out;
}

/** The user database of the rootfs at `root`, read lazily and once. */
export function rootfsPasswd(root: string): PasswdLookup {
  let users: Promise<PasswdEntry[] | null> | undefined;
  let groups: Promise<GroupEntry[] | null> | undefined;
  return {
    users() {
      users ??= readRootfsFile(root, '/etc/passwd').then((t) => (t === null ? null : parsePasswd(t)));
      return users;
    },
    groups() {
      groups ??= readRootfsFile(root, '/etc/group').then((t) => (t === null ? null : parseGroup(t)));
      return groups;
    },
  };
}
