import { randomBytes } from 'node:crypto';
import type { ContentStore, Descriptor } from '../content/index.js';
import type { Applier } from '../diff/index.js';
import { BerthError, errorMessage, isBerthError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Snapshotter } from '../snapshotter/index.js';

/** Prefix of the active snapshots layers are extracted into; any left at start-up are debris of a crash. */
export const EXTRACT_PREFIX = 'extract-';

export interface UnpackDeps {
  content: Pick<ContentStore, 'follow'>;
  snapshotter: Pick<Snapshotter, 'prepare' | 'commit' | 'remove' | 'stat' | 'walk'>;
  diff: Applier;
  log: Logger;
}

export interface LayerUnpack {
  layer: Descriptor;
  /** The config's diff ID for this layer. */
  diffId: string;
  chainId: string;
  /** Chain ID of the layer below; undefined for the bottom layer. */
  parent: string | undefined;
  /** Puts the snapshot named by `chainId` under the pull's lease (before it is looked at). */
  protect: (chainId: string) => Promise<void>;
  /**
   * Settles when the layer blob is in the content store (digest and size
   * verified) or its download failed. The layer is read while it downloads
   * (ContentStore.follow), whose end proves the bytes matched the digest:
   * the snapshot is committed then, without waiting for the blob's fsync
   * (the pull writes no record before every download settled).
   */
  downloaded: Promise<void>;
  signal: AbortSignal;
}

function isCode(err: unknown, code: string): boolean {
  return isBerthError(err) && err.code === code;
}

/**
 * Turns layers into committed snapshots named by chain ID: a layer whose
 * snapshot exists is skipped; otherwise it is applied into a fresh active
 * snapshot on its parent and committed. Concurrent unpacks of one chain ID in
 * this process wait for each other instead of extracting twice.
 */
export class Unpacker {
  private readonly deps: UnpackDeps;
  private readonly inFlight = new Map<string, Promise<unknown>>();

  constructor(deps: UnpackDeps) {
    this.deps = deps;
  }

  /** Removes the extraction snapshots a crash left behind; returns their keys. */
  async removeLeftovers(): Promise<string[]> {
    const { snapshotter, log } = this.deps;
    const keys: string[] = [];
    for await (const info of snapshotter.walk()) {
      if (info.kind === 'active' && info.key.startsWith(EXTRACT_PREFIX)) keys.push(info.key);
    }
    for (const key of keys) {
      try {
        await snapshotter.remove(key);
      } catch (err) {
        log.warn({ snapshot: key, err: errorMessage(err) }, 'cannot remove leftover extraction snapshot');
      }
    }
    return keys;
  }

  /** Makes sure the layer's chain ID is a committed snapshot; true if this call extracted it. */
  async unpack(u: LayerUnpack): Promise<boolean> {
    for (;;) {
      const running = this.inFlight.get(u.chainId);
      if (running === undefined) break;
      await untilSettled(running, u.signal);
    }
    const work = this.unpackOnce(u);
    this.inFlight.set(u.chainId, work);
    try {
      return await work;
    } finally {
      if (this.inFlight.get(u.chainId) === work) this.inFlight.delete(u.chainId);
    }
  }

  private async committed(chainId: string): Promise<boolean> {
    try {
      const info = await this.deps.snapshotter.stat(chainId);
      if (info.kind !== 'committed') {
        throw new BerthError('internal', 'ERR_UNPACK_SNAPSHOT_KIND', `snapshot ${chainId} exists but is ${info.kind}, not committed`, {
          context: { snapshot: chainId },
        });
      }
      return true;
    } catch (err) {
      if (isCode(err, 'ERR_SNAPSHOT_NOT_FOUND')) return false;
      throw err;
    }
  }

  private async unpackOnce(u: LayerUnpack): Promise<boolean> {
    const { snapshotter, content, diff, log } = this.deps;
    await u.protect(u.chainId);
    if (await this.committed(u.chainId)) return false;
    u.signal.throwIfAborted();

    const key = `${EXTRACT_PREFIX}${randomBytes(6).toString('hex')}-${u.chainId.replace(/^sha256:/, '')}`;
    const started = performance.now();
    const mounts = await snapshotter.prepare(key, u.parent);
    let committed = false;
    try {
      const stream = content.follow(u.layer, { signal: u.signal });
      // The apply reads the follow to its end, which comes only after the digest and size were verified.
      const result = await diff.apply(mounts, stream, { mediaType: u.layer.mediaType, expectedDiffId: u.diffId, signal: u.signal });
      try {
        await snapshotter.commit(u.chainId, key);
        committed = true;
      } catch (err) {
        // Another process (or an earlier daemon's leftover) committed it first: theirs is as good.
        if (isCode(err, 'ERR_SNAPSHOT_EXISTS')) return false;
        throw err;
      }
      log.debug({ layer: u.layer.digest, chainId: u.chainId, bytes: result.size, ms: Math.round(performance.now() - started) }, 'layer unpacked');
      return true;
    } finally {
      if (!committed) {
        await snapshotter.remove(key).catch((err: unknown) => {
          log.warn({ snapshot: key, err: errorMessage(err) }, 'cannot remove extraction snapshot; it is removed at the next start');
        });
      }
    }
  }
}

/** Waits for `p` to settle (however it ends), or throws the signal's reason once it aborts. */
async function untilSettled(p: Promise<unknown>, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  let onAbort: () => void = () => undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    await Promise.race([p.then(() => undefined, () => undefined), aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
