// The registry client against a real Debian docker-registry (distribution 2.8) over plain HTTP on
// loopback: resolve by tag and digest, platform choice from an OCI index and a Docker manifest list,
// blob bytes, 404s with the registry's answer, retries and resume behind a faulty forwarder, mirrors,
// and deadlines.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildImage, buildIndex, file, pushImage, sha256, type Image, type ImageIndex } from '../fixtures/oci-image.js';
import { pseudoRandomBytes } from '../fixtures/images.js';
import { startRegistry, type RegistryHandle } from '../fixtures/registry.js';
import {
  MediaType,
  RegistryHosts,
  parseIndex,
  platformMatcher,
} from '../../src/core/remotes/index.js';
import { berthError, readAll, registryClients, startFaultyProxy, startSilentServer, writeHostsToml } from './remotes-helpers.js';

let tmp: string;
let reg: RegistryHandle;
let single: Image;
let index: ImageIndex;
let dockerList: ImageIndex;
let big: Image;
const clients = registryClients();
const client = clients.client;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'berth-remotes-client-'));
  reg = await startRegistry();
  single = await buildImage({ layers: [[file('/hello', 'hello\n')]], platform: { os: 'linux', architecture: 'amd64' } });
  await pushImage(reg, 'test/single', 'v1', single);

  const amd64 = await buildImage({ layers: [[file('/platform', 'linux/amd64\n')]], platform: { os: 'linux', architecture: 'amd64' } });
  const arm64 = await buildImage({ layers: [[file('/platform', 'linux/arm64/v8\n')]], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
  // arm64 listed first: the choice must come from matching, not order.
  index = buildIndex([arm64, amd64]);
  await pushImage(reg, 'test/multi', 'latest', index);

  const damd64 = await buildImage({ format: 'docker', layers: [[file('/p', 'amd64')]], platform: { os: 'linux', architecture: 'amd64' } });
  const darm = await buildImage({ format: 'docker', layers: [[file('/p', 'arm')]], platform: { os: 'linux', architecture: 'arm', variant: 'v7' } });
  dockerList = buildIndex([darm, damd64], { format: 'docker' });
  await pushImage(reg, 'test/dockerlist', '1.0', dockerList);

  big = await buildImage({ layers: [[file('/big', pseudoRandomBytes('remotes-big', 3 << 20))]], compression: 'none' });
  await pushImage(reg, 'test/big', 'v1', big);
});

after(async () => {
  await clients.closeAll();
  await reg?.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe('plain HTTP registry on loopback', () => {
  test('resolve by tag: HEAD gives digest, size and media type; plain HTTP chosen for 127.0.0.1', async () => {
    const r = await client().resolve(`${reg.host}/test/single:v1`);
    assert.equal(r.name, `${reg.host}/test/single:v1`);
    assert.deepEqual(r.descriptor, { mediaType: MediaType.OciManifest, digest: single.digest, size: single.manifestBlob.length });
    assert.equal(r.endpoint.scheme, 'http');
    assert.equal(r.endpoint.host, reg.host);
    assert.equal(r.endpoint.isMirror, false);
  });

  test('resolve by digest, and fetchManifest returns the exact bytes', async () => {
    const repo = client().repository(`${reg.host}/test/single@${single.digest}`);
    const r = await repo.resolve();
    assert.equal(r.descriptor.digest, single.digest);
    assert.equal(r.descriptor.size, single.manifestBlob.length);
    const bytes = await repo.fetchManifest(r.descriptor);
    assert.ok(bytes.equals(single.manifestBlob));
  });

  test('resolve by tag+digest asks for the digest', async () => {
    const r = await client().resolve(`${reg.host}/test/single:ignored@${single.digest}`);
    assert.equal(r.descriptor.digest, single.digest);
  });

  test('unknown tag: not-found ERR_IMAGE_NOT_FOUND carrying the registry answer', async () => {
    await assert.rejects(
      client().resolve(`${reg.host}/test/single:nope`),
      berthError((e) => {
        assert.equal(e.kind, 'not-found');
        assert.equal(e.code, 'ERR_IMAGE_NOT_FOUND');
        assert.match(e.message, /404 Not Found/);
        assert.match(e.message, /MANIFEST_UNKNOWN/);
        assert.match(e.message, new RegExp(`${reg.host}/test/single:nope`));
      }),
    );
  });

  test('unknown repository and unknown digest are not-found too', async () => {
    await assert.rejects(client().resolve(`${reg.host}/test/absent`), berthError((e) => assert.equal(e.code, 'ERR_IMAGE_NOT_FOUND')));
    const missing = `sha256:${'0'.repeat(64)}`;
    await assert.rejects(client().resolve(`${reg.host}/test/single@${missing}`), berthError((e) => assert.equal(e.kind, 'not-found')));
  });

  test('OCI index: amd64 chosen for linux/amd64, arm64 for linux/arm64, none for s390x', async () => {
    const repo = client().repository(`${reg.host}/test/multi`);
    const r = await repo.resolve();
    assert.equal(r.descriptor.mediaType, MediaType.OciIndex);
    assert.equal(r.descriptor.digest, index.digest);

    const amd = await repo.platformManifest(r.descriptor, platformMatcher({ os: 'linux', architecture: 'amd64' }));
    const wantAmd = index.images.find((i) => i.platform.architecture === 'amd64');
    assert.equal(amd.descriptor.digest, wantAmd?.digest);
    assert.deepEqual(amd.descriptor.platform, { os: 'linux', architecture: 'amd64' });
    assert.ok(amd.bytes.equals(wantAmd?.manifestBlob ?? Buffer.alloc(0)));
    assert.equal(amd.manifest.layers.length, 1);
    assert.equal(amd.indexes.length, 1);
    assert.ok(amd.indexes[0]?.bytes.equals(index.indexBlob));

    const arm = await repo.platformManifest(r.descriptor, platformMatcher({ os: 'linux', architecture: 'aarch64' }));
    assert.equal(arm.descriptor.digest, index.images.find((i) => i.platform.architecture === 'arm64')?.digest);

    await assert.rejects(
      repo.platformManifest(r.descriptor, platformMatcher({ os: 'linux', architecture: 's390x' })),
      berthError((e) => {
        assert.equal(e.code, 'ERR_NO_MATCHING_PLATFORM');
        assert.match(e.message, /linux\/s390x/);
        assert.match(e.message, /linux\/arm64\/v8, linux\/amd64/);
      }),
    );
  });

  test('Docker manifest list: x86_64 normalises to amd64; arm/v7 host runs the arm entry', async () => {
    const repo = client().repository(`${reg.host}/test/dockerlist:1.0`);
    const r = await repo.resolve();
    assert.equal(r.descriptor.mediaType, MediaType.DockerManifestList);
    const list = parseIndex(await repo.fetchManifest(r.descriptor), 'list');
    assert.equal(list.manifests.length, 2);
    const amd = await repo.platformManifest(r.descriptor, platformMatcher({ os: 'linux', architecture: 'x86_64' }));
    assert.equal(amd.descriptor.mediaType, MediaType.DockerManifest);
    assert.equal(amd.descriptor.digest, dockerList.images.find((i) => i.platform.architecture === 'amd64')?.digest);
    const arm = await repo.platformManifest(r.descriptor, platformMatcher({ os: 'linux', architecture: 'armhf' }));
    assert.equal(arm.descriptor.digest, dockerList.images.find((i) => i.platform.architecture === 'arm')?.digest);
  });

  test('fetchBlob streams the exact bytes of config and layer', async () => {
    const repo = client().repository(`${reg.host}/test/single:v1`);
    const cfg = await readAll(await repo.fetchBlob(single.configDescriptor));
    assert.ok(cfg.equals(single.configBlob));
    const layer = single.layers[0];
    assert.ok(layer);
    const got = await readAll(await repo.fetchBlob({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layer.digest, size: layer.size }));
    assert.ok(got.equals(layer.blob));
  });

  test('a 3 MiB blob arrives whole', async () => {
    const layer = big.layers[0];
    assert.ok(layer);
    const got = await readAll(await client().repository(`${reg.host}/test/big:v1`).fetchBlob({ mediaType: 'x', digest: layer.digest, size: layer.size }));
    assert.equal(got.length, layer.size);
    assert.equal(sha256(got), layer.digest);
  });

  test('unknown blob: not-found ERR_BLOB_NOT_FOUND with BLOB_UNKNOWN', async () => {
    const digest = `sha256:${'1'.repeat(64)}`;
    await assert.rejects(
      client().repository(`${reg.host}/test/single:v1`).fetchBlob({ mediaType: 'x', digest, size: 10 }),
      berthError((e) => {
        assert.equal(e.kind, 'not-found');
        assert.equal(e.code, 'ERR_BLOB_NOT_FOUND');
        assert.match(e.message, /BLOB_UNKNOWN/);
      }),
    );
  });

  test('fetchManifest refuses a body longer than the descriptor says', async () => {
    // The right digest with a size one byte short: the registry sends more than promised.
    const wrong = { mediaType: MediaType.OciManifest, digest: single.digest, size: single.manifestBlob.length - 1 };
    await assert.rejects(
      client().repository(`${reg.host}/test/single:v1`).fetchManifest(wrong),
      berthError((e) => assert.equal(e.code, 'ERR_SIZE_MISMATCH')),
    );
  });
});

describe('transient failures behind a faulty forwarder', () => {
  test('blob GETs answered 503 are retried with backoff', async () => {
    const proxy = await startFaultyProxy(reg.url, { fail503Blobs: 2 });
    try {
      const hosts = new RegistryHosts({ configs: { [reg.host]: { mirrors: [], server: { url: proxy.url } } } });
      const got = await readAll(await client({ hosts }).repository(`${reg.host}/test/single:v1`).fetchBlob(single.configDescriptor));
      assert.ok(got.equals(single.configBlob));
      assert.equal(proxy.blobRanges.length, 3);
    } finally {
      await proxy.stop();
    }
  });

  test('503 beyond the attempts: unavailable naming the status', async () => {
    const proxy = await startFaultyProxy(reg.url, { fail503Blobs: 10 });
    try {
      const hosts = new RegistryHosts({ configs: { [reg.host]: { mirrors: [], server: { url: proxy.url } } } });
      await assert.rejects(
        client({ hosts, attempts: 2 }).repository(`${reg.host}/test/single:v1`).fetchBlob(single.configDescriptor),
        berthError((e) => {
          assert.equal(e.kind, 'unavailable');
          assert.match(e.message, /503 Service Unavailable: try again/);
        }),
      );
      assert.equal(proxy.blobRanges.length, 2);
    } finally {
      await proxy.stop();
    }
  });

  test('a connection cut mid-blob resumes with a Range request and the bytes come out whole', async () => {
    const layer = big.layers[0];
    assert.ok(layer);
    const proxy = await startFaultyProxy(reg.url, { cutBlobAfter: 1 << 20 });
    try {
      const hosts = new RegistryHosts({ configs: { [reg.host]: { mirrors: [], server: { url: proxy.url } } } });
      const got = await readAll(await client({ hosts }).repository(`${reg.host}/test/big:v1`).fetchBlob({ mediaType: 'x', digest: layer.digest, size: layer.size }));
      assert.equal(sha256(got), layer.digest);
      assert.equal(proxy.blobRanges[0], '');
      assert.match(proxy.blobRanges[1] ?? '', /^bytes=\d+-$/);
      assert.ok(Number(/=(\d+)-/.exec(proxy.blobRanges[1] ?? '')?.[1]) > 0);
    } finally {
      await proxy.stop();
    }
  });
});

describe('mirrors', () => {
  test('a mirror that 404s falls through to the upstream, which is recorded as the answering endpoint', async () => {
    const mirror = await startFaultyProxy(reg.url, { notFound: '/v2/' });
    const hostsDir = path.join(tmp, 'mirror-404');
    try {
      await writeHostsToml(hostsDir, reg.host, `server = "http://${reg.host}"\n\n[host."http://${mirror.host}"]\n  capabilities = ["pull", "resolve"]\n`);
      const c = client({ hosts: new RegistryHosts({ configPath: hostsDir }) });
      const repo = c.repository(`${reg.host}/test/single:v1`);
      const r = await repo.resolve();
      assert.equal(r.endpoint.host, reg.host);
      assert.equal(r.descriptor.digest, single.digest);
      const cfg = await readAll(await repo.fetchBlob(single.configDescriptor));
      assert.ok(cfg.equals(single.configBlob));
      // The mirror was asked first, with ?ns= naming the registry it stands in for.
      assert.ok(mirror.requests.length >= 2);
      assert.equal(decodeURIComponent(mirror.requests[0] ?? ''), `HEAD /v2/test/single/manifests/v1?ns=${reg.host}`);
      assert.ok(mirror.requests.some((q) => q.startsWith(`GET /v2/test/single/blobs/${single.configDigest}`)));
    } finally {
      await mirror.stop();
    }
  });

  test('a mirror that has the image answers, and the upstream is not asked', async () => {
    const mirror = await startFaultyProxy(reg.url);
    const dead = await startSilentServer();
    try {
      // The upstream is a server that never answers: if it were asked, the test would time out.
      const hosts = new RegistryHosts({
        configs: { 'registry.invalid': { mirrors: [{ url: mirror.url }], server: { url: dead.url } } },
      });
      const r = await client({ hosts, headersTimeoutMs: 2000 }).resolve(`registry.invalid/test/single:v1`);
      assert.equal(r.endpoint.host, mirror.host);
      assert.equal(r.endpoint.isMirror, true);
      assert.equal(r.descriptor.digest, single.digest);
      assert.match(mirror.requests[0] ?? '', /\?ns=registry\.invalid$/);
    } finally {
      await mirror.stop();
      await dead.stop();
    }
  });

  test('a pull-only mirror is not asked to resolve a tag, but serves digests and blobs', async () => {
    const mirror = await startFaultyProxy(reg.url);
    try {
      const hosts = new RegistryHosts({ configs: { [reg.host]: { mirrors: [{ url: mirror.url, capabilities: ['pull'] }], server: {} } } });
      const c = client({ hosts });
      const byTag = await c.resolve(`${reg.host}/test/single:v1`);
      assert.equal(byTag.endpoint.host, reg.host);
      assert.equal(mirror.requests.length, 0);
      const byDigest = c.repository(`${reg.host}/test/single@${single.digest}`);
      assert.equal((await byDigest.resolve()).endpoint.host, mirror.host);
      await readAll(await byDigest.fetchBlob(single.configDescriptor));
      assert.ok(mirror.requests.some((q) => q.startsWith(`GET /v2/test/single/blobs/${single.configDigest}`)));
      // Without any host able to resolve, a tag cannot be resolved at all.
      const none = new RegistryHosts({ configs: { [reg.host]: { mirrors: [], server: { capabilities: ['pull'] } } } });
      await assert.rejects(client({ hosts: none }).resolve(`${reg.host}/test/single:v1`), berthError((e) => assert.equal(e.code, 'ERR_NO_REGISTRY_ENDPOINT')));
    } finally {
      await mirror.stop();
    }
  });

  test('when every endpoint fails, the error names each of them', async () => {
    const mirror = await startFaultyProxy(reg.url, { notFound: '/v2/' });
    try {
      const hosts = new RegistryHosts({ configs: { [reg.host]: { mirrors: [{ url: mirror.url }], server: {} } } });
      await assert.rejects(
        client({ hosts }).resolve(`${reg.host}/test/single:missing`),
        berthError((e) => {
          assert.equal(e.code, 'ERR_IMAGE_NOT_FOUND');
          assert.match(e.message, /also tried http:\/\/127\.0\.0\.1:\d+ \(mirror\): .*mirror does not have it/);
        }),
      );
    } finally {
      await mirror.stop();
    }
  });
});

describe('deadlines and cancellation', () => {
  test('a registry that never answers: deadline-exceeded when the signal times out', async () => {
    const dead = await startSilentServer();
    try {
      const started = Date.now();
      await assert.rejects(
        client().resolve(`${dead.host}/test/x:1`, { signal: AbortSignal.timeout(300) }),
        berthError((e) => {
          assert.equal(e.kind, 'deadline-exceeded');
          assert.equal(e.code, 'ERR_DEADLINE_EXCEEDED');
        }),
      );
      assert.ok(Date.now() - started < 5000);
    } finally {
      await dead.stop();
    }
  });

  test('cancelling mid-blob ends the stream with cancelled', async () => {
    const layer = big.layers[0];
    assert.ok(layer);
    const ac = new AbortController();
    const stream = await client().repository(`${reg.host}/test/big:v1`).fetchBlob({ mediaType: 'x', digest: layer.digest, size: layer.size }, { signal: ac.signal });
    let seen = 0;
    await assert.rejects(
      (async () => {
        for await (const c of stream) {
          seen += (c as Buffer).length;
          if (seen > 0) ac.abort();
        }
      })(),
      berthError((e) => assert.equal(e.kind, 'cancelled')),
    );
    assert.ok(seen < layer.size);
  });

  test('closing a blob stream early drops a stalled connection at once', async () => {
    const layer = big.layers[0];
    assert.ok(layer);
    const proxy = await startFaultyProxy(reg.url, { stallBlobAfter: 100_000 });
    try {
      const hosts = new RegistryHosts({ configs: { [reg.host]: { mirrors: [], server: { url: proxy.url } } } });
      // Long body timeout: only closing the stream can end the stalled response in time.
      const stream = await client({ hosts, bodyTimeoutMs: 60_000 }).repository(`${reg.host}/test/big:v1`).fetchBlob({ mediaType: 'x', digest: layer.digest, size: layer.size });
      let seen = 0;
      for await (const c of stream) {
        seen += (c as Buffer).length;
        if (seen >= 100_000) break; // for-await's break destroys the stream
      }
      const deadline = Date.now() + 3000;
      while (proxy.abandoned === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(proxy.abandoned, 1);
      assert.equal(proxy.blobRanges.length, 1, 'no resume after the consumer closed');
    } finally {
      await proxy.stop();
    }
  });

  test('an already aborted signal fails before any request', async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(client().resolve(`${reg.host}/test/single:v1`, { signal: ac.signal }), berthError((e) => assert.equal(e.kind, 'cancelled')));
  });
});
