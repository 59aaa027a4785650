import { randomUUID } from 'node:crypto';
import type { ContentStore, Descriptor } from '../content/index.js';
import type { Applier } from '../diff/index.js';
import { BerthError, errorMessage, isBerthError } from '../errors.js';
import type { GarbageCollector } from '../gc/index.js';
import type { Logger } from '../log.js';
import type { SqliteMetadata } from '../metadata/index.js';
import { parseReference, platformMatcher, type ImageReference, type PlatformMatcher, type RegistryClient } from '../remotes/index.js';
import type { Snapshotter } from '../snapshotter/index.js';
import { ImageCatalog, imageContent, type ImageContent } from './catalog.js';
import { selectImage, type BlobReader } from './image-walk.js';
import { Puller } from './pull.js';
import type { ImageEvent, ImageFsInfo, ImageListener, ImageRecord, PullOptions } from './types.js';
import { Unpacker } from './unpack.js';

/** Label on the leases of pulls; those left by an earlier process are deleted at start. */
export const LEASE_OWNER_LABEL = 'berth.io/owner';
const LEASE_OWNER = 'images.store';
/** Label on image records pinned through `pin()`. */
export const PINNED_LABEL = 'berth.io/pinned';
/**
 * A pull's lease expires on its own after this long, so a lease a crash left
 * cannot hold blobs forever even if its owner label were lost.
 */
const LEASE_TTL_MS = 24 * 60 * 60 * 1000;

export interface ImageStoreDeps {
  content: Pick<ContentStore, 'has' | 'readAll' | 'follow' | 'ensure' | 'usage'>;
  metadata: Pick<SqliteMetadata, 'images' | 'leases' | 'transaction'>;
  snapshotter: Pick<Snapshotter, 'prepare' | 'commit' | 'remove' | 'stat' | 'walk' | 'fsInfo'>;
  diff: Applier;
  gc: Pick<GarbageCollector, 'guard' | 'collect' | 'schedule'>;
  client: RegistryClient;
  log: Logger;
  platform: PlatformMatcher['wanted'];
  pinnedImages: readonly string[];
  maxConcurrentDownloads: number;
  /** 0 disables the check. */
  progressTimeoutMs: number;
}

/** How a reference or id given to get/remove matched. */
interface Match {
  id: string;
  /** The name it matched, for references; undefined for ids and id prefixes. */
  name?: string;
}

const FULL_ID = /^sha256:[a-f0-9]{64}$/;
const BARE_ID = /^[a-f0-9]{64}$/;
const ID_PREFIX = /^(?:sha256:)?([a-f0-9]{1,64})$/;

/**
 * The images plugin's instance: pulls images into the content store and
 * snapshotter, keeps image records (metadata) and an in-memory catalog of
 * them, removes images and has the collector reclaim what they held.
 *
 * Records: a pull by tag writes `name:tag` and `name@<digest of what the tag
 * resolved to>`; a pull by digest writes `name@digest`. All names whose
 * target leads (for the configured platform) to one config form one image,
 * whose id is the config digest. No record is kept for the id itself.
 */
export class ImageStore {
  private readonly deps: ImageStoreDeps;
  private readonly log: Logger;
  private readonly matcher: PlatformMatcher;
  private readonly catalog = new ImageCatalog();
  private readonly unpacker: Unpacker;
  private readonly puller: Puller;
  /** Normalised names of `pinned_images`: reported pinned, never written as labels (the config stays the authority). */
  private readonly pinnedNames = new Set<string>();
  /** Names pin() was given before they existed: their records get the pinned label when pulled. */
  private readonly pendingPins = new Set<string>();
  private readonly listeners = new Set<ImageListener>();
  private readonly closing = new AbortController();
  private readonly pulls = new Set<Promise<unknown>>();

  constructor(deps: ImageStoreDeps) {
    this.deps = deps;
    this.log = deps.log;
    this.matcher = platformMatcher(deps.platform);
    this.unpacker = new Unpacker({ content: deps.content, snapshotter: deps.snapshotter, diff: deps.diff, log: deps.log });
    this.puller = new Puller({
      client: deps.client,
      content: deps.content,
      leases: deps.metadata.leases,
      gc: deps.gc,
      unpacker: this.unpacker,
      matcher: this.matcher,
      maxConcurrentDownloads: deps.maxConcurrentDownloads,
      progressTimeoutMs: deps.progressTimeoutMs,
      log: deps.log,
    });
    for (const ref of deps.pinnedImages) {
      try {
        this.pinnedNames.add(normalisedName(parseReference(ref)));
      } catch (err) {
        throw new BerthError('invalid-argument', 'ERR_IMAGES_CONFIG', `pinned_images: ${errorMessage(err)}`, { context: { image: ref }, cause: err });
      }
    }
  }

  /**
   * Clears what a previous process left mid-pull (its leases and extraction
   * snapshots), then loads every image record into the catalog.
   */
  async init(): Promise<void> {
    const { metadata } = this.deps;
    const stale = metadata.leases.list().filter((l) => l.labels[LEASE_OWNER_LABEL] === LEASE_OWNER);
    for (const lease of stale) metadata.leases.delete(lease.id);
    const leftovers = await this.unpacker.removeLeftovers();
    if (stale.length + leftovers.length > 0) {
      this.log.info({ leases: stale.length, snapshots: leftovers }, 'removed what interrupted pulls left');
      this.deps.gc.schedule();
    }
    await this.load();
  }

  private async load(): Promise<void> {
    const { content, metadata } = this.deps;
    const read: BlobReader = async (desc) => {
      try {
        return await content.readAll(desc.digest);
      } catch (err) {
        if (isBerthError(err) && err.code === 'ERR_CONTENT_NOT_FOUND') return undefined;
        throw err;
      }
    };
    const byTarget = new Map<string, ImageContent | undefined>();
    let skipped = 0;
    for (const image of metadata.images.list()) {
      try {
        let found = byTarget.get(image.target.digest);
        if (!byTarget.has(image.target.digest)) {
          const selected = await selectImage(image.target, read, { matcher: this.matcher, lenient: true, what: image.name });
          found = selected === undefined ? undefined : imageContent(selected, image.name);
          byTarget.set(image.target.digest, found);
        }
        if (found === undefined) {
          skipped++;
          this.log.warn({ image: image.name, target: image.target.digest }, 'image record whose manifest or config is not in the content store; not listed');
          continue;
        }
        this.catalog.put(image.name, found, { target: image.target.digest, pinned: image.labels[PINNED_LABEL] === 'pinned' });
      } catch (err) {
        skipped++;
        this.log.warn({ image: image.name, err: errorMessage(err) }, 'cannot read image; not listed');
      }
    }
    this.log.info({ images: this.catalog.ids().length, skipped }, 'images loaded');
  }

  /**
   * Pulls and unpacks `ref`; resolves once the image is ready to run. A
   * present image costs one resolve round trip.
   */
  async pull(ref: string, opts: PullOptions = {}): Promise<ImageRecord> {
    if (this.closing.signal.aborted) throw closedError();
    const parsed = parseReference(ref);
    const what = parsed.toString();
    const ctl = new AbortController();
    const signal = AbortSignal.any([ctl.signal, this.closing.signal, ...(opts.signal ? [opts.signal] : [])]);
    const leaseId = `pull-${randomUUID()}`;
    const { leases } = this.deps.metadata;
    leases.create(leaseId, { labels: { [LEASE_OWNER_LABEL]: LEASE_OWNER, 'berth.io/image': what }, expiresAt: new Date(Date.now() + LEASE_TTL_MS) });
    let leaseHeld = true;
    const started = performance.now();
    const work = (async () => {
      try {
        const { target, selected } = await this.puller.pull({ ref: parsed, auth: opts.auth, signal, abort: (r) => ctl.abort(r), leaseId });
        const content = imageContent(selected, what);
        const names = parsed.digest !== undefined ? [normalisedName(parsed)] : [parsed.nameWithTag(), `${parsed.name}@${target.digest}`];
        this.commitNames(names, target, content, leaseId);
        leaseHeld = false;
        this.log.info({ image: what, id: content.id, ms: Math.round(performance.now() - started) }, 'image pulled');
        return this.catalog.record(content.id, this.pinnedNames)!;
      } catch (err) {
        throw pullError(err, what, ctl.signal, opts.signal, this.closing.signal);
      } finally {
        if (leaseHeld) {
          try {
            leases.delete(leaseId);
          } catch (err) {
            this.log.warn({ lease: leaseId, err: errorMessage(err) }, 'cannot release pull lease; it expires on its own');
          }
        }
      }
    })();
    this.pulls.add(work);
    try {
      return await work;
    } finally {
      this.pulls.delete(work);
    }
  }

  /** Writes the records and drops the lease in one transaction, then updates the catalog. */
  private commitNames(names: string[], target: Descriptor, content: ImageContent, leaseId: string): void {
    const { images, leases } = this.deps.metadata;
    const written = this.deps.metadata.transaction(() => {
      const out: { name: string; pinned: boolean }[] = [];
      for (const name of names) {
        let labels: Record<string, string> = {};
        try {
          labels = { ...images.get(name).labels };
        } catch (err) {
          if (!(isBerthError(err) && err.code === 'ERR_IMAGE_NOT_FOUND')) throw err;
        }
        if (this.pendingPins.has(name)) labels[PINNED_LABEL] = 'pinned';
        images.upsert({ name, target: { mediaType: target.mediaType, digest: target.digest, size: target.size }, labels });
        out.push({ name, pinned: labels[PINNED_LABEL] === 'pinned' });
      }
      leases.delete(leaseId);
      return out;
    });
    for (const { name, pinned } of written) {
      const type = this.catalog.put(name, content, { target: target.digest, pinned });
      if (type) this.emit({ type, name });
    }
  }

  /** The image a reference, id or unique id prefix names, from memory. */
  get(refOrId: string): ImageRecord | undefined {
    const match = this.match(refOrId);
    return match === undefined ? undefined : this.catalog.record(match.id, this.pinnedNames);
  }

  /** Every image, by id. */
  list(): ImageRecord[] {
    return this.catalog.ids().map((id) => this.catalog.record(id, this.pinnedNames)!);
  }

  /**
   * Removes names (CRI RemoveImage): an id or id prefix removes every name of
   * the image; `name@digest` removes that name; a tag removes that tag, and
   * with the image's last tag every name of it. An image left without names
   * is gone; the collector then reclaims its blobs and snapshots before this
   * returns. False if nothing matches.
   */
  async remove(refOrId: string): Promise<boolean> {
    const match = this.match(refOrId);
    if (match === undefined) return false;
    const all = this.catalog.names(match.id);
    let doomed: string[];
    if (match.name === undefined) doomed = all;
    else if (match.name.includes('@')) doomed = [match.name];
    else doomed = all.some((n) => !n.includes('@') && n !== match.name) ? [match.name] : all;

    const { images } = this.deps.metadata;
    this.deps.metadata.transaction(() => {
      for (const name of doomed) {
        try {
          images.delete(name);
        } catch (err) {
          if (!(isBerthError(err) && err.code === 'ERR_IMAGE_NOT_FOUND')) throw err;
        }
      }
    });
    for (const name of doomed) {
      this.catalog.dropName(name);
      this.emit({ type: 'delete', name });
    }
    this.log.info({ image: refOrId, id: match.id, removed: doomed, gone: !this.catalog.has(match.id) }, 'image names removed');
    if (!this.catalog.has(match.id)) {
      try {
        await this.deps.gc.collect();
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'garbage collection after image removal failed');
      }
    }
    return true;
  }

  /**
   * Marks an image pinned (its records get the pinned label, kept across
   * restarts); a reference to an image not pulled yet pins it once it is.
   */
  pin(refOrId: string): void {
    const match = this.match(refOrId);
    if (match === undefined) {
      this.pendingPins.add(normalisedName(parseReference(refOrId)));
      return;
    }
    const { images } = this.deps.metadata;
    const names = this.catalog.names(match.id);
    this.deps.metadata.transaction(() => {
      for (const name of names) {
        const image = images.get(name);
        if (image.labels[PINNED_LABEL] === 'pinned') continue;
        images.update({ name, target: image.target, labels: { ...image.labels, [PINNED_LABEL]: 'pinned' } });
      }
    });
    for (const name of names) this.catalog.setPinned(name, true);
  }

  /** Usage of the image filesystem: snapshots plus content blobs. */
  async fsInfo(): Promise<ImageFsInfo> {
    const timestamp = BigInt(Date.now()) * 1_000_000n;
    const [snapshots, blobs] = await Promise.all([this.deps.snapshotter.fsInfo(), this.deps.content.usage()]);
    return {
      mountpoint: snapshots.mountpoint,
      usedBytes: snapshots.usedBytes + blobs.bytes,
      inodesUsed: snapshots.inodesUsed + blobs.inodes,
      timestamp,
    };
  }

  /** Hears every name created, retargeted or deleted; returns the unsubscribe function. */
  onChange(listener: ImageListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Cancels pulls in progress and waits for them to clean up. */
  async close(): Promise<void> {
    this.closing.abort(closedError());
    await Promise.allSettled([...this.pulls]);
    await this.deps.client.close();
  }

  private emit(event: ImageEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        this.log.warn({ err: errorMessage(err), event }, 'image event listener threw');
      }
    }
  }

  /**
   * Resolution order, as containerd's CRI: a full id; a reference (short
   * forms normalised); then a unique id prefix (with or without `sha256:`).
   */
  private match(refOrId: string): Match | undefined {
    if (typeof refOrId !== 'string' || refOrId === '') return undefined;
    if (FULL_ID.test(refOrId)) return this.catalog.has(refOrId) ? { id: refOrId } : undefined;
    if (BARE_ID.test(refOrId)) {
      const id = `sha256:${refOrId}`;
      return this.catalog.has(id) ? { id } : undefined;
    }
    let parsed: ImageReference | undefined;
    try {
      parsed = parseReference(refOrId);
    } catch {
      parsed = undefined;
    }
    if (parsed !== undefined) {
      for (const name of [parsed.toString(), normalisedName(parsed)]) {
        const id = this.catalog.idOfName(name);
        if (id !== undefined) return { id, name };
      }
    }
    const prefix = ID_PREFIX.exec(refOrId)?.[1];
    if (prefix !== undefined) {
      const ids = this.catalog.idsWithPrefix(prefix);
      if (ids.length === 1) return { id: ids[0]! };
    }
    return undefined;
  }
}

/** The record name for a reference: `name@digest` when it has a digest (a tag beside it is dropped), else `name:tag`. */
function normalisedName(ref: ImageReference): string {
  return ref.nameWithDigest() ?? ref.nameWithTag();
}

function closedError(): BerthError {
  return new BerthError('cancelled', 'ERR_IMAGES_CLOSED', 'image service is shutting down');
}

/**
 * The error a failed pull reports: the stall timeout or the caller's
 * deadline/cancellation when those ended it, else the failure itself.
 */
function pullError(err: unknown, image: string, own: AbortSignal, caller: AbortSignal | undefined, closing: AbortSignal): unknown {
  if (own.aborted && isBerthError(own.reason)) return own.reason;
  if (caller?.aborted) {
    const reason: unknown = caller.reason;
    if (isBerthError(reason)) return reason;
    const timeout = reason instanceof Error && reason.name === 'TimeoutError';
    return new BerthError(timeout ? 'deadline-exceeded' : 'cancelled', timeout ? 'ERR_PULL_DEADLINE' : 'ERR_PULL_CANCELLED', `pull of ${image} ${timeout ? 'ran out of time' : 'was cancelled'}`, {
      context: { image },
      cause: err,
    });
  }
  if (closing.aborted) return closing.reason;
  if (isBerthError(err)) return err;
  return new BerthError('internal', 'ERR_PULL', `pull of ${image}: ${errorMessage(err)}`, { context: { image }, cause: err });
}
