import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isBerthError, type BerthError } from '../../src/core/errors.js';
import { chainIds } from '../../src/core/gc/index.js';
import type { ImageEvent } from '../../src/core/images/index.js';
import {
  busyboxImage,
  deepImage,
  diffTrees,
  expectedTree,
  hostPlatform,
  MULTI_LAYER,
  multiLayerImage,
  multiPlatformIndex,
  pushImage,
  startRegistry,
  type Image,
  type ImageIndex,
  type RegistryHandle,
} from '../fixtures/index.js';
import { blobDigests, ingests, openStack, snapshotKeys, snapshotTree, startCountingProxy, type CountingProxy, type Stack } from './images-harness.js';

function hasCode(kind: BerthError['kind'], code: string, message?: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(isBerthError(err), `not a BerthError: ${String(err)}`);
    assert.equal(err.kind, kind, `${err.kind} ${err.code}: ${err.message}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  };
}

function imageBlobs(img: Image): string[] {
  return [img.digest, img.configDigest, ...img.layers.map((l) => l.digest)];
}

describe('images.store: pulling from a registry', () => {
  let registry: RegistryHandle;
  let proxy: CountingProxy;
  let stack: Stack;
  let busybox: Image;
  let multi: Image;
  let deep: Image;
  let index: ImageIndex;
  const repo = (name: string): string => `${proxy.host}/test/${name}`;

  before(async () => {
    registry = await startRegistry();
    proxy = await startCountingProxy(registry.host);
    [busybox, multi, deep, index] = await Promise.all([busyboxImage(), multiLayerImage(), deepImage(64), multiPlatformIndex()]);
    await pushImage(registry, 'test/busybox', ['latest', 'v1', 'v2'], busybox);
    await pushImage(registry, 'test/multi', 'latest', multi);
    await pushImage(registry, 'test/deep', 'latest', deep);
    await pushImage(registry, 'test/multiarch', 'latest', index);
    stack = await openStack();
  });
  after(async () => {
    await stack?.dispose();
    await proxy?.stop();
    await registry?.stop();
  });

  test('busybox: the record the CRI reports, and its top snapshot holds the image', async () => {
    const events: ImageEvent[] = [];
    const unsubscribe = stack.images.onChange((e) => events.push(e));
    const ref = `${repo('busybox')}:latest`;
    const rec = await stack.images.pull(ref);
    unsubscribe();
    assert.equal(rec.id, busybox.configDigest);
    assert.deepEqual(rec.repoTags, [ref]);
    assert.deepEqual(rec.repoDigests, [`${repo('busybox')}@${busybox.digest}`]);
    assert.equal(rec.size, busybox.configDescriptor.size + busybox.layers.reduce((s, l) => s + l.size, 0));
    assert.deepEqual(rec.diffIds, busybox.layers.map((l) => l.diffId));
    assert.equal(rec.chainId, busybox.layers[0]!.diffId);
    assert.deepEqual(rec.config.cmd, ['sh']);
    assert.deepEqual(rec.config.entrypoint, []);
    assert.deepEqual(rec.config.env, busybox.config.config.Env);
    assert.equal(rec.config.user, undefined);
    assert.deepEqual(rec.platform, { os: 'linux', architecture: hostPlatform().architecture });
    assert.equal(rec.pinned, false);
    assert.deepEqual(rec.rawConfig, busybox.config);
    assert.deepEqual(
      events.sort((a, b) => a.name.localeCompare(b.name)),
      [
        { type: 'create', name: `${repo('busybox')}:latest` },
        { type: 'create', name: `${repo('busybox')}@${busybox.digest}` },
      ].sort((a, b) => a.name.localeCompare(b.name)),
    );
    assert.deepEqual(diffTrees(expectedTree(busybox), await snapshotTree(stack, rec.chainId)), []);
    for (const digest of imageBlobs(busybox)) assert.ok((await blobDigests(stack)).has(digest), `blob ${digest} stored`);
  });

  test('get() finds an image by id, bare id, id prefix, normalised reference and name@digest', () => {
    const hex = busybox.configDigest.slice('sha256:'.length);
    for (const q of [
      busybox.configDigest,
      hex,
      hex.slice(0, 12),
      `sha256:${hex.slice(0, 12)}`,
      `${repo('busybox')}:latest`,
      repo('busybox'),
      `${repo('busybox')}@${busybox.digest}`,
    ]) {
      assert.equal(stack.images.get(q)?.id, busybox.configDigest, `lookup by ${q}`);
    }
    for (const q of ['', `${repo('busybox')}:nope`, 'busybox', `sha256:${'0'.repeat(64)}`, 'not a reference!']) {
      assert.equal(stack.images.get(q), undefined, `lookup by ${JSON.stringify(q)}`);
    }
    assert.deepEqual(stack.images.list().map((i) => i.id), [busybox.configDigest]);
  });

  test('multi-layer image: whiteouts, opaque dirs, hardlinks, xattrs and owners land in the top snapshot', async () => {
    const rec = await stack.images.pull(`${repo('multi')}:latest`);
    assert.equal(rec.id, multi.configDigest);
    assert.deepEqual(rec.diffIds, multi.layers.map((l) => l.diffId));
    assert.equal(rec.chainId, chainIds(multi.layers.map((l) => l.diffId)).at(-1));
    assert.equal(rec.config.user, MULTI_LAYER.user.name);
    assert.equal(rec.config.workingDir, '/data');
    assert.equal(rec.config.stopSignal, 'SIGQUIT');
    assert.deepEqual(rec.config.labels, { 'org.berth.fixture': 'multi-layer' });
    const tree = await snapshotTree(stack, rec.chainId);
    assert.deepEqual(diffTrees(expectedTree(multi), tree), []);
    assert.equal(tree.has(MULTI_LAYER.removedFile), false);
    // Each layer is its own committed snapshot, named by its chain ID.
    const keys = await snapshotKeys(stack);
    for (const id of chainIds(rec.diffIds)) assert.equal(keys.get(id), 'committed', id);
    assert.deepEqual(
      stack.images.list().map((i) => i.id),
      [busybox.configDigest, multi.configDigest].sort(),
    );
  });

  test('a 64-layer image unpacks to a mountable chain', async () => {
    const rec = await stack.images.pull(`${repo('deep')}:latest`);
    assert.equal(rec.diffIds.length, 64);
    const tree = await snapshotTree(stack, rec.chainId);
    assert.deepEqual(diffTrees(expectedTree(deep), tree), []);
  });

  test('a multi-platform index: the host platform is pulled, the index digest is the repo digest', async () => {
    const host = index.images[0]!;
    const rec = await stack.images.pull(`${repo('multiarch')}:latest`);
    assert.equal(rec.id, host.configDigest);
    assert.deepEqual(rec.repoDigests, [`${repo('multiarch')}@${index.digest}`]);
    assert.deepEqual(rec.platform, { os: 'linux', architecture: hostPlatform().architecture });
    const tree = await snapshotTree(stack, rec.chainId);
    assert.deepEqual(diffTrees(expectedTree(host), tree), []);
    const blobs = await blobDigests(stack);
    assert.ok(blobs.has(index.digest), 'the index is stored');
    for (const other of index.images.slice(1)) assert.equal(blobs.has(other.digest), false, `manifest for ${other.platform.architecture} not fetched`);
  });

  test('an image the registry does not have is not-found with its answer; bad references are invalid-argument', async () => {
    await assert.rejects(stack.images.pull(`${repo('nothere')}:latest`), hasCode('not-found', 'ERR_IMAGE_NOT_FOUND', /manifest unknown|MANIFEST_UNKNOWN|repository name not known/i));
    await assert.rejects(stack.images.pull('UPPER/Case:bad tag'), hasCode('invalid-argument', 'ERR_INVALID_REFERENCE'));
    await assert.rejects(stack.images.pull(''), hasCode('invalid-argument', 'ERR_INVALID_REFERENCE'));
    assert.deepEqual(stack.metadata.leases.list(), [], 'failed pulls release their leases');
  });

  test('an image for another platform only is refused', async () => {
    const arm = index.images.find((i) => i.platform.architecture !== hostPlatform().architecture)!;
    await pushImage(registry, 'test/foreign', 'latest', arm);
    await assert.rejects(stack.images.pull(`${repo('foreign')}:latest`), hasCode('not-found', 'ERR_NO_MATCHING_PLATFORM'));
    // The platform setting chooses what is pulled.
    const other = await openStack({ images: { platform: `${arm.platform.os}/${arm.platform.architecture}${arm.platform.variant ? `/${arm.platform.variant}` : ''}` } });
    try {
      const rec = await other.images.pull(`${repo('multiarch')}:latest`);
      assert.equal(rec.id, arm.configDigest);
      assert.equal(rec.platform.architecture, arm.platform.architecture);
    } finally {
      await other.dispose();
    }
  });

  test('two concurrent pulls download each blob once; a second pull only resolves', async () => {
    const fresh = await openStack();
    try {
      const ref = `${repo('multi')}:latest`;
      proxy.blobGets.clear();
      const [a, b] = await Promise.all([fresh.images.pull(ref), fresh.images.pull(ref)]);
      assert.deepEqual(a, b);
      for (const digest of [multi.configDigest, ...multi.layers.map((l) => l.digest)]) {
        assert.equal(proxy.blobGets.get(digest), 1, `blob ${digest} fetched once`);
      }
      assert.deepEqual(diffTrees(expectedTree(multi), await snapshotTree(fresh, a.chainId)), []);

      const snapshotsBefore = await snapshotKeys(fresh);
      const blobsBefore = await blobDigests(fresh);
      proxy.blobGets.clear();
      const seen = proxy.requests.length;
      const started = performance.now();
      const again = await fresh.images.pull(ref);
      const ms = performance.now() - started;
      assert.deepEqual(again, a);
      assert.equal(proxy.blobGets.size, 0, 'no blob fetched');
      const requests = proxy.requests.slice(seen);
      assert.ok(requests.every((r) => /^(HEAD|GET) \/v2\/test\/multi\/manifests\/latest$|^GET \/v2\/$/.test(r)), requests.join('\n'));
      assert.deepEqual(await snapshotKeys(fresh), snapshotsBefore);
      assert.deepEqual(await blobDigests(fresh), blobsBefore);
      assert.ok(ms < 1000, `second pull took ${ms} ms`);
    } finally {
      await fresh.dispose();
    }
  });

  test('a moved tag is re-pointed; the old image keeps its digest name', async () => {
    const fresh = await openStack();
    try {
      const ref = `${repo('moving')}:latest`;
      await pushImage(registry, 'test/moving', 'latest', busybox);
      const first = await fresh.images.pull(ref);
      await pushImage(registry, 'test/moving', 'latest', multi);
      const events: ImageEvent[] = [];
      fresh.images.onChange((e) => events.push(e));
      const second = await fresh.images.pull(ref);
      assert.equal(second.id, multi.configDigest);
      assert.deepEqual(second.repoTags, [ref]);
      const old = fresh.images.get(first.id);
      assert.deepEqual(old?.repoTags, []);
      assert.deepEqual(old?.repoDigests, [`${repo('moving')}@${busybox.digest}`]);
      assert.ok(events.some((e) => e.type === 'update' && e.name === ref), JSON.stringify(events));
    } finally {
      await fresh.dispose();
    }
  });

  test('a pull by digest records only name@digest', async () => {
    const fresh = await openStack();
    try {
      const rec = await fresh.images.pull(`${repo('busybox')}@${busybox.digest}`);
      assert.deepEqual(rec.repoTags, []);
      assert.deepEqual(rec.repoDigests, [`${repo('busybox')}@${busybox.digest}`]);
      assert.deepEqual(fresh.metadata.images.list().map((i) => i.name), [`${repo('busybox')}@${busybox.digest}`]);
    } finally {
      await fresh.dispose();
    }
  });

  test('a cancelled pull leaves no lease, ingest or extraction snapshot; a stalled one times out', async () => {
    const fresh = await openStack({ images: { pull_progress_timeout_seconds: 0.5 } });
    const gate = proxy.gate(multi.layers[1]!.digest, 100);
    try {
      const ctl = new AbortController();
      const pulling = fresh.images.pull(`${repo('multi')}:latest`, { signal: ctl.signal });
      await gate.reached;
      ctl.abort();
      await assert.rejects(pulling, hasCode('cancelled', 'ERR_PULL_CANCELLED'));
      assert.deepEqual(fresh.metadata.leases.list(), []);
      assert.deepEqual(await ingests(fresh), []);
      assert.deepEqual([...(await snapshotKeys(fresh)).keys()].filter((k) => k.startsWith('extract-')), []);
      assert.equal(fresh.images.list().length, 0);

      const started = performance.now();
      await assert.rejects(fresh.images.pull(`${repo('multi')}:latest`), hasCode('deadline-exceeded', 'ERR_PULL_PROGRESS_TIMEOUT'));
      assert.ok(performance.now() - started < 5000);
      assert.deepEqual(fresh.metadata.leases.list(), []);
      assert.deepEqual(await ingests(fresh), []);
    } finally {
      gate.release();
      await fresh.dispose();
    }
  });
});

describe('images.store: TLS registry with htpasswd', () => {
  let registry: RegistryHandle;
  let busybox: Image;
  let hostsDir: string;
  const stacks: Stack[] = [];

  before(async () => {
    registry = await startRegistry({ tls: { htpasswd: { user: 'berth', password: 's3cret' } } });
    busybox = await busyboxImage();
    await pushImage(registry, 'private/busybox', 'latest', busybox);
  });
  after(async () => {
    for (const s of stacks) await s.dispose();
    await registry?.stop();
  });

  async function stackWithCa(images: Record<string, unknown> = {}): Promise<Stack> {
    const s = await openStack({ images });
    stacks.push(s);
    return s;
  }

  test('hosts.toml gives the CA; credentials come from the request or from config', async () => {
    const probe = await stackWithCa();
    hostsDir = join(probe.dir, 'certs.d');
    await mkdir(join(hostsDir, registry.host), { recursive: true });
    const ref = `${registry.host}/private/busybox:latest`;

    // HTTPS without the CA: the certificate is not trusted.
    await writeFile(join(hostsDir, registry.host, 'hosts.toml'), `server = "https://${registry.host}"\n`);
    const untrusted = await stackWithCa({ registry_config_dir: hostsDir });
    await assert.rejects(untrusted.images.pull(ref, { auth: { username: 'berth', password: 's3cret' } }), hasCode('unavailable', 'ERR_REGISTRY_TLS'));

    await writeFile(join(hostsDir, registry.host, 'hosts.toml'), `server = "https://${registry.host}"\nca = ${JSON.stringify(registry.caFile)}\n`);

    const s = await stackWithCa({ registry_config_dir: hostsDir });
    await assert.rejects(s.images.pull(ref), hasCode('unauthenticated', 'ERR_REGISTRY_UNAUTHORIZED'));
    await assert.rejects(s.images.pull(ref, { auth: { username: 'berth', password: 'wrong' } }), hasCode('unauthenticated', 'ERR_REGISTRY_UNAUTHORIZED'));
    const rec = await s.images.pull(ref, { auth: { username: 'berth', password: 's3cret' } });
    assert.equal(rec.id, busybox.configDigest);
    assert.deepEqual(diffTrees(expectedTree(busybox), await snapshotTree(s, rec.chainId)), []);

    const configured = await stackWithCa({ registry_config_dir: hostsDir, auths: { [registry.host]: { auth: Buffer.from('berth:s3cret').toString('base64') } } });
    assert.equal((await configured.images.pull(ref)).id, busybox.configDigest);
  });
});
