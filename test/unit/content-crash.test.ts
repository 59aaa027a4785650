import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { LocalContentStore } from '../../src/core/content/index.js';
import { createLogger } from '../../src/core/log.js';

const child = join(dirname(fileURLToPath(import.meta.url)), 'content-crash-child.js');

/** Starts the child, waits until it is writing, lets it run `ms` more and SIGKILLs it. */
async function runAndKill(root: string, ms: number): Promise<void> {
  const proc = spawn(process.execPath, [child, root], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => proc.on('exit', (code, signal) => resolve(signal ?? code)));
  try {
    await new Promise<void>((resolve, reject) => {
      proc.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('ready')) resolve();
      });
      proc.on('exit', () => reject(new Error(`child exited early: ${stderr}`)));
    });
    await sleep(ms);
  } finally {
    proc.kill('SIGKILL');
  }
  assert.equal(await exited, 'SIGKILL');
}

test('kill -9 during ensure never leaves a partial blob, and init cleans the ingest', async () => {
  const root = await mkdtemp(join(tmpdir(), 'berth-content-crash-'));
  const log = createLogger('silent');
  try {
    let killsMidIngest = 0;
    for (let round = 0; round < 6; round++) {
      await runAndKill(root, Math.floor(Math.random() * 250));
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
