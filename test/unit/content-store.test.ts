import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { contentLocalRegistration, LocalContentStore, type ContentSource } from '../../src/core/content/index.js';
import { BerthError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/log.js';
import type { InitContext, PluginMeta } from '../../src/core/plugin/types.js';
import { sha256 as digestOf } from '../fixtures/oci-image.js';
import { closeTempContentStore, openTempContentStore } from './content-helpers.js';

const log = createLogger('silent');

function blob(size: number, seed = 1): Buffer {
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = (i * 31 + seed * 7) & 0xff;
  return buf;
}

async function* chunks(data: Uint8Array, chunkSize = 1024, delayMs = 0): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < data.byteLength; off += chunkSize) {
    if (delayMs > 0) await sleep(delayMs);
    yield data.subarray(off, Math.min(off + chunkSize, data.byteLength));
  }
}

/** A source that yields one chunk and then never yields again, ignoring any signal. */
async function* stuck(first: Uint8Array): AsyncGenerator<Uint8Array> {
  yield first;
  await new Promise(() => undefined);
}

function isBerth(kind: string, code: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof BerthError, `expected BerthError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.kind, kind);
    return true;
  };
}

let root: string;
let store: LocalContentStore;

beforeEach(async () => ({ root, store } = await openTempContentStore('berth-content-')));
afterEach(() => closeTempContentStore(root, store));

async function ingestEntries(): Promise<string[]> {
  return readdir(join(root, 'ingest'));
}

describe('content store basics', () => {
  test('ensure commits a blob that info, has, path, readAll and readStream see', async () => {
    const data = blob(10_000);
    const digest = digestOf(data);
    assert.equal(await store.has(digest), false);
    const progress: number[] = [];
    await store.ensure({ digest, size: data.length }, async () => chunks(data, 4096), { onProgress: (n) => progress.push(n) });
    assert.deepEqual(progress, [4096, 8192, 10_000]);
    assert.equal(await store.has(digest), true);
    const info = await store.info(digest);
    assert.equal(info.digest, digest);
    assert.equal(info.size, data.length);
    assert.ok(info.createdAt instanceof Date);
    assert.equal(store.path(digest), join(root, 'blobs', 'sha256', digest.slice('sha256:'.length)));
    assert.deepEqual(await readFile(store.path(digest)), data);
    assert.equal((await stat(store.path(digest))).mode & 0o777, 0o444);
    assert.deepEqual(await store.readAll(digest), data);
    const parts: Buffer[] = [];
    for await (const c of await store.readStream(digest, { start: 9000 })) parts.push(c as Buffer);
    assert.deepEqual(Buffer.concat(parts), data.subarray(9000));
    assert.deepEqual(await ingestEntries(), []);
  });

  test('ensure of a present blob returns without opening', async () => {
    const data = blob(100);
    const digest = digestOf(data);
    await store.ensure({ digest, size: 100 }, async () => chunks(data));
    await store.ensure({ digest, size: 100 }, async () => {
      throw new Error('must not be opened');
    });
    // A descriptor whose size disagrees with the stored blob is refused.
    await assert.rejects(
      store.ensure({ digest, size: 99 }, async () => chunks(data)),
      isBerth('failed-precondition', 'ERR_CONTENT_SIZE_MISMATCH'),
    );
  });

  test('a Readable works as a source, and an empty blob is fine', async () => {
    const data = blob(5000, 3);
    await store.ensure({ digest: digestOf(data), size: data.length }, async () => Readable.from([data.subarray(0, 10), data.subarray(10)]));
    assert.deepEqual(await store.readAll(digestOf(data)), data);
    const empty = Buffer.alloc(0);
    await store.ensure({ digest: digestOf(empty), size: 0 }, async () => Readable.from([]));
    assert.equal((await store.info(digestOf(empty))).size, 0);
  });

  test('invalid digests are rejected and never become paths', async () => {
    const bad = [
      'sha256:../../../etc/passwd',
      `sha256:${'A'.repeat(64)}`,
      `sha512:${'a'.repeat(128)}`,
      `sha256:${'a'.repeat(63)}`,
      `sha256:${'a'.repeat(64)}/x`,
      `sha256:${'a'.repeat(64)}\n`,
      'a'.repeat(64),
      '',
    ];
    for (const digest of bad) {
      assert.throws(() => store.path(digest), isBerth('invalid-argument', 'ERR_CONTENT_INVALID_DIGEST'), digest);
      await assert.rejects(store.has(digest), isBerth('invalid-argument', 'ERR_CONTENT_INVALID_DIGEST'));
      await assert.rejects(store.info(digest), isBerth('invalid-argument', 'ERR_CONTENT_INVALID_DIGEST'));
      await assert.rejects(store.delete(digest), isBerth('invalid-argument', 'ERR_CONTENT_INVALID_DIGEST'));
      await assert.rejects(
        store.ensure({ digest, size: 1 }, async () => chunks(Buffer.alloc(1))),
        isBerth('invalid-argument', 'ERR_CONTENT_INVALID_DIGEST'),
      );
    }
    await assert.rejects(
      store.ensure({ digest: digestOf(Buffer.alloc(1)), size: -1 }, async () => chunks(Buffer.alloc(1))),
      isBerth('invalid-argument', 'ERR_CONTENT_INVALID_SIZE'),
    );
  });

  test('missing blobs are not-found', async () => {
    const digest = digestOf(Buffer.from('nope'));
    await assert.rejects(store.info(digest), isBerth('not-found', 'ERR_CONTENT_NOT_FOUND'));
    await assert.rejects(store.readAll(digest), isBerth('not-found', 'ERR_CONTENT_NOT_FOUND'));
    await assert.rejects(store.readStream(digest), isBerth('not-found', 'ERR_CONTENT_NOT_FOUND'));
    await assert.rejects(store.delete(digest), isBerth('not-found', 'ERR_CONTENT_NOT_FOUND'));
  });

  test('readAll guards size and detects a corrupted blob', async () => {
    const data = blob(2048);
    const digest = digestOf(data);
    await store.ensure({ digest, size: data.length }, async () => chunks(data));
    await assert.rejects(store.readAll(digest, 1000), isBerth('resource-exhausted', 'ERR_CONTENT_TOO_LARGE'));
    await chmod(store.path(digest), 0o644);
    await writeFile(store.path(digest), blob(2048, 9));
    await assert.rejects(store.readAll(digest), isBerth('internal', 'ERR_CONTENT_CORRUPT'));
  });

  test('walk, delete and usage', async () => {
    const blobs = [blob(100, 1), blob(5000, 2), blob(70_000, 3)];
    for (const b of blobs) await store.ensure({ digest: digestOf(b), size: b.length }, async () => chunks(b, 8192));
    const walked = new Map<string, number>();
    for await (const info of store.walk()) walked.set(info.digest, info.size);
    assert.deepEqual(walked, new Map(blobs.map((b) => [digestOf(b), b.length])));

    const before = await store.usage();
    // blobs/, blobs/sha256/, ingest/ and three blob files.
    assert.equal(before.inodes, 6);
    assert.ok(before.bytes >= 100 + 5000 + 70_000, `usage ${before.bytes}`);

    await store.delete(digestOf(blobs[1]!));
    assert.equal(await store.has(digestOf(blobs[1]!)), false);
    const after = await store.usage();
    assert.equal(after.inodes, 5);
    assert.ok(after.bytes < before.bytes);
    const left: string[] = [];
    for await (const info of store.walk()) left.push(info.digest);
    assert.deepEqual(left.sort(), [digestOf(blobs[0]!), digestOf(blobs[2]!)].sort());
  });

  test('init removes ingests left by a crash', async () => {
    const leftover = join(root, 'ingest', 'f'.repeat(64));
    await mkdir(leftover, { recursive: true });
    await writeFile(join(leftover, 'data'), 'partial');
    await store.close();
    store = await LocalContentStore.open(root, log);
    assert.deepEqual(await ingestEntries(), []);
  });

  test('the registration publishes its root', async () => {
    let published: PluginMeta = {};
    const ctx = {
      type: 'content',
      id: 'local',
      rootDir: join(root, 'plugin-root'),
      log,
      meta: (m: PluginMeta) => {
        published = { ...published, ...m };
      },
    } as unknown as InitContext<Record<string, never>>;
    await mkdir(ctx.rootDir);
    const viaPlugin = await contentLocalRegistration.init(ctx);
    try {
      assert.deepEqual(published.exports, { root: ctx.rootDir });
      const data = blob(10);
      await viaPlugin.ensure({ digest: digestOf(data), size: 10 }, async () => chunks(data));
      assert.equal((await stat(join(ctx.rootDir, 'blobs', 'sha256', digestOf(data).slice(7)))).size, 10);
    } finally {
      await viaPlugin.close();
    }
  });
});

describe('content verification', () => {
  test('a digest mismatch never becomes visible', async () => {
    const data = blob(3000);
    const claimed = digestOf(blob(3000, 2));
    await assert.rejects(
      store.ensure({ digest: claimed, size: data.length }, async () => chunks(data)),
      isBerth('failed-precondition', 'ERR_CONTENT_DIGEST_MISMATCH'),
    );
    assert.equal(await store.has(claimed), false);
    assert.equal(await store.has(digestOf(data)), false);
    assert.deepEqual(await ingestEntries(), []);
    assert.deepEqual(await readdir(join(root, 'blobs', 'sha256')), []);
  });

  test('too few bytes is a size mismatch', async () => {
    const data = blob(3000);
    await assert.rejects(
      store.ensure({ digest: digestOf(data), size: 3000 }, async () => chunks(data.subarray(0, 2999))),
      isBerth('failed-precondition', 'ERR_CONTENT_SIZE_MISMATCH'),
    );
    assert.equal(await store.has(digestOf(data)), false);
    assert.deepEqual(await ingestEntries(), []);
  });

  test('too many bytes stops the download early', async () => {
    const data = blob(3000);
    let pulled = 0;
    async function* endless(): AsyncGenerator<Uint8Array> {
      for (;;) {
        pulled++;
        yield data.subarray(0, 1000);
      }
    }
    await assert.rejects(
      store.ensure({ digest: digestOf(data), size: 2500 }, async () => endless()),
      isBerth('failed-precondition', 'ERR_CONTENT_SIZE_MISMATCH'),
    );
    assert.equal(pulled, 3);
    assert.deepEqual(await ingestEntries(), []);
  });

  test('a failing source removes its ingest and reports unavailable', async () => {
    const data = blob(3000);
    async function* broken(): AsyncGenerator<Uint8Array> {
      yield data.subarray(0, 1000);
      throw new Error('connection reset');
    }
    await assert.rejects(store.ensure({ digest: digestOf(data), size: 3000 }, async () => broken()), isBerth('unavailable', 'ERR_CONTENT_SOURCE'));
    await assert.rejects(
      store.ensure({ digest: digestOf(data), size: 3000 }, async () => {
        throw new BerthError('unauthenticated', 'ERR_TEST_AUTH', 'no token');
      }),
      isBerth('unauthenticated', 'ERR_TEST_AUTH'),
    );
    assert.deepEqual(await ingestEntries(), []);
  });
});

describe('content ensure concurrency', () => {
  test('concurrent ensures of one digest download once and all see progress', async () => {
    const data = blob(64 * 1024);
    const digest = digestOf(data);
    let opens = 0;
    const open = async (): Promise<ContentSource> => {
      opens++;
      return chunks(data, 16 * 1024, 5);
    };
    const seen: number[][] = [[], [], []];
    await Promise.all(seen.map((p) => store.ensure({ digest, size: data.length }, open, { onProgress: (n) => p.push(n) })));
    assert.equal(opens, 1);
    assert.deepEqual(seen[0], [16384, 32768, 49152, 65536]);
    for (const p of seen.slice(1)) assert.ok(p.length > 0 && p.at(-1) === 65536, `waiter progress ${p.join(',')}`);
    assert.deepEqual(await store.readAll(digest), data);
  });

  test('cancelling the leader removes its ingest; a waiter retries with its own source', async () => {
    const data = blob(32 * 1024);
    const digest = digestOf(data);
    const leaderAbort = new AbortController();
    let leaderOpenSignal: AbortSignal | undefined;
    let started!: () => void;
    const leaderStarted = new Promise<void>((r) => (started = r));
    let opened!: () => void;
    const leaderOpened = new Promise<void>((r) => (opened = r));
    const leader = store.ensure(
      { digest, size: data.length },
      async (signal) => {
        leaderOpenSignal = signal;
        opened();
        return stuck(data.subarray(0, 1024)); // ignores the signal: the store must not hang
      },
      { signal: leaderAbort.signal, onProgress: () => started() },
    );
    // Each ensure first stats the blob; the waiter starts only once the leader leads.
    await leaderOpened;
    let waiterOpens = 0;
    const waiter = store.ensure({ digest, size: data.length }, async () => {
      waiterOpens++;
      return chunks(data, 4096);
    });
    await leaderStarted;
    assert.equal((await ingestEntries()).length, 1);
    leaderAbort.abort();
    await assert.rejects(leader, isBerth('cancelled', 'ERR_CONTENT_CANCELLED'));
    assert.equal(leaderOpenSignal?.aborted, true);
    await waiter;
    assert.equal(waiterOpens, 1);
    assert.deepEqual(await store.readAll(digest), data);
    assert.deepEqual(await ingestEntries(), []);
  });

  test('a cancelled waiter leaves promptly while the leader finishes', async () => {
    const data = blob(40 * 1024);
    const digest = digestOf(data);
    const leader = store.ensure({ digest, size: data.length }, async () => chunks(data, 4096, 10));
    const waiterAbort = new AbortController();
    const waiter = store.ensure(
      { digest, size: data.length },
      async () => {
        throw new Error('waiter must not open');
      },
      { signal: waiterAbort.signal },
    );
    await sleep(15);
    waiterAbort.abort();
    await assert.rejects(waiter, isBerth('cancelled', 'ERR_CONTENT_CANCELLED'));
    assert.equal(await store.has(digest), false, 'leader still downloading');
    await leader;
    assert.deepEqual(await store.readAll(digest), data);
  });

  test('an already aborted signal rejects at once', async () => {
    const data = blob(10);
    await assert.rejects(
      store.ensure({ digest: digestOf(data), size: 10 }, async () => chunks(data), { signal: AbortSignal.abort() }),
      isBerth('cancelled', 'ERR_CONTENT_CANCELLED'),
    );
    assert.equal(await store.has(digestOf(data)), false);
  });

  test('close aborts running downloads and cleans their ingests', async () => {
    const data = blob(8192);
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const pending = store.ensure({ digest: digestOf(data), size: data.length }, async () => stuck(data.subarray(0, 100)), {
      onProgress: () => started(),
    });
    await running;
    await store.close();
    await assert.rejects(pending, isBerth('cancelled', 'ERR_CONTENT_STORE_CLOSED'));
    assert.deepEqual(await ingestEntries(), []);
    assert.equal(await store.has(digestOf(data)), false);
  });
});
