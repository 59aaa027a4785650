import assert from 'node:assert/strict';
import { link, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isBerthError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/log.js';
import { MetadataDB } from '../../src/core/metadata/index.js';
import { PluginSkipError } from '../../src/core/plugin/errors.js';
import type { InitContext } from '../../src/core/plugin/types.js';
import {
  MAX_MOUNT_DATA,
  mount,
  mountData,
  overlayfsSnapshotterRegistration,
  OverlaySnapshotter,
  unmount,
  unmountAll,
  type Mount,
} from '../../src/core/snapshotter/index.js';
import { runAndKill } from './crash-helpers.js';

const log = createLogger('silent');

interface Fixture {
  dir: string;
  root: string;
  db: MetadataDB;
  snapshotter: OverlaySnapshotter;
}

async function open(dir: string): Promise<Fixture> {
  const root = join(dir, 'root');
  await mkdir(root, { recursive: true });
  const db = new MetadataDB(join(dir, 'meta.db'), log, { synchronous: 'NORMAL', busyTimeoutMs: 1000 });
  const snapshotter = new OverlaySnapshotter({ root, metadata: db, log });
  await snapshotter.init();
  return { dir, root, db, snapshotter };
}

/** The writable dir of a snapshot's mounts, as the diff applier finds it. */
function upperOf(mounts: Mount[]): string {
  const m = mounts[0]!;
  if (m.type === 'bind') return m.source;
  const opt = m.options.find((o) => o.startsWith('upperdir='));
  assert.ok(opt, 'overlay mount has an upperdir');
  return opt.slice('upperdir='.length);
}

function code(err: unknown): string {
  return isBerthError(err) ? err.code : String(err);
}

describe('overlayfs snapshotter', () => {
  let fx: Fixture;
  const mounted: string[] = [];

  async function mountAt(mounts: Mount[], name: string): Promise<string> {
    const target = join(fx.dir, 'mnt', name);
    await mkdir(target, { recursive: true });
    await mount(mounts, target);
    mounted.push(target);
    return target;
  }

  before(async () => {
    fx = await open(await mkdtemp(join(tmpdir(), 'berth-snap-')));
  });

  after(async () => {
    for (const target of mounted.reverse()) await unmountAll(target, { detach: true });
    fx.db.db.close();
    await rm(fx.dir, { recursive: true, force: true });
  });

  test('a snapshot without parent is a bind of its own dir; commit, then a child is an overlay on it', async () => {
    const base = await fx.snapshotter.prepare('base-active', undefined, { labels: { a: '1' } });
    assert.equal(base.length, 1);
    assert.equal(base[0]!.type, 'bind');
    assert.deepEqual(base[0]!.options, ['rbind', 'rw']);
    assert.match(base[0]!.source, /\/snapshots\/[0-9]+\/fs$/);

    const target = await mountAt(base, 'base');
    await writeFile(join(target, 'hello'), 'from base');
    await unmount(target);
    mounted.pop();

    await fx.snapshotter.commit('base', 'base-active');
    await assert.rejects(fx.snapshotter.stat('base-active'), (e) => code(e) === 'ERR_SNAPSHOT_NOT_FOUND');
    const info = await fx.snapshotter.stat('base');
    assert.equal(info.kind, 'committed');
    assert.deepEqual(info.labels, { a: '1' }, 'commit without labels keeps them');

    const child = await fx.snapshotter.prepare('child', 'base');
    const m = child[0]!;
    assert.equal(m.type, 'overlay');
    assert.ok(m.cwd?.endsWith('/snapshots'));
    const lower = m.options.find((o) => o.startsWith('lowerdir='));
    assert.match(lower ?? '', /^lowerdir=[0-9]+\/fs$/, 'lower dirs are relative to cwd');
    assert.ok(m.options.some((o) => o.startsWith('upperdir=/')));
    assert.ok(m.options.some((o) => o.startsWith('workdir=/')));

    const merged = await mountAt(child, 'child');
    assert.equal(await readFile(join(merged, 'hello'), 'utf8'), 'from base');
    await writeFile(join(merged, 'new'), 'from child');
    await unmount(merged);
    mounted.pop();
    assert.equal(await readFile(join(upperOf(child), 'new'), 'utf8'), 'from child', 'writes land in the upper dir');

    const childInfo = await fx.snapshotter.stat('child');
    assert.equal(childInfo.parent, 'base');
    assert.equal(childInfo.kind, 'active');
    assert.deepEqual(await fx.snapshotter.mounts('child'), child);
  });

  test('views are read-only: one parent is a ro bind, more are an overlay without upper dir', async () => {
    const single = await fx.snapshotter.view('view-1', 'base');
    assert.equal(single[0]!.type, 'bind');
    assert.deepEqual(single[0]!.options, ['rbind', 'ro']);
    const t1 = await mountAt(single, 'view-1');
    assert.equal(await readFile(join(t1, 'hello'), 'utf8'), 'from base');
    await assert.rejects(writeFile(join(t1, 'x'), 'y'), { code: 'EROFS' });

    await fx.snapshotter.commit('child-committed', 'child');
    const multi = await fx.snapshotter.view('view-2', 'child-committed');
    assert.equal(multi[0]!.type, 'overlay');
    assert.ok(!multi[0]!.options.some((o) => o.startsWith('upperdir=')));
    const t2 = await mountAt(multi, 'view-2');
    assert.equal(await readFile(join(t2, 'hello'), 'utf8'), 'from base');
    assert.equal(await readFile(join(t2, 'new'), 'utf8'), 'from child');
    await assert.rejects(writeFile(join(t2, 'x'), 'y'), { code: 'EROFS' });
    assert.equal((await fx.snapshotter.stat('view-2')).kind, 'view');

    const empty = await fx.snapshotter.view('view-empty');
    assert.deepEqual(empty[0]!.options, ['rbind', 'ro']);
  });

  test('errors: existing key, missing or uncommitted parent, removing a parent, mounting a committed one', async () => {
    await assert.rejects(fx.snapshotter.prepare('base'), (e) => isBerthError(e) && e.kind === 'already-exists');
    await assert.rejects(fx.snapshotter.prepare('x', 'nope'), (e) => isBerthError(e) && e.kind === 'not-found');
    await fx.snapshotter.prepare('active-parent');
    await assert.rejects(fx.snapshotter.prepare('y', 'active-parent'), (e) => code(e) === 'ERR_SNAPSHOT_PARENT_NOT_COMMITTED');
    await assert.rejects(fx.snapshotter.remove('base'), (e) => isBerthError(e) && e.kind === 'failed-precondition');
    await assert.rejects(fx.snapshotter.mounts('base'), (e) => code(e) === 'ERR_SNAPSHOT_COMMITTED');
    await assert.rejects(fx.snapshotter.commit('base', 'active-parent'), (e) => isBerthError(e) && e.kind === 'already-exists');
    await assert.rejects(fx.snapshotter.commit('z', 'base'), (e) => code(e) === 'ERR_SNAPSHOT_NOT_ACTIVE');
    await assert.rejects(fx.snapshotter.prepare(''), (e) => code(e) === 'ERR_SNAPSHOT_INVALID_KEY');
    // A failed prepare leaves no dir behind.
    const names = await readdir(join(fx.root, 'snapshots'));
    assert.ok(names.every((n) => /^[0-9]+$/.test(n)), `only snapshot dirs: ${names.join(' ')}`);
  });

  test('update replaces labels, or only the named ones with field paths', async () => {
    await fx.snapshotter.update({ key: 'base', labels: { a: '2', b: '3' } });
    assert.deepEqual((await fx.snapshotter.stat('base')).labels, { a: '2', b: '3' });
    const info = await fx.snapshotter.update({ key: 'base', labels: { c: '4' } }, ['labels.c', 'labels.a']);
    assert.deepEqual(info.labels, { b: '3', c: '4' });
    assert.deepEqual((await fx.snapshotter.stat('base')).labels, { b: '3', c: '4' });
    await assert.rejects(fx.snapshotter.update({ key: 'base', labels: {} }, ['parent']), (e) => code(e) === 'ERR_SNAPSHOT_FIELD');
  });

  test('remove deletes the record and the dir; walk lists what is left', async () => {
    const mounts = await fx.snapshotter.prepare('doomed');
    const dir = dirname(upperOf(mounts));
    await fx.snapshotter.remove('doomed');
    await assert.rejects(stat(dir), { code: 'ENOENT' });
    await assert.rejects(fx.snapshotter.remove('doomed'), (e) => isBerthError(e) && e.kind === 'not-found');
    const keys: string[] = [];
    for await (const info of fx.snapshotter.walk()) keys.push(info.key);
    assert.deepEqual(keys.sort(), ['active-parent', 'base', 'child-committed', 'view-1', 'view-2', 'view-empty']);
  });

  test('usage counts blocks and distinct inodes; fsInfo sums all snapshots', async () => {
    const mounts = await fx.snapshotter.prepare('usage');
    const upper = upperOf(mounts);
    await writeFile(join(upper, 'big'), Buffer.alloc(256 * 1024, 1));
    await link(join(upper, 'big'), join(upper, 'big-link'));
    await mkdir(join(upper, 'd'));
    const active = await fx.snapshotter.usage('usage');
    assert.equal(active.inodes, 3, 'root dir, the file (hardlinked, once) and d');
    assert.ok(active.size >= 256 * 1024 && active.size < 256 * 1024 + 64 * 1024, `size ${active.size}`);

    const before = await fx.snapshotter.fsInfo();
    await fx.snapshotter.commit('usage-committed', 'usage');
    assert.deepEqual(await fx.snapshotter.usage('usage-committed'), active, 'committed usage is stored at commit');
    assert.equal(before.mountpoint, fx.root);
    assert.deepEqual(await fx.snapshotter.fsInfo(), before);

    let sum = 0;
    for await (const info of fx.snapshotter.walk()) sum += (await fx.snapshotter.usage(info.key)).size;
    assert.equal(before.usedBytes, sum);
    assert.ok(before.inodesUsed >= 3);
  });

  test('cleanup removes dirs without a record, at init too', async () => {
    const snapshots = join(fx.root, 'snapshots');
    await mkdir(join(snapshots, '9999', 'fs'), { recursive: true });
    await mkdir(join(snapshots, 'new-stale', 'fs'), { recursive: true });
    await fx.snapshotter.cleanup();
    const names = await readdir(snapshots);
    assert.ok(!names.includes('9999') && !names.includes('new-stale'));
    const n = names.length;

    await mkdir(join(snapshots, '8888', 'fs'), { recursive: true });
    const reopened = new OverlaySnapshotter({ root: fx.root, metadata: fx.db, log });
    await reopened.init();
    assert.equal((await readdir(snapshots)).length, n);
    assert.equal((await reopened.stat('base')).kind, 'committed', 'records survive');
  });
});

describe('deep chains', () => {
  const LAYERS = 70;
  let fx: Fixture;
  let target: string | undefined;

  before(async () => {
    fx = await open(await mkdtemp(join(tmpdir(), 'berth-snap-deep-')));
  });

  after(async () => {
    if (target !== undefined) await unmountAll(target, { detach: true });
    fx.db.db.close();
    await rm(fx.dir, { recursive: true, force: true });
  });

  test(`${LAYERS} layers mount, and files of the lowest layer read through`, async () => {
    let parent: string | undefined;
    for (let i = 0; i < LAYERS; i++) {
      const mounts = await fx.snapshotter.prepare(`active-${i}`, parent);
      await writeFile(join(upperOf(mounts), `layer-${i}`), String(i));
      await fx.snapshotter.commit(`sha256:${'0'.repeat(56)}${String(i).padStart(8, '0')}`, `active-${i}`);
      parent = `sha256:${'0'.repeat(56)}${String(i).padStart(8, '0')}`;
    }
    const mounts = await fx.snapshotter.prepare('top', parent);
    const m = mounts[0]!;
    const lower = m.options.find((o) => o.startsWith('lowerdir='))!;
    assert.equal(lower.split(':').length, LAYERS);
    assert.ok(mountData(m).length < MAX_MOUNT_DATA);
    // What absolute lower dirs would have needed: more than a page for a long root.
    const absolute = lower.split(':').map((p) => join(m.cwd!, p)).join(':');
    assert.ok(absolute.length > lower.length * 2);

    target = join(fx.dir, 'merged');
    await mkdir(target);
    await mount(mounts, target);
    assert.equal(await readFile(join(target, 'layer-0'), 'utf8'), '0');
    assert.equal(await readFile(join(target, `layer-${LAYERS - 1}`), 'utf8'), String(LAYERS - 1));
    assert.equal((await readdir(target)).length, LAYERS);
    await unmount(target);
    target = undefined;
  });

  test('mount refuses option strings longer than a page', async () => {
    const m: Mount = { type: 'overlay', source: 'overlay', options: [`lowerdir=${'a/'.repeat(2100)}`] };
    assert.throws(() => mountData(m), (e) => code(e) === 'ERR_MOUNT_OPTIONS_TOO_LONG');
    await assert.rejects(mount([m], fx.dir), (e) => code(e) === 'ERR_MOUNT_OPTIONS_TOO_LONG');
  });
});

describe('plugin init', () => {
  let dir: string;
  let outer: string | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-snap-init-'));
  });

  after(async () => {
    if (outer !== undefined) await unmountAll(outer, { detach: true });
    await rm(dir, { recursive: true, force: true });
  });

  function context(rootDir: string, db: MetadataDB): InitContext<Record<string, never>> {
    const partial = {
      type: 'snapshotter',
      id: 'overlayfs',
      rootDir,
      config: {},
      log,
      meta: () => undefined,
      get: <T>(): T => db as unknown as T,
    };
    return partial as unknown as InitContext<Record<string, never>>;
  }

  test('init works on this filesystem and creates the snapshots dir', async () => {
    const rootDir = join(dir, 'ok');
    await mkdir(rootDir);
    const db = new MetadataDB(join(dir, 'ok.db'), log, { synchronous: 'NORMAL', busyTimeoutMs: 1000 });
    try {
      const s = await overlayfsSnapshotterRegistration.init(context(rootDir, db));
      await s.prepare('k');
      assert.deepEqual(await readdir(rootDir), ['snapshots'], 'the overlay check leaves nothing behind');
    } finally {
      db.db.close();
    }
  });

  test('init skips the plugin, naming the filesystem, where overlay cannot be an upper dir', async () => {
    // An overlayfs cannot hold the upper dir of another overlay.
    for (const sub of ['l', 'u', 'w', 'm']) await mkdir(join(dir, sub));
    outer = join(dir, 'm');
    await mount([{ type: 'overlay', source: 'overlay', options: [`lowerdir=${join(dir, 'l')}`, `upperdir=${join(dir, 'u')}`, `workdir=${join(dir, 'w')}`] }], outer);
    const rootDir = join(outer, 'root');
    await mkdir(rootDir);
    const db = new MetadataDB(join(dir, 'skip.db'), log, { synchronous: 'NORMAL', busyTimeoutMs: 1000 });
    try {
      await assert.rejects(
        Promise.resolve().then(() => overlayfsSnapshotterRegistration.init(context(rootDir, db))),
        (e) => e instanceof PluginSkipError && /filesystem overlay/.test(e.reason),
      );
      assert.deepEqual(await readdir(rootDir), [], 'the failed check cleans up');
    } finally {
      db.db.close();
    }
  });
});

describe('commits', () => {
  test('a new snapshot is committed without an fsync, and the configured synchronous mode is back after it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-snap-sync-'));
    const root = join(dir, 'root');
    await mkdir(root);
    const db = new MetadataDB(join(dir, 'meta.db'), log, { synchronous: 'FULL', busyTimeoutMs: 1000 });
    const seen: number[] = [];
    try {
      const s = new OverlaySnapshotter({ root, metadata: db, log });
      await s.init();
      const syncMode = (): number => Number((db.db.prepare('PRAGMA synchronous').get() as { synchronous: number }).synchronous);
      // The mode in force while the record is inserted, seen from inside its transaction.
      db.db.function('berth_sync_mode', () => {
        const m = syncMode();
        seen.push(m);
        return m;
      });
      db.db.exec(`CREATE TEMP TRIGGER seen_mode AFTER INSERT ON snapshots BEGIN SELECT berth_sync_mode(); END`);
      await s.prepare('one');
      assert.deepEqual(seen, [1], 'NORMAL (1) while the record is committed');
      assert.equal(syncMode(), 2, 'FULL (2) again afterwards');
      assert.equal((await s.stat('one')).kind, 'active');
      await s.remove('one');
    } finally {
      db.db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('kill -9', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-snap-crash-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('a killed snapshotter leaves records and dirs that agree after init', async (t) => {
    const root = join(dir, 'root');
    await mkdir(root);
    const dbPath = join(dir, 'meta.db');
    let strayDirs = 0;
    for (let round = 0; round < 8; round++) {
      await runAndKill('snapshotter-crash-child.js', [root, dbPath], 'ready', Math.floor(Math.random() * 300));
      const db = new MetadataDB(dbPath, log, { synchronous: 'NORMAL', busyTimeoutMs: 1000 });
      try {
        const ids = new Set((db.db.prepare('SELECT id FROM snapshots').all() as { id: number }[]).map((r) => String(r.id)));
        const before = await readdir(join(root, 'snapshots'));
        strayDirs += before.filter((n) => !ids.has(n)).length;
        // Every record has its complete dir, before any cleanup.
        for (const id of ids) {
          const kind = (db.db.prepare('SELECT kind FROM snapshots WHERE id = ?').get(Number(id)) as { kind: string }).kind;
          await stat(join(root, 'snapshots', id, 'fs'));
          if (kind === 'active') await stat(join(root, 'snapshots', id, 'work'));
        }
        const s = new OverlaySnapshotter({ root, metadata: db, log });
        await s.init();
        assert.deepEqual((await readdir(join(root, 'snapshots'))).sort(), [...ids].sort(), 'init removed exactly the dirs without a record');
        // Every parent a record names is there and committed.
        for await (const info of s.walk()) {
          if (info.parent !== undefined) assert.equal((await s.stat(info.parent)).kind, 'committed');
        }
      } finally {
        db.db.close();
      }
    }
    // Not asserted (timing), but shown: how often a kill left a dir without a record.
    t.diagnostic(`stray dirs seen: ${strayDirs}`);
  });
});
