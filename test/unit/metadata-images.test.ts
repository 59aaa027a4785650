import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, test } from 'node:test';
import { createLogger } from '../../src/core/log.js';
import { SqliteMetadata, type ImageInput } from '../../src/core/metadata/index.js';
import { closeTempMetadata, isBerth, openTempMetadata } from './metadata-helpers.js';

const log = createLogger('silent');
const INDEX = 'application/vnd.oci.image.index.v1+json';
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const d = (c: string): string => `sha256:${c.repeat(64)}`;

let dir: string;
let meta: SqliteMetadata;

beforeEach(async () => ({ dir, meta } = await openTempMetadata('berth-images-')));
afterEach(() => closeTempMetadata(dir, meta));

const busybox: ImageInput = {
  name: 'docker.io/library/busybox:latest',
  target: {
    mediaType: INDEX,
    digest: d('a'),
    size: 1234,
    annotations: { 'org.opencontainers.image.ref.name': 'latest' },
    platform: { architecture: 'amd64', os: 'linux', variant: 'v1', 'os.features': ['x'] },
  },
  labels: { 'io.berth/managed': 'true' },
};

test('create, get, update, upsert, delete', async () => {
  const created = meta.images.create(busybox);
  assert.equal(created.name, busybox.name);
  assert.deepEqual(created.target, busybox.target);
  assert.deepEqual(created.labels, busybox.labels);
  assert.ok(created.createdAt instanceof Date);
  assert.equal(created.createdAt.getTime(), created.updatedAt.getTime());
  assert.deepEqual(meta.images.get(busybox.name), created);

  await sleep(5);
  const updated = meta.images.update({ name: busybox.name, target: { mediaType: MANIFEST, digest: d('b'), size: 99 } });
  assert.deepEqual(updated.target, { mediaType: MANIFEST, digest: d('b'), size: 99 });
  assert.deepEqual(updated.labels, {});
  assert.equal(updated.createdAt.getTime(), created.createdAt.getTime());
  assert.ok(updated.updatedAt.getTime() > created.updatedAt.getTime());

  const upserted = meta.images.upsert({ ...busybox, labels: { a: 'b' } });
  assert.equal(upserted.createdAt.getTime(), created.createdAt.getTime());
  assert.deepEqual(upserted.labels, { a: 'b' });
  const fresh = meta.images.upsert({ name: 'sha256-id', target: { mediaType: MANIFEST, digest: d('c'), size: 1 } });
  assert.equal(fresh.name, 'sha256-id');

  meta.images.delete(busybox.name);
  assert.throws(() => meta.images.get(busybox.name), isBerth('not-found', 'ERR_IMAGE_NOT_FOUND'));
  assert.deepEqual(
    meta.images.list().map((i) => i.name),
    ['sha256-id'],
  );
});

test('create of an existing name is already-exists; missing names are not-found', () => {
  meta.images.create(busybox);
  assert.throws(() => meta.images.create({ ...busybox, labels: {} }), isBerth('already-exists', 'ERR_IMAGE_EXISTS'));
  assert.deepEqual(meta.images.get(busybox.name).labels, busybox.labels, 'the failed create changed nothing');
  assert.throws(() => meta.images.get('nope'), isBerth('not-found', 'ERR_IMAGE_NOT_FOUND'));
  assert.throws(() => meta.images.update({ ...busybox, name: 'nope' }), isBerth('not-found', 'ERR_IMAGE_NOT_FOUND'));
  assert.throws(() => meta.images.delete('nope'), isBerth('not-found', 'ERR_IMAGE_NOT_FOUND'));
  assert.equal(meta.images.list().length, 1);
});

test('list filters by target digest and labels', () => {
  meta.images.create({ name: 'a:1', target: { mediaType: MANIFEST, digest: d('1'), size: 1 }, labels: { k: 'v', x: 'y' } });
  meta.images.create({ name: 'a:2', target: { mediaType: MANIFEST, digest: d('1'), size: 1 }, labels: { k: 'other' } });
  meta.images.create({ name: 'b:1', target: { mediaType: MANIFEST, digest: d('2'), size: 1 }, labels: { k: 'v' } });
  const names = (f?: Parameters<typeof meta.images.list>[0]): string[] => meta.images.list(f).map((i) => i.name);
  assert.deepEqual(names(), ['a:1', 'a:2', 'b:1']);
  assert.deepEqual(names({ targetDigest: d('1') }), ['a:1', 'a:2']);
  assert.deepEqual(names({ labels: { k: 'v' } }), ['a:1', 'b:1']);
  assert.deepEqual(names({ targetDigest: d('1'), labels: { k: 'v' } }), ['a:1']);
  assert.deepEqual(names({ labels: { k: 'v', x: 'y' } }), ['a:1']);
  assert.deepEqual(names({ targetDigest: d('3') }), []);
});

test('bad input is invalid-argument and writes nothing', () => {
  const bad: [unknown, string][] = [
    [{ ...busybox, name: '' }, 'ERR_IMAGE_INVALID_NAME'],
    [{ ...busybox, target: { ...busybox.target, digest: 'sha256:../../x' } }, 'ERR_METADATA_INVALID_DESCRIPTOR'],
    [{ ...busybox, target: { ...busybox.target, size: -1 } }, 'ERR_METADATA_INVALID_DESCRIPTOR'],
    [{ ...busybox, target: { ...busybox.target, size: 1.5 } }, 'ERR_METADATA_INVALID_DESCRIPTOR'],
    [{ ...busybox, target: { ...busybox.target, mediaType: '' } }, 'ERR_METADATA_INVALID_DESCRIPTOR'],
    [{ ...busybox, target: { ...busybox.target, platform: { os: 'linux' } } }, 'ERR_METADATA_INVALID_DESCRIPTOR'],
    [{ ...busybox, target: { ...busybox.target, annotations: { a: 1 } } }, 'ERR_METADATA_INVALID_DESCRIPTOR'],
    [{ ...busybox, labels: { k: 5 } }, 'ERR_IMAGE_INVALID_LABELS'],
    [{ ...busybox, labels: { '': 'v' } }, 'ERR_IMAGE_INVALID_LABELS'],
  ];
  for (const [input, code] of bad) {
    assert.throws(() => meta.images.create(input as ImageInput), isBerth('invalid-argument', code), JSON.stringify(input));
  }
  assert.deepEqual(meta.images.list(), []);
});

test('writes grouped in a transaction are undone together', () => {
  assert.throws(() =>
    meta.transaction(() => {
      meta.images.create(busybox);
      meta.images.create({ ...busybox, name: 'second' });
      meta.images.create(busybox); // already exists: the whole group rolls back
    }),
  );
  assert.deepEqual(meta.images.list(), []);
});

test('records survive reopening', () => {
  const created = meta.images.create(busybox);
  meta.close();
  meta = new SqliteMetadata(join(dir, 'meta.db'), log);
  assert.deepEqual(meta.images.get(busybox.name), created);
});
