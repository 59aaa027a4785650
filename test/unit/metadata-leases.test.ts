import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import { createLogger } from '../../src/core/log.js';
import { SqliteMetadata, type LeaseResource } from '../../src/core/metadata/index.js';
import { closeTempMetadata, isBerth, openTempMetadata } from './metadata-helpers.js';

const log = createLogger('silent');

let dir: string;
let meta: SqliteMetadata;

beforeEach(async () => ({ dir, meta } = await openTempMetadata('berth-leases-')));
afterEach(() => closeTempMetadata(dir, meta));

const blobA: LeaseResource = { type: 'content', id: `sha256:${'a'.repeat(64)}` };
const blobB: LeaseResource = { type: 'content', id: `sha256:${'b'.repeat(64)}` };
const snap: LeaseResource = { type: 'snapshot', id: 'overlayfs/extract-1' };
const ingest: LeaseResource = { type: 'ingest', id: 'pull-1' };

test('create, get, list, delete and their error kinds', () => {
  const expiresAt = new Date(Date.now() + 3_600_000);
  const lease = meta.leases.create('pull-1', { labels: { purpose: 'pull' }, expiresAt });
  assert.equal(lease.id, 'pull-1');
  assert.deepEqual(lease.labels, { purpose: 'pull' });
  assert.equal(lease.expiresAt?.getTime(), expiresAt.getTime());
  const forever = meta.leases.create('forever');
  assert.equal(forever.expiresAt, undefined);
  assert.deepEqual(forever.labels, {});
  assert.deepEqual(meta.leases.get('pull-1'), lease);
  assert.deepEqual(
    meta.leases.list().map((l) => l.id),
    ['forever', 'pull-1'],
  );
  assert.throws(() => meta.leases.create('pull-1'), isBerth('already-exists', 'ERR_LEASE_EXISTS'));
  assert.throws(() => meta.leases.get('nope'), isBerth('not-found', 'ERR_LEASE_NOT_FOUND'));
  assert.throws(() => meta.leases.delete('nope'), isBerth('not-found', 'ERR_LEASE_NOT_FOUND'));
  assert.throws(() => meta.leases.create(''), isBerth('invalid-argument', 'ERR_LEASE_INVALID_ID'));
  assert.throws(() => meta.leases.create('x', { expiresAt: new Date(NaN) }), isBerth('invalid-argument', 'ERR_LEASE_INVALID_TIME'));
  meta.leases.delete('pull-1');
  assert.deepEqual(
    meta.leases.list().map((l) => l.id),
    ['forever'],
  );
});

test('resources: add (idempotent), list, remove', () => {
  meta.leases.create('l1');
  meta.leases.addResource('l1', blobA);
  meta.leases.addResource('l1', blobA);
  meta.leases.addResource('l1', snap);
  meta.leases.addResource('l1', ingest);
  assert.deepEqual(meta.leases.resources('l1'), [blobA, ingest, snap]);
  assert.equal(meta.leases.removeResource('l1', blobA), true);
  assert.equal(meta.leases.removeResource('l1', blobA), false);
  assert.deepEqual(meta.leases.resources('l1'), [ingest, snap]);
  assert.throws(() => meta.leases.addResource('nope', blobA), isBerth('not-found', 'ERR_LEASE_NOT_FOUND'));
  assert.throws(() => meta.leases.removeResource('nope', blobA), isBerth('not-found', 'ERR_LEASE_NOT_FOUND'));
  assert.throws(() => meta.leases.resources('nope'), isBerth('not-found', 'ERR_LEASE_NOT_FOUND'));
  assert.throws(
    () => meta.leases.addResource('l1', { type: 'container', id: 'x' } as unknown as LeaseResource),
    isBerth('invalid-argument', 'ERR_LEASE_INVALID_RESOURCE'),
  );
  assert.throws(() => meta.leases.addResource('l1', { type: 'content', id: '' }), isBerth('invalid-argument', 'ERR_LEASE_INVALID_RESOURCE'));
});

test('referenced() lists what live leases hold, once each; expired leases hold nothing', () => {
  const now = new Date('2030-01-01T00:00:00Z');
  meta.leases.create('live', { expiresAt: new Date(now.getTime() + 60_000) });
  meta.leases.create('forever');
  meta.leases.create('expired', { expiresAt: new Date(now.getTime() + 1000) });
  const before = new Date(now.getTime() - 1);
  meta.leases.addResource('live', blobA, before);
  meta.leases.addResource('forever', blobA, before);
  meta.leases.addResource('forever', snap, before);
  meta.leases.addResource('expired', blobB, before);
  assert.deepEqual(meta.leases.referenced(before), [blobA, blobB, snap]);

  const later = new Date(now.getTime() + 1000); // 'expired' expires exactly now
  assert.deepEqual(meta.leases.referenced(later), [blobA, snap]);
  assert.throws(() => meta.leases.addResource('expired', ingest, later), isBerth('failed-precondition', 'ERR_LEASE_EXPIRED'));

  // Deleting a lease releases what only it held.
  meta.leases.delete('forever');
  assert.deepEqual(meta.leases.referenced(later), [blobA]);
  meta.leases.delete('live');
  assert.deepEqual(meta.leases.referenced(later), []);
});

test('deleteExpired removes expired leases and their resource rows', () => {
  const now = new Date();
  meta.leases.create('old', { expiresAt: new Date(now.getTime() + 10) });
  meta.leases.create('young', { expiresAt: new Date(now.getTime() + 60_000) });
  meta.leases.create('forever');
  meta.leases.addResource('old', blobA, now);
  meta.leases.addResource('young', blobB, now);
  assert.deepEqual(meta.leases.deleteExpired(new Date(now.getTime() + 1000)), ['old']);
  assert.deepEqual(
    meta.leases.list().map((l) => l.id),
    ['forever', 'young'],
  );
  const rows = meta.db.prepare('SELECT lease_id FROM lease_resources').all();
  assert.deepEqual(
    rows.map((r) => r.lease_id),
    ['young'],
  );
  assert.deepEqual(meta.leases.deleteExpired(new Date(now.getTime() + 1000)), []);
});

test('a lease and its resources written in one transaction roll back together', () => {
  assert.throws(() =>
    meta.transaction(() => {
      meta.leases.create('tx');
      meta.leases.addResource('tx', blobA);
      throw new Error('pull failed');
    }),
  );
  assert.deepEqual(meta.leases.list(), []);
  assert.deepEqual(meta.leases.referenced(), []);
});
