import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { BerthError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/log.js';
import { MetadataDB, metadataConfigSchema, metadataSqliteRegistration, SqliteMetadata, type Migration } from '../../src/core/metadata/index.js';
import type { InitContext, PluginMeta } from '../../src/core/plugin/types.js';
import { isBerth } from './metadata-helpers.js';

const log = createLogger('silent');

let dir: string;
let meta: MetadataDB;
const others: DatabaseSync[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-metadata-'));
  meta = new MetadataDB(join(dir, 'meta.db'), log, { synchronous: 'FULL', busyTimeoutMs: 2000 });
});

afterEach(async () => {
  for (const db of others.splice(0)) if (db.isOpen) db.close();
  meta.close();
  await rm(dir, { recursive: true, force: true });
});

function pragma(db: DatabaseSync, name: string): unknown {
  const row = db.prepare(`PRAGMA ${name}`).get() as Record<string, unknown>;
  return Object.values(row)[0];
}

function count(table: string): number {
  return (meta.db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
}

describe('metadata database', () => {
  test('opens in WAL mode with foreign keys, the chosen synchronous level and a busy timeout', () => {
    assert.equal(pragma(meta.db, 'journal_mode'), 'wal');
    assert.equal(pragma(meta.db, 'synchronous'), 2); // FULL
    assert.equal(pragma(meta.db, 'foreign_keys'), 1);
    assert.equal(pragma(meta.db, 'busy_timeout'), 2000);
    meta.close();
    meta = new MetadataDB(join(dir, 'meta.db'), log, { synchronous: 'NORMAL', busyTimeoutMs: 10 });
    assert.equal(pragma(meta.db, 'synchronous'), 1); // NORMAL
    assert.equal(pragma(meta.db, 'busy_timeout'), 10);
  });

  test('migrations run once, in order, per namespace', () => {
    const order: string[] = [];
    const a: Migration[] = [
      'CREATE TABLE a1 (x INTEGER) STRICT; INSERT INTO a1 VALUES (1);',
      (db) => {
        order.push('a2');
        // Sees version 1's table: migrations run in order.
        db.exec('CREATE TABLE a2 AS SELECT x + 1 AS y FROM a1');
      },
    ];
    assert.equal(meta.migrate('a', a), 2);
    assert.equal(meta.migrate('a', a), 0);
    assert.deepEqual(order, ['a2']);
    assert.equal(meta.schemaVersion('a'), 2);
    assert.equal((meta.db.prepare('SELECT y FROM a2').get() as { y: number }).y, 2);

    // Another namespace counts its own versions.
    assert.equal(meta.schemaVersion('b'), 0);
    assert.equal(meta.migrate('b', ['CREATE TABLE b1 (x INTEGER) STRICT']), 1);
    assert.equal(meta.schemaVersion('b'), 1);

    // Appending a migration applies only the new one.
    a.push(() => order.push('a3'));
    assert.equal(meta.migrate('a', a), 1);
    assert.deepEqual(order, ['a2', 'a3']);
    const rows = meta.db.prepare('SELECT namespace, version FROM schema_migrations ORDER BY namespace, version').all();
    assert.deepEqual(
      rows.map((r) => `${String(r.namespace)}:${String(r.version)}`),
      ['a:1', 'a:2', 'a:3', 'b:1'],
    );

    // Survives reopening.
    meta.close();
    meta = new MetadataDB(join(dir, 'meta.db'), log, { synchronous: 'FULL', busyTimeoutMs: 2000 });
    assert.equal(meta.migrate('a', a), 0);
    assert.deepEqual(order, ['a2', 'a3']);
  });

  test('a failing migration is rolled back whole and not recorded', () => {
    const good = 'CREATE TABLE t1 (x INTEGER) STRICT';
    const bad = 'CREATE TABLE t2 (x INTEGER) STRICT; INSERT INTO t1 VALUES (1); INSERT INTO nowhere VALUES (1);';
    assert.throws(() => meta.migrate('t', [good, bad]), isBerth('internal', 'ERR_METADATA_MIGRATION'));
    assert.equal(meta.schemaVersion('t'), 1);
    assert.equal(meta.db.prepare("SELECT name FROM sqlite_master WHERE name = 't2'").get(), undefined);
    assert.equal(count('t1'), 0);
    assert.equal(meta.migrate('t', [good, 'CREATE TABLE t2 (x INTEGER) STRICT']), 1);
    assert.equal(meta.schemaVersion('t'), 2);
  });

  test('a schema newer than the code is refused', () => {
    meta.migrate('n', ['CREATE TABLE n1 (x INTEGER)', 'CREATE TABLE n2 (x INTEGER)']);
    assert.throws(() => meta.migrate('n', ['CREATE TABLE n1 (x INTEGER)']), isBerth('failed-precondition', 'ERR_METADATA_SCHEMA_TOO_NEW'));
    assert.throws(() => meta.migrate('', []), isBerth('invalid-argument', 'ERR_METADATA_MIGRATION_NAMESPACE'));
  });
});

describe('metadata transactions', () => {
  beforeEach(() => {
    meta.migrate('tx', ['CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL) STRICT']);
  });

  test('commits on return, rolls back on throw', () => {
    const put = meta.db.prepare('INSERT INTO kv (k, v) VALUES (?, ?)');
    assert.equal(
      meta.transaction(() => {
        put.run('a', 1);
        return 'done';
      }),
      'done',
    );
    assert.throws(
      () =>
        meta.transaction(() => {
          put.run('b', 2);
          throw new Error('boom');
        }),
      /boom/,
    );
    assert.deepEqual(
      meta.db.prepare('SELECT k FROM kv').all().map((r) => r.k),
      ['a'],
    );
    assert.equal(meta.db.isTransaction, false);
  });

  test('nested calls are savepoints: an inner failure undoes only the inner work', () => {
    const put = meta.db.prepare('INSERT INTO kv (k, v) VALUES (?, ?)');
    meta.transaction(() => {
      put.run('outer', 1);
      assert.throws(() =>
        meta.transaction(() => {
          put.run('inner', 2);
          throw new Error('inner fails');
        }),
      );
      meta.transaction(() => put.run('inner2', 3));
    });
    assert.deepEqual(
      meta.db.prepare('SELECT k FROM kv ORDER BY k').all().map((r) => r.k),
      ['inner2', 'outer'],
    );
    // An outer failure undoes the released inner savepoint as well.
    assert.throws(() =>
      meta.transaction(() => {
        meta.transaction(() => put.run('x', 1));
        throw new Error('outer fails');
      }),
    );
    assert.equal(count('kv'), 2);
  });

  test('an async body is refused and rolled back', () => {
    const put = meta.db.prepare('INSERT INTO kv (k, v) VALUES (?, ?)');
    assert.throws(
      () =>
        meta.transaction(async () => {
          put.run('async', 1);
        }),
      isBerth('internal', 'ERR_METADATA_ASYNC_TRANSACTION'),
    );
    assert.equal(count('kv'), 0);
    assert.equal(meta.db.isTransaction, false);
  });

  test('SQLite errors become BerthErrors; the caller’s own errors pass through', () => {
    const put = meta.db.prepare('INSERT INTO kv (k, v) VALUES (?, ?)');
    put.run('a', 1);
    assert.throws(() => meta.transaction(() => put.run('a', 2)), isBerth('internal', 'ERR_METADATA_SQLITE'));
    const mine = new BerthError('not-found', 'ERR_MINE', 'mine');
    assert.throws(
      () =>
        meta.transaction(() => {
          throw mine;
        }),
      (err) => err === mine,
    );
  });

  test('BEGIN IMMEDIATE holds the write lock for the whole transaction', () => {
    const other = new DatabaseSync(join(dir, 'meta.db'), { timeout: 0 });
    others.push(other);
    meta.transaction(() => {
      // No write yet in this transaction, but the lock is already ours.
      assert.throws(
        () => other.exec("INSERT INTO kv (k, v) VALUES ('other', 1)"),
        (err: unknown) => (err as { errcode?: number }).errcode === 5, // SQLITE_BUSY
      );
    });
    other.exec("INSERT INTO kv (k, v) VALUES ('other', 1)");
    assert.equal(count('kv'), 1);
  });

  test('a write blocked past the busy timeout is unavailable', () => {
    const other = new DatabaseSync(join(dir, 'meta.db'), { timeout: 0 });
    others.push(other);
    meta.close();
    meta = new MetadataDB(join(dir, 'meta.db'), log, { synchronous: 'FULL', busyTimeoutMs: 50 });
    other.exec('BEGIN IMMEDIATE');
    try {
      assert.throws(() => meta.transaction(() => 1), isBerth('unavailable', 'ERR_METADATA_BUSY'));
    } finally {
      other.exec('ROLLBACK');
    }
    assert.equal(
      meta.transaction(() => 2),
      2,
    );
  });
});

describe('metadata plugin', () => {
  test('registration opens <root>/meta.db with its tables and publishes the path', async () => {
    let published: PluginMeta = {};
    const ctx = {
      type: 'metadata',
      id: 'sqlite',
      rootDir: dir,
      log,
      config: metadataConfigSchema.parse({}),
      meta: (m: PluginMeta) => {
        published = { ...published, ...m };
      },
    } as unknown as InitContext<ReturnType<typeof metadataConfigSchema.parse>>;
    const plugin = (await metadataSqliteRegistration.init(ctx)) as SqliteMetadata;
    try {
      const path = join(dir, 'meta.db');
      assert.equal(published.exports?.path, path);
      assert.equal(plugin.path, path);
      assert.ok((await stat(path)).isFile());
      assert.equal(plugin.schemaVersion('images'), 1);
      assert.equal(plugin.schemaVersion('leases'), 1);
      assert.equal(pragma(plugin.db, 'synchronous'), 2);
    } finally {
      plugin.close();
    }
  });

  test('config defaults', () => {
    assert.deepEqual(metadataConfigSchema.parse({}), { synchronous: 'FULL', busy_timeout_ms: 5000 });
    assert.throws(() => metadataConfigSchema.parse({ synchronous: 'OFF' }));
  });
});
