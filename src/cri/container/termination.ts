/**
 * A container's termination message (kubelet's terminationMessagePath),
 * read once when it exits. kubelet bind-mounts a host file at the path
 * (default /dev/termination-log): then the mount's host file is read. A path
 * the container wrote inside its own root filesystem is read from the
 * rootfs, resolved within it (the rootfs is untrusted image content).
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { resolveInRoot } from '../../core/runtime/spec/passwd.js';
import type { Mount } from '../../generated/api.js';

/** The annotation kubelet puts the container's terminationMessagePath in. */
export const TERMINATION_MESSAGE_PATH_ANNOTATION = 'io.kubernetes.container.terminationMessagePath';
export const DEFAULT_TERMINATION_MESSAGE_PATH = '/dev/termination-log';
/** kubelet keeps at most this much of a message. */
export const MAX_TERMINATION_MESSAGE_BYTES = 4096;

/** Paths backed by the runtime's own filesystems inside the container, never by the rootfs. */
const VIRTUAL = ['/dev/', '/proc/', '/sys/'];

export interface TerminationSource {
  annotations: Readonly<Record<string, string>>;
  mounts: readonly Mount[];
  rootfs: string;
}

/** The host file holding the message, or undefined when there is none to read. */
export async function terminationMessageFile(c: TerminationSource): Promise<string | undefined> {
  const wanted = c.annotations[TERMINATION_MESSAGE_PATH_ANNOTATION] || DEFAULT_TERMINATION_MESSAGE_PATH;
  const mount = c.mounts.find((m) => m.containerPath === wanted);
  if (mount !== undefined) return mount.hostPath === '' ? undefined : mount.hostPath;
  if (VIRTUAL.some((v) => wanted.startsWith(v))) return undefined;
  return (await resolveInRoot(c.rootfs, wanted)) ?? undefined;
}

/** The first MAX_TERMINATION_MESSAGE_BYTES of the message; '' when there is none or it cannot be read. */
export async function readTerminationMessage(c: TerminationSource): Promise<string> {
  let file: string | undefined;
  try {
    file = await terminationMessageFile(c);
  } catch {
    return '';
  }
  if (file === undefined) return '';
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return '';
  }
  try {
    if (!(await handle.stat()).isFile()) return '';
    const buf = Buffer.alloc(MAX_TERMINATION_MESSAGE_BYTES);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } catch {
    return '';
  } finally {
    await handle.close();
  }
}
