import { resolve } from 'node:path';
import { BerthError } from '../errors.js';
import type { Mount } from '../snapshotter/index.js';

/** Where a layer is written, read from a snapshot's mounts without mounting them. */
export interface ApplyTarget {
  /** The writable dir: a bind mount's source, an overlay's upperdir. */
  root: string;
  /** An overlay's lower dirs, nearest first (empty for bind). */
  lowers: string[];
  /**
   * True for overlay: deletions are written as overlayfs whiteouts (char
   * device 0/0, `trusted.overlay.opaque=y`) for the lower dirs to be hidden.
   */
  overlay: boolean;
}

function invalid(message: string, mounts: readonly Mount[]): BerthError {
  return new BerthError('invalid-argument', 'ERR_DIFF_MOUNTS', message, { context: { mounts: JSON.stringify(mounts) } });
}

function option(m: Mount, name: string): string | undefined {
  const prefix = `${name}=`;
  const opt = m.options.find((o) => o.startsWith(prefix));
  return opt?.slice(prefix.length);
}

/** Splits overlay's `lowerdir` at unescaped colons. */
function splitLowerdir(value: string): string[] {
  return value
    .split(/(?<!\\):/)
    .filter((p) => p !== '')
    .map((p) => p.replace(/\\:/g, ':'));
}

/**
 * The dir to write a layer into, from the mounts of an active snapshot (one
 * mount: a writable bind, or an overlay with an upperdir). Relative paths
 * resolve against the mount's `cwd`.
 */
export function applyTarget(mounts: readonly Mount[]): ApplyTarget {
  const m = mounts[0];
  if (m === undefined || mounts.length !== 1) throw invalid(`expected one mount to apply a layer to, got ${mounts.length}`, mounts);
  const base = m.cwd ?? '/';
  const isBind = m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind');
  if (isBind) {
    if (m.options.includes('ro')) throw invalid(`bind mount of ${m.source} is read-only`, mounts);
    return { root: resolve(base, m.source), lowers: [], overlay: false };
  }
  if (m.type !== 'overlay') throw invalid(`cannot apply a layer to a ${m.type} mount`, mounts);
  const upper = option(m, 'upperdir');
  if (upper === undefined) throw invalid('overlay mount has no upperdir: it is read-only', mounts);
  const lower = option(m, 'lowerdir') ?? '';
  return { root: resolve(base, upper), lowers: splitLowerdir(lower).map((p) => resolve(base, p)), overlay: true };
}
