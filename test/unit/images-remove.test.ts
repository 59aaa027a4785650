import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { access, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { chainIds } from '../../src/core/gc/index.js';
import type { ImageEvent } from '../../src/core/images/index.js';
import {
  busyboxImage,
  diffTrees,
  expectedTree,
  multiLayerImage,
  pushImage,
  startRegistry,
  type Image,
  type RegistryHandle,
} from '../fixtures/index.js';
import { blobDigests, openStack, snapshotKeys, snapshotTree, startCountingProxy, type CountingProxy, type Stack } from './images-harness.js';

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** Snapshot dirs on disk (each snapshot is `snapshots/<id>`). */
async function snapshotDirs(stack: Stack): Promise<string[]> {
  return readdir(join(stack.root, 'snapshotter.overlayfs', 'snapshots'));
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function putOrphanBlob(stack: Stack): Promise<string> {
  const data = randomBytes(1000);
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  await stack.content.ensure({ digest, size: data.length }, async () => (async function* () { yield data; })());
  return digest;
}

describe('images.store: removing images and collecting what they held', () => {
  let registry: RegistryHandle;
  let proxy: CountingProxy;
  let busybox: Image;
  let multi: Image;
  const stacks: Stack[] = [];
  const repo = (name: string): string => `${proxy.host}/test/${name}`;

  async function fresh(o: Parameters<typeof openStack>[0] = {}): Promise<Stack> {
    const s = await openStack(o);
    stacks.push(s);
    return s;
  }

  /** Closes a stack whose dir another stack takes over (and removes). */
  async function reopen(s: Stack): Promise<void> {
    await s.close();
    stacks.splice(stacks.indexOf(s), 1);
  }

  before(async () => {
    registry = await startRegistry();
    proxy = await startCountingProxy(registry.host);
    [busybox, multi] = await Promise.all([busyboxImage(), multiLayerImage()]);
    await pushImage(registry, 'test/busybox', ['latest', 'v1', 'v2'], busybox);
    await pushImage(registry, 'test/multi', 'latest', multi);
  });
  after(async () => {
    for (const s of stacks) await s.dispose();
    await proxy?.stop();
    await registry?.stop();
  });

  test('by tag removes that tag; by name@digest that name; the last tag takes every name', async () => {
    const s = await fresh();
    for (const tag of ['latest', 'v1', 'v2']) await s.images.pull(`${repo('busybox')}:${tag}`);
    const id = busybox.configDigest;
    const digestName = `${repo('busybox')}@${busybox.digest}`;
    assert.deepEqual(s.images.get(id)?.repoTags, ['latest', 'v1', 'v2'].map((t) => `${repo('busybox')}:${t}`));
    const events: ImageEvent[] = [];
    s.images.onChange((e) => events.push(e));

    assert.equal(await s.images.remove(`${repo('busybox')}:v1`), true);
    assert.deepEqual(s.images.get(id)?.repoTags, [`${repo('busybox')}:latest`, `${repo('busybox')}:v2`]);
    assert.deepEqual(s.images.get(id)?.repoDigests, [digestName]);
    assert.equal(s.images.get(`${repo('busybox')}:v1`), undefined);
    assert.deepEqual(events, [{ type: 'delete', name: `${repo('busybox')}:v1` }]);

    assert.equal(await s.images.remove(digestName), true);
    assert.deepEqual(s.images.get(id)?.repoDigests, []);
    assert.deepEqual(s.images.get(id)?.repoTags, [`${repo('busybox')}:latest`, `${repo('busybox')}:v2`]);

    assert.equal(await s.images.remove(`${repo('busybox')}:latest`), true);
    assert.ok(await s.content.has(busybox.layers[0]!.digest), 'blobs stay while a name is left');
    assert.equal(await s.images.remove(`${repo('busybox')}:v2`), true);
    assert.equal(s.images.get(id), undefined);
    assert.deepEqual(s.images.list(), []);
    assert.deepEqual(s.metadata.images.list(), []);
    // The removal waited for the collector: nothing is left on disk.
    assert.deepEqual([...(await blobDigests(s))], []);
    assert.deepEqual([...(await snapshotKeys(s))], []);
    assert.deepEqual(await snapshotDirs(s), []);
    assert.equal(await s.images.remove(id), false, 'removing what is gone is false');

    // The last tag also takes the digest names with it.
    await s.images.pull(`${repo('busybox')}:latest`);
    assert.equal(await s.images.remove(`${repo('busybox')}:latest`), true);
    assert.equal(s.images.get(id), undefined);
    assert.deepEqual(s.metadata.images.list(), []);
  });

  test('by id or id prefix removes every name; shared layers stay for the image still using them', async () => {
    const s = await fresh();
    await s.images.pull(`${repo('busybox')}:latest`);
    await s.images.pull(`${repo('busybox')}:v1`);
    const m = await s.images.pull(`${repo('multi')}:latest`);
    const multiChains = chainIds(m.diffIds);
    const blobPath = (digest: string): string => s.content.path(digest);

    assert.equal(await s.images.remove(multi.configDigest.slice('sha256:'.length, 'sha256:'.length + 12)), true);
    assert.equal(s.images.get(multi.configDigest), undefined);
    for (const digest of [multi.digest, multi.configDigest, ...multi.layers.slice(1).map((l) => l.digest)]) {
      assert.equal(await exists(blobPath(digest)), false, `blob ${digest} deleted`);
    }
    // Layer 0 is busybox's layer, still used.
    assert.equal(await exists(blobPath(multi.layers[0]!.digest)), true);
    const keys = await snapshotKeys(s);
    assert.equal(keys.get(multiChains[0]!), 'committed');
    for (const id of multiChains.slice(1)) assert.equal(keys.has(id), false, `snapshot ${id} removed`);
    assert.deepEqual(diffTrees(expectedTree(busybox), await snapshotTree(s, multiChains[0]!)), []);

    assert.equal(await s.images.remove(busybox.configDigest), true);
    assert.deepEqual(s.images.list(), []);
    assert.deepEqual(s.metadata.images.list(), []);
    assert.deepEqual([...(await blobDigests(s))], []);
    assert.deepEqual(await snapshotDirs(s), []);
    assert.equal(await s.images.remove(`${repo('never')}:latest`), false);
    assert.equal(await s.images.remove('0123456789ab'), false);
  });

  test('a collection during a pull keeps what the pull has leased, and removes what nothing holds', async () => {
    const s = await fresh();
    const top = multi.layers[3]!;
    const gate = proxy.gate(top.digest, 10);
    try {
      const pulling = s.images.pull(`${repo('multi')}:latest`);
      await gate.reached;
      const chains = chainIds(multi.layers.map((l) => l.diffId));
      await until('layers below the held one unpacked', async () => {
        const keys = await snapshotKeys(s);
        return chains.slice(0, 3).every((c) => keys.get(c) === 'committed');
      });
      const orphan = await putOrphanBlob(s);
      const blobsBefore = await blobDigests(s);
      const snapshotsBefore = await snapshotKeys(s);

      const result = await s.gc.collect();
      assert.equal(result.removedBlobs, 1, 'only the orphan goes');
      assert.equal(result.removedSnapshots, 0);
      const blobsAfter = await blobDigests(s);
      assert.equal(blobsAfter.has(orphan), false);
      blobsBefore.delete(orphan);
      assert.deepEqual(blobsAfter, blobsBefore);
      assert.deepEqual(await snapshotKeys(s), snapshotsBefore);

      gate.release();
      const rec = await pulling;
      assert.deepEqual(diffTrees(expectedTree(multi), await snapshotTree(s, rec.chainId)), []);
      assert.deepEqual(s.metadata.leases.list(), [], 'the lease is gone with the pull');
      const after = await s.gc.collect();
      assert.deepEqual([after.removedBlobs, after.removedSnapshots], [0, 0], 'the image record now holds everything');
    } finally {
      gate.release();
    }
  });

  test('records survive a restart; what a crash left mid-pull is cleared at start', async () => {
    const s = await fresh();
    await s.images.pull(`${repo('busybox')}:latest`);
    await s.images.pull(`${repo('multi')}:latest`);
    const listed = s.images.list();
    // What a pull killed while unpacking leaves: an extraction snapshot and its lease.
    await s.snapshotter.prepare('extract-000000000000-deadbeef', busybox.layers[0]!.diffId);
    s.metadata.leases.create('pull-left-behind', { labels: { 'berth.io/owner': 'images.store' } });
    s.metadata.leases.addResource('pull-left-behind', { type: 'content', id: await putOrphanBlob(s) });
    await reopen(s);
    const again = await openStack({ dir: s.dir });
    stacks.push(again);
    assert.deepEqual(again.images.list(), listed);
    assert.equal((await snapshotKeys(again)).has('extract-000000000000-deadbeef'), false);
    assert.deepEqual(again.metadata.leases.list(), []);
    // The collector scheduled at start removes what the lease held.
    await again.gc.collect();
    const blobs = await blobDigests(again);
    assert.deepEqual([...blobs].sort(), [...new Set([...imageBlobs(busybox), ...imageBlobs(multi)])].sort());
  });

  test('pinned: from config, and through pin() kept across restarts', async () => {
    const s = await fresh({ images: { pinned_images: [`${repo('busybox')}:v1`] } });
    assert.equal((await s.images.pull(`${repo('busybox')}:latest`)).pinned, false);
    assert.equal((await s.images.pull(`${repo('busybox')}:v1`)).pinned, true, 'one pinned name pins the image');
    assert.equal((await s.images.pull(`${repo('multi')}:latest`)).pinned, false);
    s.images.pin(multi.configDigest);
    assert.equal(s.images.get(`${repo('multi')}:latest`)?.pinned, true);
    await reopen(s);
    const again = await openStack({ dir: s.dir });
    stacks.push(again);
    assert.equal(again.images.get(multi.configDigest)?.pinned, true);
    assert.equal(again.images.get(busybox.configDigest)?.pinned, false, 'the config pin is not in this stack');
  });

  test('fsInfo reports the snapshotter root and what images use', async () => {
    const s = await fresh();
    const empty = await s.images.fsInfo();
    await s.images.pull(`${repo('multi')}:latest`);
    const full = await s.images.fsInfo();
    assert.equal(full.mountpoint, join(s.root, 'snapshotter.overlayfs'));
    assert.ok(full.usedBytes > empty.usedBytes + multi.layers.reduce((n, l) => n + l.size, 0), `${full.usedBytes} vs ${empty.usedBytes}`);
    assert.ok(full.inodesUsed > empty.inodesUsed);
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    assert.ok(full.timestamp <= nowNs && full.timestamp > nowNs - 60_000_000_000n);
  });
});

function imageBlobs(img: Image): string[] {
  return [img.digest, img.configDigest, ...img.layers.map((l) => l.digest)];
}
