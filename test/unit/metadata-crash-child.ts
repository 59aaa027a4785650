/**
 * Child process for metadata-crash.test: rewrites a group of images in one
 * transaction per generation, as fast as it can, until it is killed.
 * argv: <db path>. Prints "ready", then "committed <gen>" after each commit.
 *
 * Generation g writes images img-0..img-3 with label gen=g and a target that
 * depends on g; img-4 exists exactly when g is even.
 */
import { createHash } from 'node:crypto';
import { writeSync } from 'node:fs';
import { createLogger } from '../../src/core/log.js';
import { SqliteMetadata } from '../../src/core/metadata/index.js';

const path = process.argv[2];
if (!path) throw new Error('usage: metadata-crash-child <db path>');
const meta = new SqliteMetadata(path, createLogger('silent'));

function targetFor(gen: number): { mediaType: string; digest: string; size: number } {
  return {
    mediaType: gen % 3 === 0 ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json',
    digest: `sha256:${createHash('sha256').update(`gen ${gen}`).digest('hex')}`,
    size: 1000 + gen,
  };
}

const last = meta.images.list().reduce((max, img) => Math.max(max, Number(img.labels.gen ?? 0)), 0);
writeSync(1, 'ready\n');
for (let gen = last + 1; ; gen++) {
  meta.transaction(() => {
    for (let i = 0; i < 4; i++) {
      // Big labels make each commit span several pages.
      meta.images.upsert({ name: `img-${i}`, target: targetFor(gen), labels: { gen: String(gen), pad: 'x'.repeat(3000 + i) } });
    }
    if (gen % 2 === 0) meta.images.create({ name: 'img-4', target: targetFor(gen), labels: { gen: String(gen) } });
    else if (gen > 1) meta.images.delete('img-4');
  });
  // Synchronous write: the parent only trusts a generation once it reads this.
  writeSync(1, `committed ${gen}\n`);
}
