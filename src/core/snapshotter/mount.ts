import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { BerthError, errorMessage } from '../errors.js';
import type { Mount } from './types.js';

const run = promisify(execFile);

/**
 * The kernel copies mount(2)'s option string in one page; longer strings are
 * cut. The terminating NUL takes one byte.
 */
export const MAX_MOUNT_DATA = 4095;

/** The `-o` string of a mount, checked to fit the kernel's page. */
export function mountData(m: Mount): string {
  const data = m.options.join(',');
  if (!isBind(m) && Buffer.byteLength(data) > MAX_MOUNT_DATA) {
    throw new BerthError(
      'failed-precondition',
      'ERR_MOUNT_OPTIONS_TOO_LONG',
      `${m.type} mount options are ${Buffer.byteLength(data)} bytes, more than the kernel's ${MAX_MOUNT_DATA}`,
      { context: { type: m.type, source: m.source } },
    );
  }
  return data;
}

function isBind(m: Mount): boolean {
  return m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind');
}

/**
 * Performs `mounts` in order on `target` (each at `target/<m.target>` when it
 * names a sub-path). Each is one mount(8) call, spawned with `m.cwd` as its
 * working directory so relative lower dirs resolve (see `Mount.cwd`). bind
 * mounts go through `mount -o rbind,ro SRC DST`, which libmount turns into a
 * bind plus a read-only remount. If one fails, the ones already made are
 * unmounted again.
 */
export async function mount(mounts: readonly Mount[], target: string): Promise<void> {
  const done: string[] = [];
  try {
    for (const m of mounts) {
      const dest = m.target === undefined ? resolve(target) : join(resolve(target), m.target);
      await mountOne(m, dest);
      done.push(dest);
    }
  } catch (err) {
    for (const dest of done.reverse()) await unmount(dest).catch(() => undefined);
    throw err;
  }
}

async function mountOne(m: Mount, dest: string): Promise<void> {
  const data = mountData(m);
  const args = isBind(m) ? ['-o', data, m.source, dest] : ['-t', m.type, '-o', data, m.source, dest];
  try {
    await run('mount', args, m.cwd === undefined ? {} : { cwd: m.cwd });
  } catch (err) {
    throw new BerthError('internal', 'ERR_MOUNT', `cannot mount ${m.type} ${m.source} on ${dest}: ${commandError(err)}`, {
      context: { type: m.type, source: m.source, target: dest, cwd: m.cwd },
      cause: err,
    });
  }
}

export interface UnmountOptions {
  /** Detach lazily (umount -l) if the mount stays busy. */
  detach?: boolean;
}

const BUSY_RETRIES = 20;
const BUSY_DELAY_MS = 50;

/**
 * Unmounts the top mount on `target`. A target that is not mounted (or does
 * not exist) is not an error, so cleanup paths can call this freely. A busy
 * mount is retried for about a second, then detached lazily if
 * `opts.detach`, else reported.
 */
export async function unmount(target: string, opts: UnmountOptions = {}): Promise<void> {
  let last: unknown;
  for (let attempt = 0; attempt < BUSY_RETRIES; attempt++) {
    try {
      await run('umount', [target]);
      return;
    } catch (err) {
      const text = commandError(err);
      if (/not mounted|no mount point specified|No such file or directory/.test(text)) return;
      last = err;
      if (!/busy/i.test(text)) break;
      await new Promise((r) => setTimeout(r, BUSY_DELAY_MS));
    }
  }
  if (opts.detach === true) {
    try {
      await run('umount', ['-l', target]);
      return;
    } catch (err) {
      last = err;
    }
  }
  throw new BerthError('internal', 'ERR_UNMOUNT', `cannot unmount ${target}: ${commandError(last)}`, {
    context: { target },
    cause: last,
  });
}

/** Unmounts every mount stacked on `target` (not mounts below it). */
export async function unmountAll(target: string, opts: UnmountOptions = {}): Promise<void> {
  const abs = resolve(target);
  while (await isMountPoint(abs)) await unmount(abs, opts);
}

async function isMountPoint(path: string): Promise<boolean> {
  try {
    await run('mountpoint', ['-q', path]);
    return true;
  } catch {
    return false;
  }
}

/** stderr of a failed command, else its message. */
function commandError(err: unknown): string {
  const stderr = (err as { stderr?: unknown } | undefined)?.stderr;
  if (typeof stderr === 'string' && stderr.trim() !== '') return stderr.trim();
  return errorMessage(err);
}
