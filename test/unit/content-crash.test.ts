import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { LocalContentStore } from '../../src/core/content/index.js';
import { createLogger } from '../../src/core/log.js';
import { runAndKill } from './crash-helpers.js';

test('kill -9 during ensure never leaves a partial blob, and init cleans the ingest', async () => {
  const root = await mkdtemp(join(tmpdir(), 'berth-content-crash-'));
  const log = createLogger('silent');
  try {
    let killsMidIngest = 0;
    for (let round = 0; round < 6; round++) {
      await runAndKill('content-crash-child.js', [root], 'ready', Math.floor(Math.random() * 250));
      // Every visible blob must be whole: its bytes hash to its name.
      const blobDir = join(root, 'blobs', 'sha256');
      for (const name of await readdir(blobDir)) {
        const data = await readFile(join(blobDir, name));
        assert.equal(createHash('sha256').update(data).digest('hex'), name, `blob ${name} is partial`);
      }
      const ingests = await readdir(join(root, 'ingest'));
      if (ingests.length > 0) killsMidIngest++;
      const store = await LocalContentStore.open(root, log);
      try {
        assert.deepEqual(await readdir(join(root, 'ingest')), [], 'init removes leftover ingests');
        const walked: string[] = [];
        for await (const info of store.walk()) walked.push(info.digest.slice('sha256:'.length));
        assert.deepEqual(walked.sort(), (await readdir(blobDir)).sort());
      } finally {
        await store.close();
      }
    }
    // The child spends nearly all its time inside ensure(); if no kill caught
    // an ingest, the test did not exercise what it claims to.
    assert.ok(killsMidIngest >= 3, `only ${killsMidIngest} of 6 kills landed mid-ingest`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
