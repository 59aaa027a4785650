import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WorkerApplier } from '../../src/core/diff/index.js';
import { BerthError, isBerthError } from '../../src/core/errors.js';
import { buildLayer, diffTrees, expectedTree, file, multiLayerImage, treeOf } from '../fixtures/index.js';
import { chunks, silent, Stack, TAR, TAR_GZIP } from './diff-helpers.js';

function code(err: unknown): string {
  return isBerthError(err) ? err.code : String(err);
}

describe('applying layers in worker threads', () => {
  let stack: Stack;
  let applier: WorkerApplier;

  before(async () => {
    stack = await Stack.create('berth-diff-worker-');
    applier = new WorkerApplier(2, silent);
  });

  after(async () => {
    await applier.close();
    await stack.close();
  });

  test('a four-layer image applied by two workers, two images at once, mounts as exactly its tree', async () => {
    const image = await multiLayerImage({ compression: 'gzip' });
    const applyImage = async (prefix: string): Promise<string> => {
      let parent: string | undefined;
      for (const [i, layer] of image.layers.entries()) {
        const key = `extract-${prefix}-${i}`;
        const mounts = await stack.snapshotter.prepare(key, parent);
        // Chunks larger than a ring slot are split; small ones go as they are.
        const result = await applier.apply(mounts, chunks(layer.blob, i % 2 === 0 ? 7001 : 600_000), {
          mediaType: image.manifest.layers[i]!.mediaType,
          expectedDiffId: layer.diffId,
        });
        assert.equal(result.diffId, layer.diffId);
        assert.equal(result.size, layer.tar.length);
        await stack.snapshotter.commit(`${prefix}-${i}`, key);
        parent = `${prefix}-${i}`;
      }
      return parent!;
    };
    const tops = await Promise.all([applyImage('one'), applyImage('two')]);
    for (const top of tops) {
      const merged = await stack.mountAt(await stack.snapshotter.view(`view-${top}`, top), top);
      assert.deepEqual(diffTrees(expectedTree(image), await treeOf(merged)), []);
    }
  });

  test('errors come back with their codes; a failed source gives its own error; a cancel stops the apply', async () => {
    const layer = await buildLayer([file('/f', 'data')], { compression: 'gzip' });
    const mounts = await stack.snapshotter.prepare('worker-refusals');
    await assert.rejects(applier.apply(mounts, chunks(layer.blob), { mediaType: TAR_GZIP, expectedDiffId: `sha256:${'0'.repeat(64)}` }), (e) => {
      assert.ok(e instanceof BerthError);
      assert.equal(e.code, 'ERR_DIFF_ID_MISMATCH');
      assert.equal(e.kind, 'failed-precondition');
      assert.equal(e.context['expected'], `sha256:${'0'.repeat(64)}`);
      return true;
    });
    await assert.rejects(applier.apply(mounts, chunks(layer.blob.subarray(0, layer.blob.length - 20)), { mediaType: TAR_GZIP }), (e) => code(e) === 'ERR_LAYER_DECOMPRESS');
    await assert.rejects(applier.apply(mounts, chunks(layer.blob), { mediaType: 'application/vnd.oci.image.layer.v1.tar+bzip2' }), (e) => code(e) === 'ERR_LAYER_MEDIA_TYPE');

    const broken = new BerthError('unavailable', 'ERR_CONTENT_FOLLOW_BROKEN', 'the download failed');
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield layer.tar.subarray(0, 512);
      throw broken;
    }
    await assert.rejects(applier.apply(mounts, failing(), { mediaType: TAR }), (e) => e === broken);

    const ac = new AbortController();
    let closed = false;
    async function* slow(): AsyncGenerator<Uint8Array> {
      try {
        yield layer.tar.subarray(0, 512);
        ac.abort();
        await new Promise((r) => setTimeout(r, 10));
        yield layer.tar.subarray(512);
      } finally {
        closed = true;
      }
    }
    await assert.rejects(applier.apply(mounts, slow(), { mediaType: TAR, signal: ac.signal }), (e) => code(e) === 'ERR_DIFF_CANCELLED');
    assert.ok(closed, 'the source is closed when the apply returns');

    // The workers still work after all that.
    const ok = await applier.apply(mounts, chunks(layer.blob), { mediaType: TAR_GZIP, expectedDiffId: layer.diffId });
    assert.equal(ok.diffId, layer.diffId);
  });
});

