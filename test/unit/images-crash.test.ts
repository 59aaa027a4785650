import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { diffTrees, expectedTree, largeImage, pushImage, startRegistry } from '../fixtures/index.js';
import { ingests, openStack, snapshotKeys, snapshotTree, startCountingProxy } from './images-harness.js';

const child = join(dirname(fileURLToPath(import.meta.url)), 'images-crash-child.js');

/** Every blob hashes to its name: nothing partial is visible. */
async function assertBlobsWhole(root: string): Promise<number> {
  const dir = join(root, 'content.local', 'blobs', 'sha256');
  const names = await readdir(dir);
  for (const name of names) {
    const hash = createHash('sha256');
    await pipeline(createReadStream(join(dir, name)), hash);
    assert.equal(hash.digest('hex'), name, `blob ${name} is partial`);
  }
  return names.length;
}

test('kill -9 mid-pull: after restart no image record, no partial blob, no lease or extraction snapshot; the pull then succeeds', async () => {
  const registry = await startRegistry();
  const proxy = await startCountingProxy(registry.host);
  const dir = await mkdtemp(join(tmpdir(), 'berth-images-crash-'));
  const big = await largeImage({ totalBytes: 48 << 20, layers: 3 });
  await pushImage(registry, 'test/large', 'latest', big);
  const ref = `${proxy.host}/test/large:latest`;
  // Hold the biggest layer half-way, so the child is surely mid-download when it dies.
  const held = big.layers.reduce((a, b) => (b.size > a.size ? b : a));
  const gate = proxy.gate(held.digest, held.size >> 1);
  const proc = spawn(process.execPath, [child, dir, ref], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => proc.on('exit', (code, signal) => resolve(signal ?? code)));
  try {
    await Promise.race([
      gate.reached,
      exited.then((how) => {
        throw new Error(`child exited (${String(how)}) before the download was held: ${stderr}`);
      }),
    ]);
    // The held blob's bytes reach the ingest file before the kill.
    const root = join(dir, 'root');
    const deadline = Date.now() + 10_000;
    while ((await ingests({ root })).length === 0) {
      assert.ok(Date.now() < deadline, 'an ingest appears');
      await sleep(10);
    }
    proc.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL');
    gate.release();
    assert.ok((await ingests({ root })).length > 0, 'the kill left a partial download behind');

    const stack = await openStack({ dir });
    try {
      assert.deepEqual(stack.images.list(), []);
      assert.deepEqual(stack.metadata.images.list(), []);
      assert.deepEqual(stack.metadata.leases.list(), []);
      assert.deepEqual(await ingests(stack), []);
      assert.deepEqual([...(await snapshotKeys(stack)).keys()].filter((k) => k.startsWith('extract-')), []);
      // Start-up scheduled a collection for what the dead pull's lease held; let it finish first.
      await stack.gc.collect();
      await assertBlobsWhole(stack.root);
      const rec = await stack.images.pull(ref);
      assert.equal(rec.id, big.configDigest);
      assert.equal(await assertBlobsWhole(stack.root), 2 + big.layers.length);
      assert.deepEqual(diffTrees(expectedTree(big), await snapshotTree(stack, rec.chainId)), []);
    } finally {
      await stack.dispose();
    }
  } finally {
    gate.release();
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
    await proxy.stop();
    await registry.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
