import { performance } from 'node:perf_hooks';
import type { ContentStore } from '../content/index.js';
import { BerthError, errorMessage, isBerthError } from '../errors.js';
import type { Logger } from '../log.js';
import type { SqliteMetadata } from '../metadata/index.js';
import type { SnapshotInfo, Snapshotter } from '../snapshotter/index.js';
import { collectImageRefs, type ImageRefs } from './references.js';

/** What one collection did. */
export interface GcResult {
  removedBlobs: number;
  removedSnapshots: number;
  /** Leases past their expiry that were deleted before marking. */
  expiredLeases: number;
  /** Wall time of the run, waiting for guarded sections included. */
  ms: number;
}

export interface CollectorDeps {
  metadata: Pick<SqliteMetadata, 'images' | 'leases'>;
  content: Pick<ContentStore, 'walk' | 'delete' | 'readAll'>;
  snapshotter: Pick<Snapshotter, 'walk' | 'remove'>;
  log: Logger;
}

interface Request {
  promise: Promise<GcResult>;
  resolve(result: GcResult): void;
  reject(err: unknown): void;
}

/**
 * Mark and sweep over content blobs and committed snapshots.
 *
 * Roots: every image record (its target walked through indexes and manifests
 * to configs and layers, and the chain IDs of those configs), everything a
 * live lease lists, and every active or view snapshot. A kept snapshot keeps
 * its whole parent chain. Unmarked blobs are deleted; unmarked committed
 * snapshots are removed children first.
 *
 * Consistency: image records and leases are read in one synchronous step,
 * and a pull writes its image record and drops its lease in one transaction,
 * so whatever a pull holds is seen under one or the other. A collection runs
 * exclusively with `guard()`ed sections: a pull puts a blob or snapshot under
 * its lease inside `guard()` before it looks whether that thing exists, so it
 * never finds something a running sweep is about to delete.
 */
export class GarbageCollector {
  private readonly deps: CollectorDeps;
  private readonly log: Logger;
  /** Serves requests while there are any. */
  private loop: Promise<void> | undefined;
  /** A run requested and not started yet; later requests join it. */
  private requested: Request | undefined;
  /** Guarded sections in progress. */
  private guards = 0;
  /** A collection wants to start or is running: new guarded sections wait. */
  private exclusive = false;
  private exclusiveEnded: Promise<void> = Promise.resolve();
  private wakeCollector: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(deps: CollectorDeps) {
    this.deps = deps;
    this.log = deps.log;
  }

  /** Runs `schedule()` every `intervalMs` (unref'd timer); 0 disables. */
  startTimer(intervalMs: number): void {
    if (intervalMs <= 0 || this.closed) return;
    this.timer = setInterval(() => this.schedule(), intervalMs);
    this.timer.unref();
  }

  /**
   * A collection that starts after this call (so it sees every change made
   * before it). Runs never overlap: a call during a run queues one more,
   * and calls while one is queued share it.
   */
  collect(): Promise<GcResult> {
    if (this.closed) {
      return Promise.reject(new BerthError('failed-precondition', 'ERR_GC_CLOSED', 'garbage collector is closed'));
    }
    if (!this.requested) {
      const request: Partial<Request> = {};
      request.promise = new Promise<GcResult>((resolve, reject) => {
        request.resolve = resolve;
        request.reject = reject;
      });
      this.requested = request as Request;
    }
    const promise = this.requested.promise;
    this.loop ??= this.drain();
    return promise;
  }

  /** Serves requests one run at a time until none is left. */
  private async drain(): Promise<void> {
    // Let the caller that started the loop return first.
    await Promise.resolve();
    for (let request = this.requested; request !== undefined; request = this.requested) {
      // Taken in the same step the run starts: later requests wait for the next run.
      this.requested = undefined;
      try {
        request.resolve(await this.runOnce());
      } catch (err) {
        request.reject(err);
      }
    }
    this.loop = undefined;
  }

  /** Requests a collection without waiting for it; failures are logged. */
  schedule(): void {
    if (this.closed) return;
    this.collect().catch((err: unknown) => {
      this.log.error({ err: errorMessage(err), code: isBerthError(err) ? err.code : undefined }, 'garbage collection failed');
    });
  }

  /**
   * Runs `fn` while no collection is running, and keeps collections from
   * starting until it settles. Keep `fn` short: a waiting collection blocks
   * new guarded sections.
   */
  async guard<T>(fn: () => T | Promise<T>): Promise<T> {
    while (this.exclusive) await this.exclusiveEnded;
    this.guards++;
    try {
      return await fn();
    } finally {
      this.guards--;
      if (this.guards === 0) this.wakeCollector?.();
    }
  }

  /** Stops the timer and waits for the runs already requested. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.loop;
  }

  private async runOnce(): Promise<GcResult> {
    const started = performance.now();
    let endExclusive: () => void = () => undefined;
    this.exclusive = true;
    this.exclusiveEnded = new Promise((resolve) => {
      endExclusive = resolve;
    });
    try {
      while (this.guards > 0) {
        await new Promise<void>((resolve) => {
          this.wakeCollector = resolve;
        });
        this.wakeCollector = undefined;
      }
      const result = await this.markAndSweep();
      const ms = Math.round((performance.now() - started) * 10) / 10;
      const done = { ...result, ms };
      if (result.removedBlobs + result.removedSnapshots + result.expiredLeases > 0) {
        this.log.info(done, 'garbage collected');
      } else {
        this.log.debug(done, 'garbage collection found nothing to remove');
      }
      return done;
    } finally {
      this.exclusive = false;
      endExclusive();
    }
  }

  private async markAndSweep(): Promise<Omit<GcResult, 'ms'>> {
    const { metadata, content, snapshotter } = this.deps;
    const now = new Date();
    const expired = metadata.leases.deleteExpired(now);
    if (expired.length > 0) this.log.debug({ leases: expired }, 'deleted expired leases');

    // One synchronous step: no pull can write its record and drop its lease in between.
    const images = metadata.images.list();
    const leased = metadata.leases.referenced(now);

    const refs: ImageRefs = { blobs: new Set(), chainIds: new Set() };
    const keepSnapshots = new Set<string>();
    for (const r of leased) {
      if (r.type === 'content') refs.blobs.add(r.id);
      else if (r.type === 'snapshot') keepSnapshots.add(r.id);
    }
    for (const image of images) {
      await collectImageRefs(content, image.target, refs, (digest, err) => {
        this.log.warn({ image: image.name, digest, err: errorMessage(err) }, 'image references a blob that does not parse; not following it');
      });
    }
    for (const id of refs.chainIds) keepSnapshots.add(id);

    const removedSnapshots = await this.sweepSnapshots(keepSnapshots, snapshotter);

    const doomed: string[] = [];
    for await (const info of content.walk()) {
      if (!refs.blobs.has(info.digest)) doomed.push(info.digest);
    }
    let removedBlobs = 0;
    for (const digest of doomed) {
      try {
        await content.delete(digest);
        removedBlobs++;
      } catch (err) {
        if (isBerthError(err) && err.code === 'ERR_CONTENT_NOT_FOUND') continue;
        this.log.warn({ digest, err: errorMessage(err) }, 'cannot delete unreferenced blob');
      }
    }
    return { removedBlobs, removedSnapshots, expiredLeases: expired.length };
  }

  /** Removes committed snapshots nothing keeps, deepest first. */
  private async sweepSnapshots(keep: ReadonlySet<string>, snapshotter: Pick<Snapshotter, 'walk' | 'remove'>): Promise<number> {
    const byKey = new Map<string, SnapshotInfo>();
    for await (const info of snapshotter.walk()) byKey.set(info.key, info);

    const marked = new Set<string>();
    const markChain = (key: string | undefined): void => {
      for (let k = key; k !== undefined && !marked.has(k); k = byKey.get(k)?.parent) marked.add(k);
    };
    for (const info of byKey.values()) {
      // Active snapshots (container rootfs, unpacks in progress) and views keep their parents.
      if (info.kind !== 'committed' || keep.has(info.key)) markChain(info.key);
    }

    const depth = new Map<string, number>();
    const depthOf = (key: string): number => {
      const chain: string[] = [];
      let k: string | undefined = key;
      let base = 0;
      while (k !== undefined) {
        const known = depth.get(k);
        if (known !== undefined) {
          base = known + 1;
          break;
        }
        chain.push(k);
        k = byKey.get(k)?.parent;
      }
      for (let i = chain.length - 1; i >= 0; i--) depth.set(chain[i]!, base + (chain.length - 1 - i));
      return depth.get(key)!;
    };
    const doomed = [...byKey.keys()].filter((k) => !marked.has(k)).sort((a, b) => depthOf(b) - depthOf(a));

    let removed = 0;
    for (const key of doomed) {
      try {
        await snapshotter.remove(key);
        removed++;
      } catch (err) {
        if (isBerthError(err) && err.code === 'ERR_SNAPSHOT_NOT_FOUND') continue;
        // A child made meanwhile (ERR_SNAPSHOT_HAS_CHILDREN) keeps it; the next run looks again.
        this.log.warn({ snapshot: key, err: errorMessage(err) }, 'cannot remove unreferenced snapshot');
      }
    }
    return removed;
  }
}
