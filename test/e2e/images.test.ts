import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { AuthConfig, type ImageFsInfoResponse, type ImageStatusResponse, type ListImagesResponse, type PullImageResponse } from '../../src/generated/api.js';
import { busyboxImage, largeImage, multiLayerImage, pushImage, startRegistry, type Image, type RegistryHandle } from '../fixtures/index.js';
import { call, startBerthd, waitFor, type Berthd } from './harness.js';

const pull = (d: Berthd, image: string, auth?: Partial<AuthConfig>) =>
  call<object, PullImageResponse>(d.images, 'pullImage', { image: { image, annotations: {}, userSpecifiedImage: '', runtimeHandler: '', imageRef: '' }, auth: auth && AuthConfig.fromPartial(auth) });
const status = (d: Berthd, image: string, verbose = false) =>
  call<object, ImageStatusResponse>(d.images, 'imageStatus', { image: { image, annotations: {}, userSpecifiedImage: '', runtimeHandler: '', imageRef: '' }, verbose });
const list = async (d: Berthd, image = '') =>
  (await call<object, ListImagesResponse>(d.images, 'listImages', image === '' ? {} : { filter: { image: { image, annotations: {}, userSpecifiedImage: '', runtimeHandler: '', imageRef: '' } } })).images;
const remove = (d: Berthd, image: string) => call(d.images, 'removeImage', { image: { image, annotations: {}, userSpecifiedImage: '', runtimeHandler: '', imageRef: '' } });

function grpcError(code: GrpcStatus, pattern: RegExp) {
  return (err: ServiceError) => {
    assert.equal(err.code, code, `${GrpcStatus[err.code]}: ${err.details}`);
    assert.match(err.details, pattern);
    return true;
  };
}

/** Every blob in the content store hashes to its own name: nothing partial is visible. */
async function assertBlobsWhole(d: Berthd): Promise<number> {
  const dir = join(d.root, 'content.local', 'blobs', 'sha256');
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    const hash = createHash('sha256');
    await pipeline(createReadStream(join(dir, name)), hash);
    assert.equal(hash.digest('hex'), name, `blob ${name} is not what its name says`);
  }
  return names.length;
}

describe('ImageService against a real registry', () => {
  let registry: RegistryHandle;
  let d: Berthd;
  let busybox: Image;
  let multi: Image;
  let repo: string;

  before(async () => {
    registry = await startRegistry();
    busybox = await busyboxImage();
    multi = await multiLayerImage();
    repo = `${registry.host}/e2e`;
    await pushImage(registry, 'e2e/busybox', ['latest', 'v1', 'v2'], busybox);
    await pushImage(registry, 'e2e/multi', 'latest', multi);
    d = await startBerthd();
  });
  after(async () => {
    await d?.dispose();
    await registry?.stop();
  });

  test('PullImage returns the config digest as the image id; ImageStatus finds it every way', async () => {
    const res = await pull(d, `${repo}/busybox:latest`);
    assert.equal(res.imageRef, busybox.configDigest);
    for (const ref of [`${repo}/busybox:latest`, `${repo}/busybox`, busybox.configDigest, busybox.configDigest.slice('sha256:'.length), `${repo}/busybox@${busybox.digest}`]) {
      const st = await status(d, ref);
      assert.equal(st.image?.id, busybox.configDigest, `lookup by ${ref}`);
    }
    const st = await status(d, `${repo}/busybox:latest`, true);
    assert.deepEqual(st.image?.repoTags, [`${repo}/busybox:latest`]);
    assert.deepEqual(st.image?.repoDigests, [`${repo}/busybox@${busybox.digest}`]);
    assert.ok((st.image?.size ?? 0n) > 0n);
    assert.equal(st.image?.uid, undefined);
    assert.equal(st.image?.username, '');
    assert.ok(JSON.parse(st.info['info'] ?? '{}').imageSpec, 'verbose info carries the image config');
  });

  test('the image user is reported as a name or a uid', async () => {
    await pull(d, `${repo}/multi:latest`);
    const st = await status(d, `${repo}/multi:latest`);
    assert.equal(st.image?.username, 'app');
    assert.equal(st.image?.uid, undefined);
  });

  test('an image that is not present has no status and is not an error', async () => {
    const st = await status(d, `${repo}/nothere:latest`);
    assert.equal(st.image, undefined);
  });

  test('ListImages lists all, or the one the filter names', async () => {
    const all = await list(d);
    assert.ok(all.some((i) => i.id === busybox.configDigest));
    assert.ok(all.some((i) => i.id === multi.configDigest));
    const one = await list(d, `${repo}/multi:latest`);
    assert.deepEqual(one.map((i) => i.id), [multi.configDigest]);
  });

  test('removing one tag keeps the others; removing by id removes every name; unknown succeeds', async () => {
    await pull(d, `${repo}/busybox:v1`);
    await pull(d, `${repo}/busybox:v2`);
    let st = await status(d, busybox.configDigest);
    assert.deepEqual(st.image?.repoTags, [`${repo}/busybox:latest`, `${repo}/busybox:v1`, `${repo}/busybox:v2`]);
    await remove(d, `${repo}/busybox:v1`);
    st = await status(d, busybox.configDigest);
    assert.deepEqual(st.image?.repoTags, [`${repo}/busybox:latest`, `${repo}/busybox:v2`]);
    await remove(d, busybox.configDigest);
    st = await status(d, busybox.configDigest);
    assert.equal(st.image, undefined);
    assert.ok(!(await list(d)).some((i) => i.id === busybox.configDigest));
    await remove(d, `${repo}/never-was:latest`);
    await remove(d, busybox.configDigest);
  });

  test('an image the registry does not have is NotFound with its answer; a bad reference is InvalidArgument', async () => {
    await assert.rejects(pull(d, `${repo}/missing:latest`), grpcError(GrpcStatus.NOT_FOUND, /missing/));
    await assert.rejects(pull(d, 'UPPER/Case:bad tag'), grpcError(GrpcStatus.INVALID_ARGUMENT, /UPPER/));
    await assert.rejects(pull(d, ''), grpcError(GrpcStatus.INVALID_ARGUMENT, /empty/));
  });

  test('ImageFsInfo reports usage under the snapshotter root', async () => {
    const res = await call<object, ImageFsInfoResponse>(d.images, 'imageFsInfo', {});
    const fs = res.imageFilesystems[0];
    assert.ok(fs);
    assert.ok(fs.timestamp > 0n);
    assert.ok(fs.fsId?.mountpoint.startsWith(d.root), fs.fsId?.mountpoint);
    assert.ok((fs.usedBytes?.value ?? 0n) > 0n);
    assert.ok((fs.inodesUsed?.value ?? 0n) > 0n);
  });
});

describe('pulls through TLS and htpasswd auth', () => {
  let registry: RegistryHandle;
  let d: Berthd;
  let busybox: Image;

  before(async () => {
    registry = await startRegistry({ tls: { htpasswd: { user: 'berth', password: 's3cret' } } });
    busybox = await busyboxImage();
    await pushImage(registry, 'private/busybox', 'latest', busybox);
    const dir = await mkdtemp(join(tmpdir(), 'berth-e2e-'));
    const certs = join(dir, 'certs.d', registry.host);
    await mkdir(certs, { recursive: true });
    await writeFile(join(certs, 'hosts.toml'), `server = "https://${registry.host}"\nca = "${registry.caFile}"\n`);
    d = await startBerthd({ dir, extraArgs: ['--registry-config-dir', join(dir, 'certs.d')] });
  });
  after(async () => {
    await d?.dispose();
    await registry?.stop();
  });

  test('credentials from the request are used; without or with wrong ones it is Unauthenticated', async () => {
    const ref = `${registry.host}/private/busybox:latest`;
    await assert.rejects(pull(d, ref), grpcError(GrpcStatus.UNAUTHENTICATED, new RegExp(registry.host.replace('.', '\\.'))));
    await assert.rejects(pull(d, ref, { username: 'berth', password: 'wrong' }), grpcError(GrpcStatus.UNAUTHENTICATED, /./));
    const res = await pull(d, ref, { username: 'berth', password: 's3cret' });
    assert.equal(res.imageRef, busybox.configDigest);
    const auth = Buffer.from('berth:s3cret').toString('base64');
    await remove(d, ref);
    assert.equal((await pull(d, ref, { auth })).imageRef, busybox.configDigest);
  });
});

describe('kill -9 in the middle of a pull', () => {
  test('leaves no partial blob or image record, and the pull then succeeds', async () => {
    const registry = await startRegistry();
    let d: Berthd | undefined;
    try {
      const big = await largeImage({ totalBytes: 64 << 20, layers: 4 });
      await pushImage(registry, 'e2e/large', 'latest', big);
      d = await startBerthd();
      const ref = `${registry.host}/e2e/large:latest`;
      const pending = pull(d, ref).catch((err: unknown) => err);
      const ingest = join(d.root, 'content.local', 'ingest');
      // Wait until bytes are landing, then kill without warning.
      await waitFor('a download in progress', async () => ((await readdir(ingest).catch(() => [])).length > 0 ? true : undefined), 30_000, 5);
      assert.equal(await d.stop('SIGKILL'), 'SIGKILL');
      await pending;
      d = await startBerthd({ dir: d.dir });
      assert.equal((await status(d, ref)).image, undefined);
      assert.equal((await list(d)).length, 0);
      await assertBlobsWhole(d);
      assert.equal((await pull(d, ref)).imageRef, big.configDigest);
      assert.ok((await assertBlobsWhole(d)) >= 6);
    } finally {
      await d?.dispose();
      await registry.stop();
    }
  });
});
