// Platform normalisation and matching (after containerd's platforms package) and manifest choice from an
// index, plus the manifest document checks the client applies before fetching anything by them.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isBerthError } from '../../src/core/errors.js';
import {
  MediaType,
  detectManifestType,
  formatPlatform,
  normalizePlatform,
  parseIndex,
  parseManifest,
  parsePlatform,
  platformMatcher,
  selectManifests,
  type Descriptor,
  type ImageIndex,
} from '../../src/core/remotes/index.js';

test('normalisation of os/architecture/variant names', () => {
  const cases: [string, string, string | undefined, string][] = [
    ['linux', 'x86_64', undefined, 'linux/amd64/'],
    ['Linux', 'x86-64', 'v1', 'linux/amd64/'],
    ['linux', 'amd64', 'v3', 'linux/amd64/v3'],
    ['linux', 'aarch64', undefined, 'linux/arm64/v8'],
    ['linux', 'arm64', '8', 'linux/arm64/v8'],
    ['linux', 'armhf', undefined, 'linux/arm/v7'],
    ['linux', 'armel', undefined, 'linux/arm/v6'],
    ['linux', 'arm', undefined, 'linux/arm/v7'],
    ['linux', 'arm', '5', 'linux/arm/v5'],
    ['linux', 'i386', undefined, 'linux/386/'],
    ['macos', 'arm64', 'v8', 'darwin/arm64/v8'],
  ];
  for (const [os, architecture, variant, want] of cases) {
    const n = normalizePlatform(variant === undefined ? { os, architecture } : { os, architecture, variant });
    assert.equal(`${n.os}/${n.architecture}/${n.variant}`, want, `${os}/${architecture}/${variant}`);
  }
});

test('parse and format platform strings', () => {
  assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  assert.deepEqual(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64' });
  assert.equal(parsePlatform('linux').os, 'linux');
  assert.equal(parsePlatform('arm64').architecture, 'arm64');
  assert.equal(formatPlatform({ os: 'linux', architecture: 'arm', variant: 'v7' }), 'linux/arm/v7');
  for (const bad of ['', 'a/b/c/d', 'linux/am d64']) {
    assert.throws(() => parsePlatform(bad), (e: unknown) => isBerthError(e) && e.code === 'ERR_INVALID_PLATFORM', bad);
  }
});

test('a platform runs older variants of its architecture, preferring the closest', () => {
  const v3 = platformMatcher({ os: 'linux', architecture: 'amd64', variant: 'v3' });
  assert.ok(v3.match({ os: 'linux', architecture: 'amd64' }));
  assert.ok(v3.match({ os: 'linux', architecture: 'amd64', variant: 'v2' }));
  assert.ok(v3.match({ os: 'linux', architecture: '386' }));
  assert.ok(!v3.match({ os: 'linux', architecture: 'amd64', variant: 'v4' }));
  assert.ok(!v3.match({ os: 'windows', architecture: 'amd64' }));
  assert.ok(v3.rank({ os: 'linux', architecture: 'amd64', variant: 'v3' }) < v3.rank({ os: 'linux', architecture: 'amd64', variant: 'v2' }));
  assert.ok(v3.rank({ os: 'linux', architecture: 'amd64' }) < v3.rank({ os: 'linux', architecture: '386' }));

  const plain = platformMatcher({ os: 'linux', architecture: 'amd64' });
  assert.ok(!plain.match({ os: 'linux', architecture: 'amd64', variant: 'v2' }));

  const armv7 = platformMatcher({ os: 'linux', architecture: 'arm', variant: 'v7' });
  assert.ok(armv7.match({ os: 'linux', architecture: 'arm', variant: 'v6' }));
  assert.ok(armv7.match({ os: 'linux', architecture: 'armel' }));
  assert.ok(!armv7.match({ os: 'linux', architecture: 'arm', variant: 'v8' }));

  const arm64 = platformMatcher({ os: 'linux', architecture: 'arm64' });
  assert.ok(arm64.match({ os: 'linux', architecture: 'aarch64', variant: 'v8' }));
  assert.ok(!arm64.match({ os: 'linux', architecture: 'arm', variant: 'v7' }));
});

function desc(platform: Descriptor['platform'], n: number, mediaType: string = MediaType.OciManifest): Descriptor {
  const d: Descriptor = { mediaType, digest: `sha256:${String(n).repeat(64).slice(0, 64)}`, size: 100 + n };
  if (platform) d.platform = platform;
  return d;
}

test('selectManifests: best match first, platform-less last, other media types and attestations left out', () => {
  const index: ImageIndex = {
    schemaVersion: 2,
    manifests: [
      desc({ os: 'linux', architecture: 'arm64', variant: 'v8' }, 1),
      desc(undefined, 2),
      desc({ os: 'linux', architecture: 'amd64', variant: 'v2' }, 3),
      desc({ os: 'unknown', architecture: 'unknown' }, 4),
      desc({ os: 'linux', architecture: 'amd64' }, 5),
      desc({ os: 'linux', architecture: 'amd64' }, 6, 'application/vnd.example.other+json'),
      desc({ os: 'linux', architecture: 'amd64', variant: 'v3' }, 7, MediaType.OciIndex),
    ],
  };
  const chosen = selectManifests(index, platformMatcher({ os: 'linux', architecture: 'amd64', variant: 'v3' })).map((d) => d.size - 100);
  assert.deepEqual(chosen, [7, 3, 5, 2]);
  assert.deepEqual(selectManifests(index, platformMatcher({ os: 'linux', architecture: 's390x' })).map((d) => d.size - 100), [2]);
});

test('manifest type detection and document checks', () => {
  const manifest = { schemaVersion: 2, config: desc(undefined, 1, MediaType.OciConfig), layers: [desc(undefined, 2, 'application/vnd.oci.image.layer.v1.tar')] };
  const bytes = Buffer.from(JSON.stringify(manifest));
  assert.equal(detectManifestType('application/vnd.oci.image.manifest.v1+json; charset=utf-8', bytes, 'm'), MediaType.OciManifest);
  assert.equal(detectManifestType('application/json', bytes, 'm'), MediaType.OciManifest);
  assert.equal(detectManifestType(undefined, Buffer.from(JSON.stringify({ mediaType: MediaType.DockerManifestList, manifests: [] })), 'm'), MediaType.DockerManifestList);
  assert.equal(detectManifestType('', Buffer.from('{"schemaVersion":2,"manifests":[]}'), 'm'), MediaType.OciIndex);
  assert.throws(() => detectManifestType(MediaType.DockerSchema1Signed, bytes, 'm'), (e: unknown) => isBerthError(e) && e.code === 'ERR_UNSUPPORTED_MEDIA_TYPE' && /schema 1/.test(e.message));
  assert.throws(() => detectManifestType('text/plain', Buffer.from('{"schemaVersion":1,"fsLayers":[]}'), 'm'), (e: unknown) => isBerthError(e) && /schema 1/.test(e.message));
  assert.throws(() => detectManifestType('text/html', Buffer.from('<html>'), 'm'), (e: unknown) => isBerthError(e) && e.code === 'ERR_INVALID_MANIFEST');

  assert.equal(parseManifest(bytes, 'm').layers.length, 1);
  const bad: [unknown, RegExp][] = [
    [{ ...manifest, schemaVersion: 1 }, /schemaVersion/],
    [{ ...manifest, layers: undefined }, /no "layers"/],
    [{ ...manifest, config: { ...manifest.config, digest: 'sha256:xyz' } }, /config: invalid digest/],
    [{ ...manifest, layers: [{ ...manifest.layers[0], size: -1 }] }, /layers\[0\] has an invalid size/],
  ];
  for (const [doc, why] of bad) {
    assert.throws(() => parseManifest(Buffer.from(JSON.stringify(doc)), 'img'), (e: unknown) => isBerthError(e) && e.code === 'ERR_INVALID_MANIFEST' && why.test(e.message), String(why));
  }
  assert.throws(() => parseIndex(Buffer.from('{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:' + 'a'.repeat(64) + '","size":1,"platform":{"os":"linux"}}]}'), 'i'), /invalid platform/);
});
