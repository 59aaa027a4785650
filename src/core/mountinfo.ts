import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { BerthError, errorMessage } from './errors.js';

const run = promisify(execFile);

/** Undoes mountinfo's octal escapes (`\040` for a space, and so on). */
function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Mount points of this process's mount namespace, in mount order. */
export async function listMountPoints(): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const points: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (field !== undefined) points.push(unescapeMountPath(field));
  }
  return points;
}

/** Mount points at or below `dir`, deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const points = (await listMountPoints()).filter((p) => p === dir || p.startsWith(prefix));
  // Later mounts may sit on top of earlier ones: unmount in reverse order.
  return [...new Set(points.reverse())];
}

/** Unmounts one mount point; a busy mount is detached lazily so it goes once unused. */
export async function unmount(target: string): Promise<void> {
  try {
    await run('umount', [target]);
  } catch (first) {
    try {
      await run('umount', ['-l', target]);
    } catch (err) {
      throw new BerthError('internal', 'ERR_UNMOUNT', `cannot unmount ${target}: ${errorMessage(err)} (after: ${errorMessage(first)})`, {
        context: { path: target },
        cause: err,
      });
    }
  }
}

/** Unmounts everything at or below `dir`; returns what it unmounted. */
export async function unmountAllUnder(dir: string): Promise<string[]> {
  const targets = await mountsUnder(dir);
  for (const target of targets) await unmount(target);
  return targets;
}
