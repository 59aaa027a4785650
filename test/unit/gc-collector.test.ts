import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalContentStore } from '../../src/core/content/index.js';
import { chainIds, GarbageCollector } from '../../src/core/gc/index.js';
import { createLogger } from '../../src/core/log.js';
import { SqliteMetadata } from '../../src/core/metadata/index.js';
import { OverlaySnapshotter } from '../../src/core/snapshotter/index.js';
import { buildImage, buildIndex, busyboxImage, file, sha256 as digestOf, type Image, type ImageIndex } from '../fixtures/index.js';

const log = createLogger('silent');

async function put(content: LocalContentStore, data: Buffer): Promise<string> {
  const digest = digestOf(data);
  await content.ensure({ digest, size: data.length }, async () => (async function* () { yield data; })());
  return digest;
}

/** Stores an image's manifest, config and layer blobs. */
async function putImage(content: LocalContentStore, img: Image): Promise<void> {
  await put(content, img.manifestBlob);
  await put(content, img.configBlob);
  for (const l of img.layers) await put(content, l.blob);
}

interface Env {
  dir: string;
  content: LocalContentStore;
  metadata: SqliteMetadata;
  snapshotter: OverlaySnapshotter;
  gc: GarbageCollector;
}

async function blobs(env: Env): Promise<Set<string>> {
  const out = new Set<string>();
  for await (const info of env.content.walk()) out.add(info.digest);
  return out;
}

async function snapshots(env: Env): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const info of env.snapshotter.walk()) out.set(info.key, info.kind);
  return out;
}

/** A committed snapshot `name` on `parent` (its content does not matter here). */
async function committed(env: Env, name: string, parent?: string): Promise<void> {
  await env.snapshotter.prepare(`tmp-${name}`, parent);
  await env.snapshotter.commit(name, `tmp-${name}`);
}

describe('gc.scheduler collector', () => {
  let env: Env;
  let busybox: Image;
  let other: Image;
  let index: ImageIndex;

  before(async () => {
    busybox = await busyboxImage();
    other = await buildImage({ layers: [[file('/a', 'a')], [file('/b', 'b')]], config: { Cmd: ['x'] } });
    index = buildIndex([busybox, await buildImage({ platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, layers: [[file('/arm', 'x')]] })]);
  });

  beforeEach(async () => {
    if (env) {
      await env.gc.close();
      await env.content.close();
      env.metadata.close();
      await rm(env.dir, { recursive: true, force: true });
    }
    const dir = await mkdtemp(join(tmpdir(), 'berth-gc-'));
    await mkdir(join(dir, 'snapshots'));
    const content = await LocalContentStore.open(join(dir, 'content'), log);
    const metadata = new SqliteMetadata(join(dir, 'meta.db'), log, { synchronous: 'NORMAL', busyTimeoutMs: 1000 });
    const snapshotter = new OverlaySnapshotter({ root: join(dir, 'snapshots'), metadata, log });
    await snapshotter.init();
    env = { dir, content, metadata, snapshotter, gc: new GarbageCollector({ metadata, content, snapshotter, log }) };
  });

  after(async () => {
    if (!env) return;
    await env.gc.close();
    await env.content.close();
    env.metadata.close();
    await rm(env.dir, { recursive: true, force: true });
  });

  test('keeps what image records reach through indexes, manifests and configs; deletes the rest', async () => {
    await putImage(env.content, busybox);
    await put(env.content, index.indexBlob);
    await putImage(env.content, other);
    const orphan = await put(env.content, Buffer.from('nobody wants me'));
    env.metadata.images.create({ name: 'example.com/multi:latest', target: index.descriptor });
    // The arm64 manifest of the index was never stored: nothing to follow, nothing to fail.

    const busyChain = chainIds(busybox.layers.map((l) => l.diffId));
    const otherChain = chainIds(other.layers.map((l) => l.diffId));
    await committed(env, busyChain[0]!);
    await committed(env, otherChain[0]!);
    await committed(env, otherChain[1]!, otherChain[0]);

    const result = await env.gc.collect();
    assert.equal(result.removedBlobs, 3 + other.layers.length, 'the orphan and all of the unnamed image');
    assert.equal(result.removedSnapshots, 2);
    assert.deepEqual(await blobs(env), new Set([index.digest, busybox.digest, busybox.configDigest, ...busybox.layers.map((l) => l.digest)]));
    assert.equal((await blobs(env)).has(orphan), false);
    assert.deepEqual([...(await snapshots(env)).keys()], [busyChain[0]]);
    assert.deepEqual(await readdir(join(env.dir, 'snapshots', 'snapshots')), ['1'], 'removed snapshot dirs are gone from disk');

    const again = await env.gc.collect();
    assert.deepEqual([again.removedBlobs, again.removedSnapshots], [0, 0]);
  });

  test('active snapshots and views keep their parent chains; unreferenced chains go leaf first', async () => {
    await committed(env, 'base');
    await committed(env, 'mid', 'base');
    await committed(env, 'top', 'mid');
    await env.snapshotter.prepare('container-rootfs', 'mid');
    await committed(env, 'lonely-1');
    await committed(env, 'lonely-2', 'lonely-1');
    await committed(env, 'lonely-3', 'lonely-2');
    await committed(env, 'viewed');
    await env.snapshotter.view('a-view', 'viewed');

    const result = await env.gc.collect();
    assert.equal(result.removedSnapshots, 4);
    assert.deepEqual(await snapshots(env), new Map([
      ['base', 'committed'],
      ['mid', 'committed'],
      ['container-rootfs', 'active'],
      ['viewed', 'committed'],
      ['a-view', 'view'],
    ]));
  });

  test('live leases keep content and snapshots; expired leases are deleted first and hold nothing', async () => {
    const kept = await put(env.content, Buffer.from('leased'));
    const dropped = await put(env.content, Buffer.from('lease expired'));
    await committed(env, 'leased-snap');
    await committed(env, 'leased-child', 'leased-snap');
    await committed(env, 'expired-snap');
    env.metadata.leases.create('live', { expiresAt: new Date(Date.now() + 60_000) });
    env.metadata.leases.addResource('live', { type: 'content', id: kept });
    env.metadata.leases.addResource('live', { type: 'snapshot', id: 'leased-child' });
    // A lease may name something that does not exist yet (a pull about to write it).
    env.metadata.leases.addResource('live', { type: 'content', id: `sha256:${'1'.repeat(64)}` });
    env.metadata.leases.create('old', { expiresAt: new Date(Date.now() + 50) });
    env.metadata.leases.addResource('old', { type: 'content', id: dropped });
    env.metadata.leases.addResource('old', { type: 'snapshot', id: 'expired-snap' });
    await sleep(80);

    const result = await env.gc.collect();
    assert.equal(result.expiredLeases, 1);
    assert.deepEqual(env.metadata.leases.list().map((l) => l.id), ['live']);
    assert.deepEqual(await blobs(env), new Set([kept]));
    assert.deepEqual([...(await snapshots(env)).keys()].sort(), ['leased-child', 'leased-snap']);
    assert.deepEqual([result.removedBlobs, result.removedSnapshots], [1, 1]);
  });

  test('a collection waits for guarded sections, and guarded sections wait for a collection', async () => {
    const orphan = await put(env.content, Buffer.from('orphan'));
    let release!: () => void;
    const held = env.gc.guard(() => new Promise<void>((r) => (release = r)));
    await sleep(0);
    let collected = false;
    const collecting = env.gc.collect().then((r) => {
      collected = true;
      return r;
    });
    await sleep(50);
    assert.equal(collected, false, 'the collection waits for the guard');
    // A guard asked for while a collection waits runs after the collection's sweep.
    const later = env.gc.guard(async () => (await blobs(env)).has(orphan));
    release();
    await held;
    assert.equal((await collecting).removedBlobs, 1);
    assert.equal(await later, false, 'the guarded section saw the sweep done');
  });

  test('requests coalesce: calls before a run starts share it; a call during a run gets a later one', async () => {
    const a = env.gc.collect();
    const b = env.gc.collect();
    assert.equal(a, b);
    await sleep(0);
    // `a` has started: what is written after it (here once it is done) is for a later run.
    const orphan = await env.gc.guard(() => put(env.content, Buffer.from('written after the first run')));
    const c = env.gc.collect();
    assert.notEqual(c, a);
    await a;
    assert.equal((await c).removedBlobs, 1);
    assert.equal((await blobs(env)).has(orphan), false);
  });

  test('the timer collects on its own; close stops it and refuses new runs', async () => {
    env.gc.startTimer(100);
    const orphan = await put(env.content, Buffer.from('found by the timer'));
    const deadline = Date.now() + 5000;
    while ((await blobs(env)).has(orphan)) {
      assert.ok(Date.now() < deadline, 'timer run removed the orphan');
      await sleep(20);
    }
    await env.gc.close();
    await assert.rejects(env.gc.collect(), /closed/);
  });

  test('an image record whose manifest does not parse keeps only itself, and the run goes on', async () => {
    const junk = await put(env.content, Buffer.from('{"not": "a manifest"'));
    const orphan = await put(env.content, Buffer.from('orphan'));
    env.metadata.images.create({ name: 'example.com/broken:latest', target: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: junk, size: 20 } });
    const result = await env.gc.collect();
    assert.equal(result.removedBlobs, 1);
    assert.deepEqual(await blobs(env), new Set([junk]));
    assert.equal((await blobs(env)).has(orphan), false);
  });
});
