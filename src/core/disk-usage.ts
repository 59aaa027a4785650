import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrnoCode } from './errors.js';

/** st_blocks counts 512-byte units whatever the filesystem's block size. */
const BLOCK_UNIT = 512;

/**
 * Disk usage of a tree, like `du`: allocated blocks, and distinct inodes,
 * each hardlinked inode counted once. Never follows symlinks; entries that
 * vanish while walking (or a missing root) are skipped. Used by the content
 * store and the overlay snapshotter.
 */
export async function diskUsage(root: string): Promise<{ size: number; inodes: number }> {
  const seen = new Set<string>();
  let size = 0;

  const visit = async (path: string): Promise<void> => {
    let st;
    try {
      st = await lstat(path, { bigint: true });
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) return;
      throw err;
    }
    const id = `${st.dev}:${st.ino}`;
    if (!seen.has(id)) {
      seen.add(id);
      size += Number(st.blocks) * BLOCK_UNIT;
    }
    if (!st.isDirectory()) return;
    let names: string[];
    try {
      names = await readdir(path);
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) return;
      throw err;
    }
    await Promise.all(names.map((name) => visit(join(path, name))));
  };

  await visit(root);
  return { size, inodes: seen.size };
}
