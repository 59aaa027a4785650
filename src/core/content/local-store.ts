import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { BerthError, errorMessage, isBerthError, isErrnoCode } from '../errors.js';
import type { Logger } from '../log.js';
import { checkSize, digestHex } from './digest.js';
import type { ContentInfo, ContentOpener, ContentSource, ContentStore, EnsureOptions } from './types.js';

/** Default cap for `readAll`: manifests and configs are far below this. */
export const DEFAULT_READ_ALL_MAX_BYTES = 16 * 1024 * 1024;

/** Mode of a committed blob: nobody writes a blob in place. */
const BLOB_MODE = 0o444;

interface InFlight {
  /** Settles (never rejects) once the download finished and its ingest is gone. */
  settled: Promise<void>;
  /** Progress callbacks of the leader and every waiter. */
  listeners: Set<(bytes: number) => void>;
}

/**
 * Blobs addressed by digest under `<root>/blobs/sha256/<hex>`, written through
 * ingests under `<root>/ingest/<hash of ref>/data`: a blob is streamed to its
 * ingest file while being hashed, fsynced, checked against the expected digest
 * and size, then renamed into place and the directory fsynced. A crash leaves
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
      const entry: InFlight = { settled: Promise.resolve(), listeners: new Set(onProgress ? [onProgress] : []) };
      const attempt = this.download(hex, desc, opener, signal, entry.listeners).finally(() => {
        this.inflight.delete(hex);
      });
      entry.settled = attempt.then(
        () => undefined,
        () => undefined,
      );
      this.inflight.set(hex, entry);
      await attempt;
      return;
    }
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
    const total = { bytes: 0, inodes: 0 };
    await addUsage(join(this.root, 'blobs'), total);
    await addUsage(this.ingestDir, total);
    return total;
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
   * One download attempt: source → ingest file (hashing) → fsync → verify →
   * rename → fsync dir. The ingest directory is gone when this settles.
   */
  private async download(
    hex: string,
    desc: { digest: string; size: number },
    opener: ContentOpener,
    callerSignal: AbortSignal | undefined,
    listeners: Set<(bytes: number) => void>,
  ): Promise<void> {
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
          try {
            for (;;) {
              const next = await sourceStep(digest, () => abort.race(it.next()));
              if (next.done) break;
              const chunk = next.value;
              if (!(chunk instanceof Uint8Array)) {
                throw new BerthError('internal', 'ERR_CONTENT_SOURCE_NOT_BYTES', `source for ${digest} yielded ${typeof chunk}, not bytes`, {
                  context: { digest },
                });
              }
              if (written + chunk.byteLength > desc.size) {
                throw sizeMismatch(digest, desc.size, `more than ${desc.size}`);
              }
              hash.update(chunk);
              await this.fsStep(digest, dataPath, 'write', () => writeAll(fh, chunk));
              written += chunk.byteLength;
              notify(listeners, written, log);
            }
          } finally {
            // Stops the source (destroys a Readable, closes a generator); not
            // awaited because a source ignoring the signal may never settle.
            stopSource(it);
          }
        } finally {
          abort.dispose();
        }
        await this.fsStep(digest, dataPath, 'fsync', () => fh.sync());
      } catch (err) {
        throw signal.aborted ? cancelled(digest, signal.reason) : err;
      } finally {
        await fh.close();
      }
      if (written !== desc.size) throw sizeMismatch(digest, desc.size, String(written));
      const actual = `sha256:${hash.digest('hex')}`;
      if (actual !== digest) {
        throw new BerthError('failed-precondition', 'ERR_CONTENT_DIGEST_MISMATCH', `downloaded content for ${digest} hashes to ${actual}`, {
          context: { digest, actual },
        });
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

async function fsyncDir(path: string): Promise<void> {
  const dir = await open(path, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** du-style: allocated bytes and inodes of a tree (the top directory included). */
async function addUsage(path: string, total: { bytes: number; inodes: number }): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return;
    throw err;
  }
  total.bytes += st.blocks * 512;
  total.inodes += 1;
  if (!st.isDirectory()) return;
  let names: string[];
  try {
    names = await readdir(path);
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return;
    throw err;
  }
  for (const name of names) await addUsage(join(path, name), total);
}
