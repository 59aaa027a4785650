import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { test } from 'node:test';
import { createLogger } from '../../src/core/log.js';
import { SqliteMetadata } from '../../src/core/metadata/index.js';
import { runAndKill } from './crash-helpers.js';

/** Runs the child until it has committed, lets it run `ms` more, SIGKILLs it; returns the last generation it reported. */
async function lastGenerationBeforeKill(dbPath: string, ms: number): Promise<number> {
  const stdout = await runAndKill('metadata-crash-child.js', [dbPath], 'committed', ms);
  const gens = [...stdout.matchAll(/committed (\d+)\n/g)].map((m) => Number(m[1]));
  return gens.at(-1) ?? 0;
}

function expectedTarget(gen: number): { mediaType: string; digest: string; size: number } {
  return {
    mediaType: gen % 3 === 0 ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json',
    digest: `sha256:${createHash('sha256').update(`gen ${gen}`).digest('hex')}`,
    size: 1000 + gen,
  };
}

test('SIGKILL while writing images leaves a sound database with whole records', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-metadata-crash-'));
  const dbPath = join(dir, 'meta.db');
  const log = createLogger('silent');
  try {
    let previous = 0;
    for (let round = 0; round < 6; round++) {
      const reported = await lastGenerationBeforeKill(dbPath, 20 + Math.floor(Math.random() * 200));

      // Raw look first, before our own open code touches the file.
      const raw = new DatabaseSync(dbPath);
      try {
        const integrity = raw.prepare('PRAGMA integrity_check').all();
        assert.deepEqual(integrity.map((r) => r.integrity_check), ['ok']);
        const rows = raw.prepare('SELECT * FROM images ORDER BY name').all();
        for (const row of rows) {
          for (const col of ['name', 'target_media_type', 'target_digest', 'target_size', 'labels', 'created_at', 'updated_at']) {
            assert.notEqual(row[col], null, `${String(row.name)}.${col} missing`);
          }
        }
      } finally {
        raw.close();
      }

      const meta = new SqliteMetadata(dbPath, log);
      try {
        const images = meta.images.list();
        const gens = new Set(images.map((img) => Number(img.labels.gen)));
        // One transaction per generation: never a mix of two.
        assert.equal(gens.size, 1, `images from several generations: ${[...gens].join(',')}`);
        const gen = [...gens][0]!;
        // Every commit the child saw succeed is there (it may have committed more before dying).
        assert.ok(gen >= reported, `generation ${gen} older than the reported ${reported}`);
        assert.ok(gen > previous, `no progress in round ${round}`);
        const names = images.map((img) => img.name);
        assert.deepEqual(names, gen % 2 === 0 ? ['img-0', 'img-1', 'img-2', 'img-3', 'img-4'] : ['img-0', 'img-1', 'img-2', 'img-3']);
        for (const img of images) {
          assert.deepEqual(img.target, expectedTarget(gen), `${img.name} target`);
          if (img.name !== 'img-4') assert.equal(img.labels.pad?.length, 3000 + Number(img.name.slice(4)));
        }
        previous = gen;
      } finally {
        meta.close();
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
