import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { LocalContentStore } from '../../src/core/content/index.js';
import { BerthError } from '../../src/core/errors.js';
import { sha256 as digestOf } from '../fixtures/oci-image.js';
import { closeTempContentStore, openTempContentStore } from './content-helpers.js';

function blob(size: number, seed = 1): Buffer {
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return buf;
}

/** A source the test feeds by hand: `push` a chunk, `end`, or `fail`. */
function manualSource(): { source: AsyncGenerator<Uint8Array>; push(b: Uint8Array): void; end(): void; fail(err: Error): void } {
  const queue: (Uint8Array | null | Error)[] = [];
  let wake: (() => void) | undefined;
  const put = (v: Uint8Array | null | Error): void => {
    queue.push(v);
    wake?.();
  };
  async function* gen(): AsyncGenerator<Uint8Array> {
    for (;;) {
      while (queue.length === 0) await new Promise<void>((r) => (wake = r));
      const v = queue.shift()!;
      if (v === null) return;
      if (v instanceof Error) throw v;
      yield v;
    }
  }
  return { source: gen(), push: put, end: () => put(null), fail: put };
}

async function collect(it: AsyncIterable<Buffer>, into: Buffer[]): Promise<Buffer> {
  for await (const c of it) into.push(Buffer.from(c));
  return Buffer.concat(into);
}

/** Resolves once `cond` holds (polled). */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await sleep(5);
  assert.ok(cond(), 'condition never held');
}

let root: string;
let store: LocalContentStore;

beforeEach(async () => ({ root, store } = await openTempContentStore('berth-follow-')));
afterEach(() => closeTempContentStore(root, store));

describe('content store follow', () => {
  test('a follower started before the download sees every byte, and ends only once they all matched the digest', async () => {
    const data = blob(3 * 256 * 1024 + 1234);
    const desc = { digest: digestOf(data), size: data.length };
    const got: Buffer[] = [];
    let ended = false;
    const following = collect(store.follow(desc), got).finally(() => (ended = true));
    await sleep(20);
    const src = manualSource();
    const ensuring = store.ensure(desc, async () => src.source);
    // Fed in pieces: the follower gets them as they are written, before the end.
    for (let off = 0; off < data.length; off += 100_000) {
      src.push(data.subarray(off, Math.min(off + 100_000, data.length)));
      await until(() => Buffer.concat(got).length >= Math.min(off + 100_000, data.length));
      assert.equal(ended, false);
    }
    src.end();
    await ensuring;
    assert.deepEqual(await following, data);
  });

  test('a follower that joins mid-download reads the written part from the ingest, then the rest', async () => {
    const data = blob(2 * 1024 * 1024, 2);
    const desc = { digest: digestOf(data), size: data.length };
    const src = manualSource();
    let written = 0;
    const ensuring = store.ensure(desc, async () => src.source, { onProgress: (n) => (written = n) });
    src.push(data.subarray(0, 1_500_000));
    await until(() => written === 1_500_000);
    const following = collect(store.follow(desc), []);
    await sleep(20);
    src.push(data.subarray(1_500_000));
    src.end();
    await ensuring;
    assert.deepEqual(await following, data);
  });

  test('a committed blob is read from its file', async () => {
    const data = blob(700_000, 3);
    const desc = { digest: digestOf(data), size: data.length };
    await store.ensure(desc, async () => (async function* () { yield data; })());
    assert.deepEqual(await collect(store.follow(desc), []), data);
  });

  test('a failed download breaks its followers; a digest mismatch too, after every byte was read', async () => {
    const data = blob(300_000, 4);
    const desc = { digest: digestOf(data), size: data.length };
    const src = manualSource();
    const ensuring = store.ensure(desc, async () => src.source);
    const following = collect(store.follow(desc), []);
    src.push(data.subarray(0, 1000));
    await sleep(20);
    src.fail(new Error('connection reset'));
    await assert.rejects(ensuring);
    await assert.rejects(following, (err: unknown) => err instanceof BerthError && err.code === 'ERR_CONTENT_FOLLOW_BROKEN');

    const liar = blob(300_000, 5);
    const ensuring2 = store.ensure(desc, async () => (async function* () { yield liar; })());
    const following2 = collect(store.follow(desc), []);
    await assert.rejects(ensuring2, (err: unknown) => err instanceof BerthError && err.code === 'ERR_CONTENT_DIGEST_MISMATCH');
    await assert.rejects(following2, (err: unknown) => err instanceof BerthError && err.code === 'ERR_CONTENT_FOLLOW_BROKEN');
    assert.equal(await store.has(desc.digest), false);
  });

  test('a follower waiting for a download that never starts stops when its signal aborts', async () => {
    const data = blob(10, 6);
    const ac = new AbortController();
    const following = collect(store.follow({ digest: digestOf(data), size: data.length }, { signal: ac.signal }), []);
    await sleep(20);
    ac.abort();
    await assert.rejects(following, (err: unknown) => err instanceof BerthError && err.kind === 'cancelled');
  });

  test('a follower slower than the download falls back to the ingest file and still gets every byte in order', async () => {
    const data = blob(20 * 1024 * 1024, 7);
    const desc = { digest: digestOf(data), size: data.length };
    const src = manualSource();
    const ensuring = store.ensure(desc, async () => src.source);
    const got: Buffer[] = [];
    const following = (async () => {
      for await (const c of store.follow(desc)) {
        got.push(Buffer.from(c));
        // Slower than the source for the first few MiB, so more than the in-memory queue piles up.
        if (got.length < 20) await sleep(10);
      }
      return Buffer.concat(got);
    })();
    for (let off = 0; off < data.length; off += 64 * 1024) src.push(data.subarray(off, off + 64 * 1024));
    src.end();
    await ensuring;
    assert.deepEqual(await following, data);
  });
});
