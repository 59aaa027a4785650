/**
 * Child process for snapshotter-overlay.test: prepares, commits and removes
 * snapshots in a loop until it is killed. argv: <snapshotter root> <db path>.
 * Prints "ready" once the first snapshot exists.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger } from '../../src/core/log.js';
import { MetadataDB } from '../../src/core/metadata/index.js';
import { OverlaySnapshotter } from '../../src/core/snapshotter/index.js';

const [root, dbPath] = process.argv.slice(2);
if (root === undefined || dbPath === undefined) throw new Error('usage: snapshotter-crash-child <root> <db>');
const log = createLogger('silent');
// FULL, the daemon's default: new snapshots' records are committed without an fsync all the same.
const snapshotter = new OverlaySnapshotter({ root, metadata: new MetadataDB(dbPath, log, { synchronous: 'FULL', busyTimeoutMs: 1000 }), log });
await snapshotter.init();

let parent: string | undefined;
for (let i = 0; ; i++) {
  const key = `${process.pid}-${i}`;
  const mounts = await snapshotter.prepare(`active-${key}`, parent);
  const m = mounts[0]!;
  const upper = m.type === 'bind' ? m.source : m.options.find((o) => o.startsWith('upperdir='))!.slice('upperdir='.length);
  await writeFile(join(upper, `file-${i}`), 'x'.repeat(4096));
  await snapshotter.commit(`committed-${key}`, `active-${key}`);
  if (i === 0) process.stdout.write('ready\n');
  // An active snapshot made and removed again, as a failed pull does.
  await snapshotter.prepare(`scratch-${key}`, `committed-${key}`);
  await snapshotter.remove(`scratch-${key}`);
  parent = `committed-${key}`;
  if (i % 5 === 4) {
    // Start a new chain: remove every snapshot (also those an earlier, killed
    // child left), children before parents (walk goes in creation order).
    const all: string[] = [];
    for await (const info of snapshotter.walk()) all.push(info.key);
    for (const k of all.reverse()) await snapshotter.remove(k);
    parent = undefined;
  }
}
