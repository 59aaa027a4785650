import { execFile } from 'node:child_process';
import { access, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { errorMessage } from '../errors.js';
import { mount, unmountAll } from './mount.js';

const run = promisify(execFile);

const CHECK_PREFIX = 'overlay-check-';

/** The type of the filesystem holding `dir` (`ext4`, `xfs`, `overlay`...), or `unknown`. */
export async function filesystemType(dir: string): Promise<string> {
  try {
    const { stdout } = await run('findmnt', ['-n', '-o', 'FSTYPE', '-T', dir]);
    return stdout.trim() || 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * Tries, in `root`, the kind of mount the snapshotter makes: an overlay of
 * two lower dirs named relative to the mount's cwd, with an upper and a work
 * dir, and checks a lower file shows through. Returns why it failed, or
 * undefined when overlay works there. Leftovers of an earlier check cut
 * short are removed first.
 */
export async function overlayUnsupportedReason(root: string): Promise<string | undefined> {
  for (const name of await readdir(root)) {
    if (!name.startsWith(CHECK_PREFIX)) continue;
    await unmountAll(join(root, name, 'merged'), { detach: true });
    await rm(join(root, name), { recursive: true, force: true });
  }
  const dir = await mkdtemp(join(root, CHECK_PREFIX));
  const merged = join(dir, 'merged');
  try {
    for (const sub of ['l1', 'l2', 'upper', 'work', 'merged']) await mkdir(join(dir, sub));
    await writeFile(join(dir, 'l1', 'probe'), 'x');
    try {
      await mount(
        [{ type: 'overlay', source: 'overlay', cwd: dir, options: [`lowerdir=l2:l1`, `upperdir=${join(dir, 'upper')}`, `workdir=${join(dir, 'work')}`] }],
        merged,
      );
    } catch (err) {
      return `overlayfs cannot be mounted on ${root} (filesystem ${await filesystemType(root)}): ${errorMessage(err)}`;
    }
    try {
      await access(join(merged, 'probe'));
    } catch {
      return `an overlay mounted on ${root} (filesystem ${await filesystemType(root)}) does not show its lower dirs`;
    } finally {
      await unmountAll(merged, { detach: true });
    }
    return undefined;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
