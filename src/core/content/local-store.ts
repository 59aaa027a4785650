import { createHash } from 'node:crypto';
import { chmod, mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { diskUsage } from '../disk-usage.js';
import { BerthError, errorMessage, isBerthError, isErrnoCode } from '../errors.js';
import type { Logger } from '../log.js';
import { checkSize, digestHex } from './digest.js';
import type { ContentInfo, ContentOpener, ContentSource, ContentStore, EnsureOptions } from './types.js';

/** Default cap for `readAll`: manifests and configs are far below this. */
export const DEFAULT_READ_ALL_MAX_BYTES = 16 * 1024 * 1024;

/** Mode of a committed blob: nobody writes a blob in place. */
const BLOB_MODE = 0o444;

/** Bytes of a download read ahead while a write to its ingest runs; reading waits beyond this. */
const MAX_PENDING_WRITE_BYTES = 4 * 1024 * 1024;
/** Bytes read at a time by `follow`. */
const FOLLOW_CHUNK = 256 * 1024;
/** Bytes a live `follow` may have queued before it falls back to reading the ingest file. */
const TAP_MAX_BYTES = 8 * 1024 * 1024;

/** A `follow` that has caught up with a download: it is handed each chunk once written. */
interface Tap {
  chunks: Buffer[];
  bytes: number;
}

interface InFlight {
  /** Settles (never rejects) once the download finished and its ingest is gone. */
  settled: Promise<void>;
  /** Progress callbacks of the leader and every waiter. */
  listeners: Set<(bytes: number) => void>;
  /** The ingest file once it is open, and how many bytes of it are written (`follow` reads no further). */
  ingest?: { path: string; written: number };
  /** How the attempt ended: committed, or failed (its ingest removed). */
  outcome?: 'committed' | 'failed';
  /**
   * Every byte is written and matched the digest and size; the fsync and
   * rename that make the blob visible may still be running (or fail).
   */
  verified?: boolean;
  /** Woken on every write and when the attempt ends (see follow). */
  wakers: Set<() => void>;
  /** Follows that get the chunks in memory (see tail). */
  taps: Set<Tap>;
}

/**
 * Blobs addressed by digest under `<root>/blobs/sha256/<hex>`, written through
 * ingests under `<root>/ingest/<hash of ref>/data`: a blob is streamed to its
 * ingest file while being hashed, checked against the expected digest and
 * size, fsynced, then renamed into place and the directory fsynced. A crash leaves
 * at most an ingest, which the next `open` removes.
 */
export class LocalContentStore implements ContentStore {
  readonly root: string;
  private readonly blobDir: string;
  private readonly ingestDir: string;
  private readonly log: Logger;
  private readonly inflight = new Map<string, InFlight>();
  /** Aborts every download when the store is closed. */
  private readonly closing = new AbortController();
  /** Woken when a download of the digest (by hex) starts, opens its ingest or ends (see follow). */
  private readonly changes = new Map<string, Set<() => void>>();

  private constructor(root: string, log: Logger) {
    this.root = root;
    this.blobDir = join(root, 'blobs', 'sha256');
    this.ingestDir = join(root, 'ingest');
    this.log = log;
  }

  /** Creates the layout if needed and removes ingests a crash left behind. */
  static async open(root: string, log: Logger): Promise<LocalContentStore> {
    const store = new LocalContentStore(root, log);
    await mkdir(store.blobDir, { recursive: true });
    await mkdir(store.ingestDir, { recursive: true });
    const leftovers = await readdir(store.ingestDir);
    for (const name of leftovers) {
      await rm(join(store.ingestDir, name), { recursive: true, force: true });
    }
    if (leftovers.length > 0) log.info({ count: leftovers.length }, 'removed unfinished ingests');
    return store;
  }

  path(digest: string): string {
    return join(this.blobDir, digestHex(digest));
  }

  async info(digest: string): Promise<ContentInfo> {
    const path = this.path(digest);
    try {
      const st = await stat(path);
      return { digest, size: st.size, createdAt: st.mtime };
    } catch (err) {
      throw this.fsError(err, digest, path, 'stat');
    }
  }

  async has(digest: string): Promise<boolean> {
    return (await this.sizeOf(digest)) !== undefined;
  }

  async readStream(digest: string, opts: { start?: number } = {}): Promise<Readable> {
    const path = this.path(digest);
    const start = opts.start ?? 0;
    if (!Number.isSafeInteger(start) || start < 0) {
      throw new BerthError('invalid-argument', 'ERR_CONTENT_INVALID_OFFSET', `invalid read offset ${String(start)}`, {
        context: { digest },
      });
    }
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      throw this.fsError(err, digest, path, 'open');
    }
    return fh.createReadStream({ start, autoClose: true });
  }

  async readAll(digest: string, maxBytes: number = DEFAULT_READ_ALL_MAX_BYTES): Promise<Buffer> {
    const path = this.path(digest);
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      throw this.fsError(err, digest, path, 'open');
    }
    let data: Buffer;
    try {
      const { size } = await fh.stat();
      if (size > maxBytes) {
        throw new BerthError('resource-exhausted', 'ERR_CONTENT_TOO_LARGE', `blob ${digest} is ${size} bytes, more than the ${maxBytes} allowed here`, {
          context: { digest, size, maxBytes },
        });
      }
      data = await fh.readFile();
    } catch (err) {
      throw isBerthError(err) ? err : this.fsError(err, digest, path, 'read');
    } finally {
      await fh.close();
    }
    const actual = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    if (actual !== digest) {
      throw new BerthError('internal', 'ERR_CONTENT_CORRUPT', `blob ${digest} on disk hashes to ${actual}`, {
        context: { digest, actual, path },
      });
    }
    return data;
  }

  async ensure(desc: { digest: string; size: number }, opener: ContentOpener, opts: EnsureOptions = {}): Promise<void> {
    const hex = digestHex(desc.digest);
    checkSize(desc.size, desc.digest);
    const { signal, onProgress } = opts;
    for (;;) {
      if (signal?.aborted) throw cancelled(desc.digest, signal.reason);
      if (this.closing.signal.aborted) throw cancelled(desc.digest, this.closing.signal.reason);
      const present = await this.sizeOf(desc.digest);
      if (present !== undefined) {
        // The digest fixes the size, so a differing one is a lying descriptor.
        if (present !== desc.size) throw sizeMismatch(desc.digest, desc.size, `${present} (stored)`);
        return;
      }
      const running = this.inflight.get(hex);
      if (running) {
        // Someone else is downloading it. Whatever happens to their attempt
        // (done, failed, cancelled by *their* signal), look again afterwards.
        if (onProgress) running.listeners.add(onProgress);
        try {
          await untilSettledOrAborted(running.settled, signal, desc.digest);
        } finally {
          if (onProgress) running.listeners.delete(onProgress);
        }
        continue;
      }
      // No await between the lookup above and this insert: we are the leader.
      const entry: InFlight = { settled: Promise.resolve(), listeners: new Set(onProgress ? [onProgress] : []), wakers: new Set(), taps: new Set() };
      const attempt = this.download(hex, desc, opener, signal, entry).then(
        () => {
          entry.outcome = 'committed';
        },
        (err: unknown) => {
          entry.outcome = 'failed';
          throw err;
        },
      ).finally(() => {
        this.inflight.delete(hex);
        wakeAll(entry.wakers);
        this.changed(hex);
      });
      entry.settled = attempt.then(
        () => undefined,
        () => undefined,
      );
      this.inflight.set(hex, entry);
      this.changed(hex);
      await attempt;
      return;
    }
  }

  /**
   * The bytes of a blob while an `ensure` in this process downloads it: read
   * from its ingest file as they are written (never past what is written),
   * ending once the blob is committed, so a consumer can work on a layer
   * while it downloads. A committed blob is read from its file; a blob
   * neither committed nor being downloaded is waited for. Fails with
   * unavailable `ERR_CONTENT_FOLLOW_BROKEN` when the download it follows
   * fails (a retry by `ensure` is a new download: follow again), and with
   * cancelled when `signal` aborts. The stream ends only after the digest
   * and size were verified (not waiting for the fsync and rename that make
   * the blob visible, which may still fail: `ensure` reports that); one that
   * is not read to its end proves nothing.
   * Bytes read from a file come in one reused buffer: a chunk is valid only
   * until the next one is asked for.
   */
  async *follow(desc: { digest: string; size: number }, opts: { signal?: AbortSignal } = {}): AsyncGenerator<Buffer> {
    const hex = digestHex(desc.digest);
    const { signal } = opts;
    for (;;) {
      if (signal?.aborted) throw cancelled(desc.digest, signal.reason);
      const change = this.nextChange(hex, signal, desc.digest);
      try {
        const entry = this.inflight.get(hex);
        if (entry?.ingest !== undefined) {
          const fh = await openIfExists(entry.ingest.path);
          // Gone: the attempt ended meanwhile; look again.
          if (fh !== undefined) {
            yield* this.tail(fh, entry, desc, signal);
            return;
          }
        } else if (entry === undefined) {
          const fh = await openIfExists(this.path(desc.digest));
          if (fh !== undefined) {
            yield* readFrom(fh, desc);
            return;
          }
        }
        await change.promise;
      } finally {
        change.dispose();
      }
    }
  }

  /**
   * Reads a download's ingest file (open as `fh`) as it grows, to the end
   * once committed. Once caught up with what is written, it is handed the
   * download's chunks in memory instead (a tap) as they are written, until
   * it falls TAP_MAX_BYTES behind and goes back to the file.
   */
  private async *tail(fh: FileHandle, entry: InFlight, desc: { digest: string; size: number }, signal: AbortSignal | undefined): AsyncGenerator<Buffer> {
    const ingest = entry.ingest!;
    let pos = 0;
    let tap: Tap | undefined;
    let fromFile = 0;
    /** File reads go into one buffer (see follow). */
    let buf: Buffer | undefined;
    try {
      for (;;) {
        if (tap !== undefined) {
          const chunk = tap.chunks.shift();
          if (chunk !== undefined) {
            tap.bytes -= chunk.length;
            pos += chunk.length;
            yield chunk;
            continue;
          }
          // Dropped for falling behind: the rest comes from the file.
          if (!entry.taps.has(tap)) {
            tap = undefined;
            continue;
          }
        } else if (ingest.written > pos) {
          buf ??= Buffer.allocUnsafeSlow(FOLLOW_CHUNK);
          const want = Math.min(buf.length, ingest.written - pos);
          const { bytesRead } = await readStep(desc.digest, () => fh.read(buf!, 0, want, pos));
          if (bytesRead === 0) throw followBroken(desc.digest, `ingest file ends at ${pos} of ${ingest.written} written bytes`);
          pos += bytesRead;
          fromFile += bytesRead;
          yield buf.subarray(0, bytesRead);
          continue;
        } else if (entry.outcome === undefined) {
          // Caught up: the next chunk written starts at `pos`.
          tap = { chunks: [], bytes: 0 };
          entry.taps.add(tap);
          continue;
        }
        if ((entry.verified === true || entry.outcome === 'committed') && pos === desc.size) {
          this.log.debug({ digest: desc.digest, bytes: pos, fromFile }, 'followed a download');
          return;
        }
        if (entry.outcome !== undefined) throw followBroken(desc.digest, 'its download failed');
        if (signal?.aborted) throw cancelled(desc.digest, signal.reason);
        await new Promise<void>((resolve, reject) => {
          const onAbort = (): void => {
            entry.wakers.delete(wake);
            reject(cancelled(desc.digest, signal?.reason));
          };
          const wake = (): void => {
            entry.wakers.delete(wake);
            signal?.removeEventListener('abort', onAbort);
            resolve();
          };
          entry.wakers.add(wake);
          signal?.addEventListener('abort', onAbort, { once: true });
        });
      }
    } finally {
      if (tap !== undefined) entry.taps.delete(tap);
      await fh.close();
    }
  }

  /** A promise resolved at the next change of the digest's download state (or rejected when `signal` aborts). */
  private nextChange(hex: string, signal: AbortSignal | undefined, digest: string): { promise: Promise<void>; dispose(): void } {
    let set = this.changes.get(hex);
    if (set === undefined) this.changes.set(hex, (set = new Set()));
    const watchers = set;
    let wake: () => void = () => undefined;
    let onAbort: () => void = () => undefined;
    const promise = new Promise<void>((resolve, reject) => {
      wake = resolve;
      onAbort = () => reject(cancelled(digest, signal?.reason));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    promise.catch(() => undefined);
    watchers.add(wake);
    return {
      promise,
      dispose: () => {
        signal?.removeEventListener('abort', onAbort);
        watchers.delete(wake);
        if (watchers.size === 0 && this.changes.get(hex) === watchers) this.changes.delete(hex);
      },
    };
  }

  private changed(hex: string): void {
    const watchers = this.changes.get(hex);
    if (watchers !== undefined) wakeAll(watchers);
  }

  async delete(digest: string): Promise<void> {
    const path = this.path(digest);
    try {
      await rm(path);
    } catch (err) {
      throw this.fsError(err, digest, path, 'remove');
    }
  }

  async *walk(): AsyncIterable<ContentInfo> {
    const names = await readdir(this.blobDir);
    for (const name of names) {
      const digest = `sha256:${name}`;
      if (!/^[a-f0-9]{64}$/.test(name)) {
        this.log.warn({ file: join(this.blobDir, name) }, 'stray file in blob directory');
        continue;
      }
      try {
        const st = await stat(join(this.blobDir, name));
        yield { digest, size: st.size, createdAt: st.mtime };
      } catch (err) {
        if (isErrnoCode(err, 'ENOENT')) continue; // deleted while walking
        throw this.fsError(err, digest, join(this.blobDir, name), 'stat');
      }
    }
  }

  async usage(): Promise<{ bytes: number; inodes: number }> {
    const blobs = await diskUsage(join(this.root, 'blobs'));
    const ingest = await diskUsage(this.ingestDir);
    return { bytes: blobs.size + ingest.size, inodes: blobs.inodes + ingest.inodes };
  }

  /** The size of a committed blob, undefined if there is none. */
  private async sizeOf(digest: string): Promise<number | undefined> {
    const path = this.path(digest);
    try {
      return (await stat(path)).size;
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) return undefined;
      throw this.fsError(err, digest, path, 'stat');
    }
  }

  /** Aborts running downloads and waits until their ingests are removed. */
  async close(): Promise<void> {
    this.closing.abort(new BerthError('cancelled', 'ERR_CONTENT_STORE_CLOSED', 'content store closed'));
    await Promise.all([...this.inflight.values()].map((f) => f.settled));
  }

  /**
   * One download attempt: source → ingest file (hashing) → verify (follows
   * end) → fsync → rename → fsync dir. The ingest directory is gone when this settles.
   */
  private async download(
    hex: string,
    desc: { digest: string; size: number },
    opener: ContentOpener,
    callerSignal: AbortSignal | undefined,
    entry: InFlight,
  ): Promise<void> {
    const listeners = entry.listeners;
    const digest = desc.digest;
    const signal = callerSignal ? AbortSignal.any([callerSignal, this.closing.signal]) : this.closing.signal;
    const dir = join(this.ingestDir, createHash('sha256').update(`ensure ${digest}`).digest('hex'));
    const dataPath = join(dir, 'data');
    const blobPath = join(this.blobDir, hex);
    const log = this.log.child({ digest });
    log.debug({ size: desc.size }, 'ingest started');
    try {
      await this.fsStep(digest, dir, 'create ingest', async () => {
        await rm(dir, { recursive: true, force: true });
        await mkdir(dir, { recursive: true });
      });
      const fh = await this.fsStep(digest, dataPath, 'create', () => open(dataPath, 'wx', 0o644));
      const ingest = { path: dataPath, written: 0 };
      entry.ingest = ingest;
      this.changed(hex);
      const hash = createHash('sha256');
      let written = 0;
      try {
        const abort = abortGate(signal, digest);
        try {
          const opening = Promise.resolve().then(() => opener(signal));
          const source = await sourceStep(digest, () => abort.race(opening)).catch((err: unknown) => {
            // A source that arrives after we gave up is closed, not leaked.
            void opening.then((late) => stopSource(iterate(late)), () => undefined);
            throw err;
          });
          const it = iterate(source);
          // Chunks wait in `pending` while a write is running and go out
          // together in the next one: the source is read while the file is
          // written, with one write (not one per chunk) per round trip.
          let pending: Uint8Array[] = [];
          let pendingBytes = 0;
          let received = 0;
          let writing: Promise<void> | undefined;
          let writeFailure: unknown;
          const startWriting = (): void => {
            if (writing !== undefined) return;
            writing = (async () => {
              try {
                while (pending.length > 0) {
                  const batch = pending;
                  pending = [];
                  pendingBytes = 0;
                  await this.fsStep(digest, dataPath, 'write', () => writeBatch(fh, batch));
                  for (const chunk of batch) {
                    written += chunk.byteLength;
                    ingest.written = written;
                    handOut(entry.taps, chunk);
                    notify(listeners, written, log);
                  }
                  wakeAll(entry.wakers);
                }
              } catch (err) {
                writeFailure = err;
                throw err;
              } finally {
                writing = undefined;
              }
            })();
            writing.catch(() => undefined);
          };
          try {
            for (;;) {
              const next = await sourceStep(digest, () => abort.race(it.next()));
              if (writeFailure !== undefined) throw writeFailure;
              if (next.done) break;
              const chunk = next.value;
              if (!(chunk instanceof Uint8Array)) {
                throw new BerthError('internal', 'ERR_CONTENT_SOURCE_NOT_BYTES', `source for ${digest} yielded ${typeof chunk}, not bytes`, {
                  context: { digest },
                });
              }
              if (received + chunk.byteLength > desc.size) {
                throw sizeMismatch(digest, desc.size, `more than ${desc.size}`);
              }
              if (chunk.byteLength === 0) continue;
              hash.update(chunk);
              received += chunk.byteLength;
              pending.push(chunk);
              pendingBytes += chunk.byteLength;
              startWriting();
              if (pendingBytes >= MAX_PENDING_WRITE_BYTES) await abort.race(writing ?? Promise.resolve());
            }
            while (writing !== undefined) await writing;
          } finally {
            // Stops the source (destroys a Readable, closes a generator); not
            // awaited because a source ignoring the signal may never settle.
            stopSource(it);
            // The file is closed only once no write is running on it.
            while (writing !== undefined) await (writing as Promise<void>).catch(() => undefined);
          }
        } finally {
          abort.dispose();
        }
        if (written !== desc.size) throw sizeMismatch(digest, desc.size, String(written));
        const actual = `sha256:${hash.digest('hex')}`;
        if (actual !== digest) {
          throw new BerthError('failed-precondition', 'ERR_CONTENT_DIGEST_MISMATCH', `downloaded content for ${digest} hashes to ${actual}`, {
            context: { digest, actual },
          });
        }
        // Follows end here: what they read is proven; the fsync below (which on
        // a busy ext4 also waits for other files' dirty data) is not theirs to wait for.
        entry.verified = true;
        wakeAll(entry.wakers);
        await this.fsStep(digest, dataPath, 'fsync', () => fh.sync());
      } catch (err) {
        throw signal.aborted ? cancelled(digest, signal.reason) : err;
      } finally {
        await fh.close();
      }
      if (signal.aborted) throw cancelled(digest, signal.reason);
      await this.fsStep(digest, dataPath, 'chmod', () => chmod(dataPath, BLOB_MODE));
      await this.fsStep(digest, blobPath, 'commit', () => rename(dataPath, blobPath));
      await this.fsStep(digest, this.blobDir, 'fsync dir', () => fsyncDir(this.blobDir));
      log.debug({ size: written }, 'blob committed');
    } catch (err) {
      log.debug({ err: errorMessage(err) }, 'ingest failed');
      throw err;
    } finally {
      await rm(dir, { recursive: true, force: true }).catch((err: unknown) => {
        log.warn({ err: errorMessage(err), dir }, 'could not remove ingest');
      });
    }
  }

  private async fsStep<T>(digest: string, path: string, op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (isBerthError(err)) throw err;
      const kind = isErrnoCode(err, 'ENOSPC') || isErrnoCode(err, 'EDQUOT') ? 'resource-exhausted' : 'internal';
      throw new BerthError(kind, 'ERR_CONTENT_WRITE', `${op} ${path} for ${digest}: ${errorMessage(err)}`, {
        context: { digest, path },
        cause: err,
      });
    }
  }

  private fsError(err: unknown, digest: string, path: string, op: string): BerthError {
    if (isErrnoCode(err, 'ENOENT')) {
      return new BerthError('not-found', 'ERR_CONTENT_NOT_FOUND', `content ${digest} not found`, { context: { digest }, cause: err });
    }
    return new BerthError('internal', 'ERR_CONTENT_IO', `${op} ${path}: ${errorMessage(err)}`, { context: { digest, path }, cause: err });
  }
}

function cancelled(digest: string, reason: unknown): BerthError {
  if (isBerthError(reason) && reason.kind === 'cancelled') return reason;
  return new BerthError('cancelled', 'ERR_CONTENT_CANCELLED', `download of ${digest} cancelled`, {
    context: { digest },
    cause: reason,
  });
}

function sizeMismatch(digest: string, expected: number, actual: string): BerthError {
  return new BerthError('failed-precondition', 'ERR_CONTENT_SIZE_MISMATCH', `content for ${digest}: got ${actual} bytes, expected ${expected}`, {
    context: { digest, expected, actual },
  });
}

/** Errors from the caller's source keep their BerthError; others mean the source failed. */
async function sourceStep<T>(digest: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isBerthError(err)) throw err;
    throw new BerthError('unavailable', 'ERR_CONTENT_SOURCE', `reading content for ${digest}: ${errorMessage(err)}`, {
      context: { digest },
      cause: err,
    });
  }
}

function iterate(source: ContentSource): AsyncIterator<unknown> {
  return (source as AsyncIterable<unknown>)[Symbol.asyncIterator]();
}

function stopSource(it: AsyncIterator<unknown>): void {
  void Promise.resolve()
    .then(() => it.return?.())
    .catch(() => undefined);
}

/** A promise that rejects (cancelled) when the signal aborts, and a way to stop listening. */
function abortPromise(signal: AbortSignal, digest: string): { promise: Promise<never>; dispose(): void } {
  let onAbort: () => void = () => undefined;
  const promise = new Promise<never>((_, reject) => {
    onAbort = () => reject(cancelled(digest, signal.reason));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  promise.catch(() => undefined);
  return { promise, dispose: () => signal.removeEventListener('abort', onAbort) };
}

/**
 * Races one promise at a time against the signal. Promise.race with one
 * long-lived abort promise would leave a reaction on it per race, keeping
 * every chunk the source yielded alive until the download ends.
 */
function abortGate(signal: AbortSignal, digest: string): { race<T>(p: Promise<T>): Promise<T>; dispose(): void } {
  let rejectCurrent: ((err: unknown) => void) | undefined;
  const onAbort = (): void => rejectCurrent?.(cancelled(digest, signal.reason));
  signal.addEventListener('abort', onAbort, { once: true });
  return {
    race<T>(p: Promise<T>): Promise<T> {
      if (signal.aborted) {
        p.catch(() => undefined);
        return Promise.reject(cancelled(digest, signal.reason));
      }
      return new Promise<T>((resolve, reject) => {
        rejectCurrent = reject;
        p.then(resolve, reject);
      });
    },
    dispose() {
      signal.removeEventListener('abort', onAbort);
      rejectCurrent = undefined;
    },
  };
}

/** Waits for another caller's download, or rejects as soon as our own signal aborts. */
async function untilSettledOrAborted(settled: Promise<void>, signal: AbortSignal | undefined, digest: string): Promise<void> {
  if (!signal) return settled;
  const abort = abortPromise(signal, digest);
  try {
    await Promise.race([settled, abort.promise]);
  } finally {
    abort.dispose();
  }
}

/** Writes the chunks in order at the file's position: one writev, then the rest of a short write piece by piece. */
async function writeBatch(fh: FileHandle, chunks: Uint8Array[]): Promise<void> {
  if (chunks.length === 1) return writeAll(fh, chunks[0]!);
  let skip = (await fh.writev(chunks)).bytesWritten;
  for (const chunk of chunks) {
    if (skip >= chunk.byteLength) {
      skip -= chunk.byteLength;
      continue;
    }
    await writeAll(fh, chunk.subarray(skip));
    skip = 0;
  }
}

async function writeAll(fh: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await fh.write(chunk, offset, chunk.byteLength - offset);
    offset += bytesWritten;
  }
}

function notify(listeners: Set<(bytes: number) => void>, bytes: number, log: Logger): void {
  for (const listener of listeners) {
    try {
      listener(bytes);
    } catch (err) {
      log.debug({ err: errorMessage(err) }, 'progress callback threw');
    }
  }
}

/** Queues a written chunk for every tap; a tap that would pass TAP_MAX_BYTES is dropped. */
function handOut(taps: Set<Tap>, chunk: Uint8Array): void {
  if (taps.size === 0 || chunk.byteLength === 0) return;
  const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  for (const tap of taps) {
    if (tap.bytes + buf.length > TAP_MAX_BYTES) {
      taps.delete(tap);
      continue;
    }
    tap.chunks.push(buf);
    tap.bytes += buf.length;
  }
}

function wakeAll(wakers: Set<() => void>): void {
  for (const wake of [...wakers]) wake();
}

function followBroken(digest: string, why: string): BerthError {
  return new BerthError('unavailable', 'ERR_CONTENT_FOLLOW_BROKEN', `following the download of ${digest}: ${why}`, { context: { digest } });
}

async function readStep<T>(digest: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new BerthError('internal', 'ERR_CONTENT_IO', `reading ${digest}: ${errorMessage(err)}`, { context: { digest }, cause: err });
  }
}

async function openIfExists(path: string): Promise<FileHandle | undefined> {
  try {
    return await open(path, 'r');
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return undefined;
    throw err;
  }
}

/** A committed blob's bytes (it must be `desc.size` long), read in FOLLOW_CHUNK pieces into one buffer; closes `fh`. */
async function* readFrom(fh: FileHandle, desc: { digest: string; size: number }): AsyncGenerator<Buffer> {
  let pos = 0;
  const buf = Buffer.allocUnsafeSlow(Math.min(FOLLOW_CHUNK, Math.max(desc.size, 1)));
  try {
    while (pos < desc.size) {
      const { bytesRead } = await readStep(desc.digest, () => fh.read(buf, 0, Math.min(buf.length, desc.size - pos), pos));
      if (bytesRead === 0) break;
      pos += bytesRead;
      yield buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
  if (pos !== desc.size) throw sizeMismatch(desc.digest, desc.size, `${pos} (stored)`);
}

async function fsyncDir(path: string): Promise<void> {
  const dir = await open(path, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
