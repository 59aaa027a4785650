// Sanity of the registry fixture against a real Debian docker-registry on loopback: pushes land as the
// distribution API reports them (checked with Node's fetch and curl, not only our own client), TLS and
// htpasswd auth behave, skopeo + umoci pull back exactly the tree expectedTree predicts, and registries
// die with the test process.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { busyboxImage, diffTrees, expectedTree, multiLayerImage, multiPlatformIndex, treeOf } from '../fixtures/images.js';
import { MediaTypes, pushBlob, pushImage, sha256 } from '../fixtures/oci-image.js';
import { blobExists, getManifest, registryRequest } from '../fixtures/registry-client.js';
import { startRegistry, type RegistryHandle } from '../fixtures/registry.js';

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'berth-fixtures-registry-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** True while the process exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !alive(pid);
}

describe('plain registry', () => {
  let reg: RegistryHandle;
  before(async () => {
    reg = await startRegistry();
  });
  after(async () => {
    await reg.stop();
  });

  test('listens on 127.0.0.1 with storage in its private dir', async () => {
    assert.match(reg.host, /^127\.0\.0\.1:\d+$/);
    assert.equal(reg.url, `http://${reg.host}`);
    assert.equal(reg.caFile, undefined);
    const cfg = await readFile(path.join(reg.dir, 'config.yml'), 'utf8');
    assert.match(cfg, new RegExp(`addr: "${reg.host}"`));
    assert.match(cfg, /level: warn/);
    assert.equal(existsSync(reg.logFile), true);
    const res = await fetch(`${reg.url}/v2/`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
  });

  test('busybox push: manifest, config and layer are served as pushed', async () => {
    const img = await busyboxImage();
    const pushed = await pushImage(reg, 'test/busybox', 'latest', img);
    assert.equal(pushed.digest, img.digest);
    assert.deepEqual(pushed.tagged, [`${reg.host}/test/busybox:latest`]);

    const res = await fetch(`${reg.url}/v2/test/busybox/manifests/latest`, { headers: { accept: MediaTypes.ociManifest } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), MediaTypes.ociManifest);
    assert.equal(res.headers.get('docker-content-digest'), img.digest);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), img.manifestBlob);

    for (const d of [img.configDescriptor, ...img.manifest.layers]) {
      const head = await fetch(`${reg.url}/v2/test/busybox/blobs/${d.digest}`, { method: 'HEAD' });
      assert.equal(head.status, 200, d.digest);
      assert.equal(Number(head.headers.get('content-length')), d.size);
    }
    const layer = await fetch(`${reg.url}/v2/test/busybox/blobs/${img.layers[0]!.digest}`);
    assert.equal(sha256(Buffer.from(await layer.arrayBuffer())), img.layers[0]!.digest);
    assert.equal(await pushBlob(reg, 'test/busybox', img.layers[0]!.digest, img.layers[0]!.blob), 'exists');
  });

  test('multi-layer push with two tags; zstd and docker variants', async () => {
    const img = await multiLayerImage();
    await pushImage(reg, 'test/multi', ['v1', 'latest'], img);
    const tags = (await (await fetch(`${reg.url}/v2/test/multi/tags/list`)).json()) as { tags: string[] };
    assert.deepEqual(tags.tags.sort(), ['latest', 'v1']);
    const m = await getManifest(reg, 'test/multi', 'v1');
    assert.equal(m.mediaType, MediaTypes.ociManifest);
    assert.equal(m.digest, img.digest);
    for (const l of img.layers) assert.equal(await blobExists(reg, 'test/multi', l.digest), true);
    assert.equal(await blobExists(reg, 'test/multi', sha256(Buffer.from('never pushed'))), false);

    const z = await multiLayerImage({ compression: 'zstd' });
    await pushImage(reg, 'test/multi', 'zstd', z);
    const zm = await getManifest(reg, 'test/multi', 'zstd');
    assert.deepEqual(
      (zm.json['layers'] as { mediaType: string }[]).map((l) => l.mediaType),
      [MediaTypes.ociLayerZstd, MediaTypes.ociLayerZstd, MediaTypes.ociLayerZstd, MediaTypes.ociLayerZstd],
    );

    const d = await busyboxImage({ format: 'docker' });
    await pushImage(reg, 'test/docker', 'latest', d);
    const dm = await getManifest(reg, 'test/docker', 'latest');
    assert.equal(dm.mediaType, MediaTypes.dockerManifest);
  });

  test('image index: index by tag, every platform manifest by digest', async () => {
    const idx = await multiPlatformIndex();
    await pushImage(reg, 'test/multi-arch', 'latest', idx);
    const got = await getManifest(reg, 'test/multi-arch', 'latest');
    assert.equal(got.mediaType, MediaTypes.ociIndex);
    assert.equal(got.digest, idx.digest);
    for (const img of idx.images) {
      const child = await getManifest(reg, 'test/multi-arch', img.digest);
      assert.equal(child.digest, img.digest);
      assert.equal(child.mediaType, MediaTypes.ociManifest);
    }
    const untagged = await busyboxImage({ format: 'docker' });
    const byDigest = await pushImage(reg, 'test/untagged', undefined, untagged);
    assert.deepEqual(byDigest.tagged, []);
    assert.equal((await getManifest(reg, 'test/untagged', untagged.digest)).digest, untagged.digest);
  });
});

describe('TLS registry with htpasswd', () => {
  const creds = { user: 'berth', password: 's3cret pass' };
  let reg: RegistryHandle;
  before(async () => {
    reg = await startRegistry({ tls: { htpasswd: creds } });
  });
  after(async () => {
    await reg.stop();
  });

  test('401 without or with wrong credentials, 200 with them', async () => {
    assert.equal(reg.url, `https://${reg.host}`);
    assert.ok(reg.caFile);
    assert.deepEqual(reg.auth, creds);
    const anon = await registryRequest(reg, 'GET', '/v2/', { auth: false });
    assert.equal(anon.status, 401);
    assert.match(String(anon.headers['www-authenticate']), /^Basic realm="berth-test"/);
    const wrong = await registryRequest(reg, 'GET', '/v2/', { credentials: { user: creds.user, password: 'nope' } });
    assert.equal(wrong.status, 401);
    assert.equal((await registryRequest(reg, 'GET', '/v2/')).status, 200);
  });

  test('the certificate verifies only with the CA (curl, for 127.0.0.1 and localhost)', async () => {
    await assert.rejects(fetch(`${reg.url}/v2/`));
    const code = (url: string): string =>
      execFileSync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', reg.caFile!, '-u', `${creds.user}:${creds.password}`, url], {
        encoding: 'utf8',
      });
    assert.equal(code(`${reg.url}/v2/`), '200');
    assert.equal(code(`https://localhost:${reg.host.split(':')[1]}/v2/`), '200');
  });

  test('push with credentials; skopeo + umoci pull back exactly expectedTree', async () => {
    const img = await multiLayerImage();
    await assert.rejects(pushImage({ ...reg, auth: undefined }, 'test/multi', 'v1', img), /HTTP 401/);
    await pushImage(reg, 'test/multi', 'v1', img);
    assert.equal((await getManifest(reg, 'test/multi', 'v1')).digest, img.digest);

    const certDir = path.join(tmp, 'certs');
    await mkdir(certDir);
    await copyFile(reg.caFile!, path.join(certDir, 'ca.crt'));
    const layout = path.join(tmp, 'layout');
    const bundle = path.join(tmp, 'bundle');
    execFileSync('skopeo', ['copy', '-q', '--src-cert-dir', certDir, '--src-creds', `${creds.user}:${creds.password}`,
      `docker://${reg.host}/test/multi:v1`, `oci:${layout}:v1`]);
    execFileSync('umoci', ['unpack', '--image', `${layout}:v1`, bundle], { stdio: 'ignore' });
    assert.deepEqual(diffTrees(expectedTree(img), await treeOf(path.join(bundle, 'rootfs'))), []);
  });
});

describe('registry lifecycle', () => {
  test('TLS without auth; stop() kills the registry and removes its dir, twice is fine', async () => {
    const reg = await startRegistry({ tls: {} });
    assert.equal(reg.auth, undefined);
    assert.equal((await registryRequest(reg, 'GET', '/v2/')).status, 200);
    assert.equal(alive(reg.pid), true);
    await reg.stop();
    assert.equal(await waitGone(reg.pid, 2000), true);
    assert.equal(existsSync(reg.dir), false);
    await reg.stop();
  });

  const registryModule = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'registry.js');
  for (const sig of ['SIGKILL', 'SIGTERM'] as const) {
    test(`the registry dies when the test process gets ${sig}`, async () => {
      const script = path.join(tmp, `owner-${sig}.mjs`);
      await writeFile(
        script,
        `import { startRegistry } from ${JSON.stringify(registryModule)};\n` +
          `const r = await startRegistry();\n` +
          `console.log(JSON.stringify({ pid: r.pid, dir: r.dir }));\n` +
          `setInterval(() => {}, 1000);\n`,
      );
      const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let info: { pid: number; dir: string } | undefined;
      try {
        info = await new Promise<{ pid: number; dir: string }>((resolve, reject) => {
          let out = '';
          child.stdout.on('data', (c: Buffer) => {
            out += c.toString();
            if (out.includes('\n')) resolve(JSON.parse(out.slice(0, out.indexOf('\n'))) as { pid: number; dir: string });
          });
          child.once('exit', (code) => reject(new Error(`owner exited early (${code})`)));
        });
        assert.equal(alive(info.pid), true);
        child.kill(sig);
        assert.equal(await waitGone(info.pid, 5000), true, `registry ${info.pid} outlived its owner`);
        if (sig === 'SIGTERM') assert.equal(existsSync(info.dir), false, 'SIGTERM cleanup removes the dir');
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        if (info) {
          if (alive(info.pid)) process.kill(info.pid, 'SIGKILL');
          await rm(info.dir, { recursive: true, force: true });
        }
      }
    });
  }
});
