import { chmod, chown, lstat, mkdir, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { BerthError, isErrnoCode } from '../core/errors.js';

/** Whether something accepts connections on a UNIX socket path. */
function answers(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ path });
    const done = (live: boolean) => {
      sock.destroy();
      resolve(live);
    };
    sock.setTimeout(timeoutMs, () => done(true)); // accepted but silent: still someone's socket
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * Makes `path` free for a new listener: a stale socket left by a dead daemon
 * is removed, a live one is an error (never stolen), anything that is not a
 * socket is an error too.
 */
export async function claimSocketPath(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o711 });
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return;
    throw err;
  }
  if (!isSocket) {
    throw new BerthError('failed-precondition', 'ERR_SOCKET_PATH', `${path} exists and is not a socket; refusing to replace it`, { context: { path } });
  }
  if (await answers(path)) {
    throw new BerthError('failed-precondition', 'ERR_SOCKET_IN_USE', `another process is serving on ${path} (is another berthd running?)`, { context: { path } });
  }
  await unlink(path);
}

/** Socket permissions: 0660, owned by root and the configured group. */
export async function secureSocket(path: string, gid: number): Promise<void> {
  await chown(path, 0, gid);
  await chmod(path, 0o660);
}

export async function removeSocket(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if (!isErrnoCode(err, 'ENOENT')) throw err;
  }
}
