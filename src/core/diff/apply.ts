import { createHash } from 'node:crypto';
import type { Readable, Transform } from 'node:stream';
import { BerthError, errorMessage, isBerthError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Mount } from '../snapshotter/index.js';
import { declaredCompression, decompressor, SNIFF_BYTES, sniffCompression, type Compression } from './compression.js';
import { TarReader } from './tar-reader.js';
import { applyTarget } from './target.js';
import type { ApplyOptions, ApplyResult } from './types.js';
import { LayerWriter } from './writer.js';

type LayerSource = Readable | AsyncIterable<Uint8Array>;

/** Reads the first bytes of `source` and gives them back (copied) in front of the rest. */
async function peek(source: LayerSource, n: number): Promise<{ head: Buffer; stream: AsyncIterable<Uint8Array> }> {
  const it = (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let have = 0;
  let ended = false;
  while (have < n) {
    const r = await it.next();
    if (r.done === true) {
      ended = true;
      break;
    }
    // Copied: the source may reuse its buffer for the next chunk.
    const chunk = Buffer.from(r.value);
    chunks.push(chunk);
    have += chunk.length;
  }
  const head = Buffer.concat(chunks);
  async function* rest(): AsyncGenerator<Uint8Array> {
    if (head.length > 0) yield head;
    if (ended) return;
    for (;;) {
      const r = await it.next();
      if (r.done === true) return;
      yield r.value;
    }
  }
  return { head, stream: rest() };
}

function chooseCompression(declared: Compression, head: Buffer, mediaType: string, log: Logger): Compression {
  const sniffed = sniffCompression(head);
  if (sniffed === 'bzip2' || sniffed === 'xz') {
    throw new BerthError('invalid-argument', 'ERR_LAYER_COMPRESSION', `layer is ${sniffed}-compressed, which is not supported`, {
      context: { mediaType },
    });
  }
  const actual = sniffed ?? 'none';
  if (actual !== declared) log.warn({ mediaType, declared, actual }, 'layer compression differs from its media type; going by its content');
  return actual;
}

/**
 * Applies a layer (a possibly compressed tar) to the writable dir of an
 * active snapshot's mounts, without mounting them (see applyTarget and
 * LayerWriter). The uncompressed stream, every byte of it, is hashed into
 * the diff ID. On any failure, including a diff ID other than
 * `expectedDiffId`, the snapshot holds a partial layer: its owner removes it.
 */
export async function applyLayer(mounts: readonly Mount[], layer: LayerSource, opts: ApplyOptions, log: Logger): Promise<ApplyResult> {
  const target = applyTarget(mounts);
  const declared = declaredCompression(opts.mediaType);
  const signal = opts.signal;
  signal?.throwIfAborted();
  const { head, stream } = await peek(layer, SNIFF_BYTES);
  const compression = chooseCompression(declared, head, opts.mediaType, log);

  const hash = createHash('sha256');
  let size = 0;
  const writer = new LayerWriter(target, log);
  const consume = async (input: AsyncIterable<Uint8Array>): Promise<void> => {
    async function* hashed(): AsyncGenerator<Uint8Array> {
      for await (const chunk of input) {
        hash.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    }
    const reader = new TarReader(hashed());
    for (;;) {
      signal?.throwIfAborted();
      const header = await reader.next();
      if (header === undefined) break;
      try {
        await writer.entry(header, reader.body());
      } catch (err) {
        throw entryError(err, header.name);
      }
    }
    await reader.drain();
  };

  try {
    const unzip = decompressor(compression);
    if (unzip === undefined) await consume(copied(stream, signal));
    else await decompressInto(stream, unzip, consume, signal);
    const diffId = `sha256:${hash.digest('hex')}`;
    if (opts.expectedDiffId !== undefined && opts.expectedDiffId !== diffId) {
      throw new BerthError('failed-precondition', 'ERR_DIFF_ID_MISMATCH', `layer diff ID is ${diffId}, expected ${opts.expectedDiffId}`, {
        context: { expected: opts.expectedDiffId, actual: diffId, mediaType: opts.mediaType },
      });
    }
    await writer.finish();
    return { diffId, size };
  } catch (err) {
    writer.abort();
    throw applyError(err, opts, signal);
  }
}

/** Copies of the chunks of a source that may reuse its buffers. */
async function* copied(source: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    signal?.throwIfAborted();
    yield Buffer.from(chunk);
  }
}

/**
 * Feeds `source` into `unzip` one chunk at a time, asking for the next only
 * once the decompressor has consumed the last (so the source may reuse its
 * buffers), while `consume` reads the output. The first failure of either
 * side (or the signal) stops both; `consume`'s error wins, as it names the
 * entry.
 */
async function decompressInto(
  source: AsyncIterable<Uint8Array>,
  unzip: Transform,
  consume: (out: AsyncIterable<Uint8Array>) => Promise<void>,
  signal: AbortSignal | undefined,
): Promise<void> {
  const onAbort = (): void => {
    unzip.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  const feeding = (async () => {
    try {
      for await (const chunk of source) {
        if (chunk.byteLength > 0) await written(unzip, chunk);
      }
      unzip.end();
    } catch (err) {
      unzip.destroy(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
  })();
  const consuming = consume(unzip as AsyncIterable<Uint8Array>);
  try {
    const [fed, consumed] = await Promise.allSettled([feeding, consuming]);
    if (consumed.status === 'rejected') throw consumed.reason;
    if (fed.status === 'rejected') throw fed.reason;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    unzip.destroy();
  }
}

/** Writes a chunk and waits until the stream has taken it in (or is gone). */
function written(w: Transform, chunk: Uint8Array): Promise<void> {
  if (w.destroyed) return Promise.reject(w.errored ?? new Error('decompressor closed'));
  return new Promise<void>((resolve, reject) => {
    const onClose = (): void => reject(w.errored ?? new Error('decompressor closed'));
    w.once('close', onClose);
    w.write(chunk, (err) => {
      w.off('close', onClose);
      if (err) reject(err);
      else resolve();
    });
  });
}

function entryError(err: unknown, name: string): unknown {
  if (isBerthError(err)) return err;
  return new BerthError('internal', 'ERR_DIFF_APPLY', `applying layer entry ${JSON.stringify(name)}: ${errorMessage(err)}`, {
    context: { entry: name, errno: (err as NodeJS.ErrnoException).code },
    cause: err,
  });
}

function applyError(err: unknown, opts: ApplyOptions, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted === true) {
    return new BerthError('cancelled', 'ERR_DIFF_CANCELLED', 'layer apply was cancelled', { context: { mediaType: opts.mediaType }, cause: err });
  }
  if (isBerthError(err)) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code === 'string' && code.startsWith('Z_')) {
    return new BerthError('invalid-argument', 'ERR_LAYER_DECOMPRESS', `cannot decompress layer: ${errorMessage(err)}`, {
      context: { mediaType: opts.mediaType },
      cause: err,
    });
  }
  if (typeof code === 'string' && code.startsWith('ERR_ZSTD')) {
    return new BerthError('invalid-argument', 'ERR_LAYER_DECOMPRESS', `cannot decompress layer: ${errorMessage(err)}`, {
      context: { mediaType: opts.mediaType },
      cause: err,
    });
  }
  return new BerthError('internal', 'ERR_DIFF_APPLY', `applying layer: ${errorMessage(err)}`, { context: { mediaType: opts.mediaType }, cause: err });
}
