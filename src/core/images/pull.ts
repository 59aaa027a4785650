import type { ContentStore } from '../content/index.js';
import { declaredCompression } from '../diff/index.js';
import { BerthError, isBerthError } from '../errors.js';
import { chainIds, type GarbageCollector } from '../gc/index.js';
import type { Logger } from '../log.js';
import type { LeaseStore } from '../metadata/index.js';
import type { AuthConfig, Descriptor, ImageReference, PlatformMatcher, RegistryClient, Repository } from '../remotes/index.js';
import { selectImage, type BlobReader, type SelectedImage } from './image-walk.js';
import { PullProgress } from './progress.js';
import type { LayerUnpack, Unpacker } from './unpack.js';

export interface PullerDeps {
  client: RegistryClient;
  content: Pick<ContentStore, 'has' | 'readAll' | 'ensure'>;
  leases: Pick<LeaseStore, 'addResource'>;
  gc: Pick<GarbageCollector, 'guard'>;
  unpacker: Unpacker;
  matcher: PlatformMatcher;
  maxConcurrentDownloads: number;
  /** 0 disables the check. */
  progressTimeoutMs: number;
  log: Logger;
}

export interface PullRequest {
  ref: ImageReference;
  auth?: AuthConfig | undefined;
  /** Aborts everything the pull does. */
  signal: AbortSignal;
  /** Fails the pull with `reason` (a stalled download). */
  abort: (reason: BerthError) => void;
  /** The lease every blob and snapshot of the pull is put under before it is used. */
  leaseId: string;
}

export interface PullResult {
  /** What the reference resolved to (index or manifest), as the image record's target. */
  target: Descriptor;
  selected: SelectedImage;
}

/** Runs at most `limit` of the functions given to it at a time, in the order given. */
function limiter(limit: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (running >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    running++;
    try {
      return await fn();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}

function invalidImage(what: string, why: string): BerthError {
  return new BerthError('failed-precondition', 'ERR_IMAGE_INVALID', `image ${what}: ${why}`, { context: { image: what } });
}

/**
 * The pull pipeline up to the image record: resolve the reference, store the
 * index/manifest/config chosen for the platform, download the layers in
 * parallel and unpack each as soon as it and the layers below it are there.
 * Everything is put under the pull's lease (inside the collector's guard)
 * before it is looked at or written, so no collection removes it midway.
 */
export class Puller {
  constructor(private readonly deps: PullerDeps) {}

  async pull(req: PullRequest): Promise<PullResult> {
    const { client, content, matcher, log: baseLog } = this.deps;
    const { ref, signal } = req;
    const what = ref.toString();
    const log = baseLog.child({ image: what });
    const protect = (type: 'content' | 'snapshot', id: string): Promise<void> =>
      this.deps.gc.guard(() => this.deps.leases.addResource(req.leaseId, { type, id }));

    const repo = client.repository(ref, { auth: req.auth });
    const resolved = await repo.resolve({ signal });
    const target: Descriptor = { mediaType: resolved.descriptor.mediaType, digest: resolved.descriptor.digest, size: resolved.descriptor.size };
    log.debug({ digest: target.digest, mediaType: target.mediaType, endpoint: resolved.endpoint.host }, 'resolved');

    const read: BlobReader = async (desc, kind) => {
      signal.throwIfAborted();
      await protect('content', desc.digest);
      if (await content.has(desc.digest)) return content.readAll(desc.digest);
      if (kind === 'manifest') {
        const bytes = await repo.fetchManifest(desc, { signal });
        await content.ensure(desc, async () => oneChunk(bytes), { signal });
        return bytes;
      }
      await content.ensure(desc, (s) => repo.fetchBlob(desc, { signal: s }), { signal });
      return content.readAll(desc.digest);
    };
    const selected = await selectImage(target, read, { matcher, lenient: false, what });
    if (selected === undefined) throw new BerthError('internal', 'ERR_PULL', `pull of ${what}: no manifest selected`, { context: { image: what } });

    const layers = selected.manifest.layers;
    if (layers.length !== selected.diffIds.length) {
      throw invalidImage(what, `manifest lists ${layers.length} layers but the config ${selected.diffIds.length} diff IDs`);
    }
    // Refused before anything is downloaded.
    for (const layer of layers) declaredCompression(layer.mediaType);

    await this.fetchAndUnpack(req, repo, selected, log);
    return { target, selected };
  }

  /**
   * Unpacks a layer while it downloads. A download that another pull led
   * and that failed is retried by this pull's ensure: then the unpack starts
   * over once the blob is in the store.
   */
  private async unpackLayer(i: number, u: LayerUnpack): Promise<boolean> {
    try {
      return await this.deps.unpacker.unpack(u);
    } catch (err) {
      if (!followBroken(err)) throw err;
      await u.downloaded;
      this.deps.log.debug({ layer: u.layer.digest, index: i }, 'the download an unpack followed failed and was retried; unpacking the stored blob');
      return this.deps.unpacker.unpack(u);
    }
  }

  private async fetchAndUnpack(req: PullRequest, repo: Repository, selected: SelectedImage, log: Logger): Promise<void> {
    const { content, maxConcurrentDownloads, progressTimeoutMs } = this.deps;
    const { signal } = req;
    const layers = selected.manifest.layers;
    const chain = chainIds(selected.diffIds);
    const totalBytes = layers.reduce((sum, l) => sum + l.size, 0);
    const progress = new PullProgress(req.ref.toString(), layers.length, totalBytes, progressTimeoutMs, req.abort, log);
    const protect = (type: 'content' | 'snapshot', id: string): Promise<void> =>
      this.deps.gc.guard(() => this.deps.leases.addResource(req.leaseId, { type, id }));
    const limit = limiter(maxConcurrentDownloads);
    // Stops the downloads still running when an unpack fails.
    const stop = new AbortController();
    const dlSignal = AbortSignal.any([signal, stop.signal]);

    const downloads = layers.map((layer) =>
      limit(async () => {
        dlSignal.throwIfAborted();
        await protect('content', layer.digest);
        const onProgress = progress.begin(layer.digest);
        try {
          await content.ensure(layer, (s) => repo.fetchBlob(layer, { signal: s }), { signal: dlSignal, onProgress });
        } finally {
          progress.end();
        }
      }),
    );
    // A failed download fails the pull: the others stop, and an unpack
    // following it stops waiting. Each failure is also seen where awaited.
    for (const d of downloads) d.catch((err: unknown) => stop.abort(err));

    let extracted = 0;
    try {
      // Each layer is unpacked while it downloads (read from its ingest as
      // it is written), in order: layer i once i-1 is committed.
      for (const [i, layer] of layers.entries()) {
        const done = await this.unpackLayer(i, {
          layer,
          diffId: selected.diffIds[i]!,
          chainId: chain[i]!,
          parent: i === 0 ? undefined : chain[i - 1],
          protect: (id) => protect('snapshot', id),
          downloaded: downloads[i]!,
          signal: dlSignal,
        });
        if (done) extracted++;
        progress.layerDone();
      }
      // Layers whose snapshots existed were not read: their blobs still belong to the image.
      await Promise.all(downloads);
    } catch (err) {
      // Stop the other downloads and let them remove their ingests before the lease goes.
      stop.abort(err);
      await Promise.allSettled(downloads);
      // An unpack stopped by a failed download reports the download's error.
      throw signal.aborted ? err : stop.signal.reason;
    } finally {
      progress.stop();
    }
    const seconds = progress.elapsedMs() / 1000;
    const bytes = progress.downloaded();
    log.info(
      { layers: layers.length, extracted, bytes, ms: Math.round(seconds * 1000), bytesPerSecond: seconds > 0 ? Math.round(bytes / seconds) : bytes },
      'layers fetched and unpacked',
    );
  }
}

/** True for the error a follow gives when the download it read failed. */
function followBroken(err: unknown): boolean {
  return isBerthError(err) && err.code === 'ERR_CONTENT_FOLLOW_BROKEN';
}

async function* oneChunk(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}
