import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { isBerthError } from '../../src/core/errors.js';
import {
  buildImage,
  buildLayer,
  busyboxLayer,
  diffTrees,
  dir,
  expectedTree,
  file,
  pseudoRandomBytes,
  pushImage,
  startRegistry,
  type Image,
  type Layer,
  type RegistryHandle,
} from '../fixtures/index.js';
import { ingests, openStack, snapshotKeys, snapshotTree, startCountingProxy, type CountingProxy } from './images-harness.js';

describe('images.store: layers unpacked while they download', () => {
  let registry: RegistryHandle;
  let proxy: CountingProxy;
  let shared: Layer;
  /** busybox with the shared layer on top, and the shared layer alone: one blob, two chain IDs. */
  let onBusybox: Image;
  let alone: Image;

  before(async () => {
    registry = await startRegistry();
    proxy = await startCountingProxy(registry.host);
    shared = await buildLayer([dir('/shared'), file('/shared/data.bin', pseudoRandomBytes('follow', 2 << 20))], { level: 0 });
    onBusybox = await buildImage({ layers: [await busyboxLayer(), shared] });
    alone = await buildImage({ layers: [shared] });
    await pushImage(registry, 'follow/on-busybox', 'latest', onBusybox);
    await pushImage(registry, 'follow/alone', 'latest', alone);
  });
  after(async () => {
    await proxy?.stop();
    await registry?.stop();
  });

  test('an unpack following a download another pull led, which is cancelled, unpacks the blob this pull then downloads', async () => {
    const stack = await openStack();
    const gate = proxy.gate(shared.digest, 1000);
    try {
      proxy.blobGets.clear();
      const ctl = new AbortController();
      const leader = stack.images.pull(`${proxy.host}/follow/on-busybox:latest`, { signal: ctl.signal });
      leader.catch(() => undefined);
      await gate.reached;
      // This pull waits on the leader's download of the shared blob and
      // unpacks it (its bottom layer) from that download's ingest.
      const follower = stack.images.pull(`${proxy.host}/follow/alone:latest`);
      // Its extraction snapshot (named by the chain ID, here the diff ID) exists once it reads the layer.
      const extracting = async (): Promise<boolean> =>
        [...(await snapshotKeys(stack)).keys()].some((k) => k.startsWith('extract-') && k.endsWith(shared.diffId.slice('sha256:'.length)));
      for (let i = 0; i < 200 && !(await extracting()); i++) await sleep(25);
      assert.ok(await extracting(), 'the follower never started unpacking');
      await sleep(100);
      ctl.abort();
      await assert.rejects(leader, (err: unknown) => isBerthError(err) && err.code === 'ERR_PULL_CANCELLED');
      gate.release();
      const rec = await follower;
      assert.equal(proxy.blobGets.get(shared.digest), 2, 'the shared blob is downloaded again by the follower');
      assert.deepEqual(diffTrees(expectedTree(alone), await snapshotTree(stack, rec.chainId)), []);
      assert.deepEqual(await ingests(stack), []);
      assert.deepEqual([...(await snapshotKeys(stack)).keys()].filter((k) => k.startsWith('extract-')), []);
    } finally {
      gate.release();
      await stack.dispose();
    }
  });
});
