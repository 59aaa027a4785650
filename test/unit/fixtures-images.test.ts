// Sanity of the ready-made images: expectedTree's whiteout semantics, and agreement with what the kernel's
// overlayfs shows when the layers (extracted by GNU tar, whiteouts converted to overlay form) are mounted.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';
import {
  busyboxImage,
  busyboxRootfsEntries,
  deepImage,
  diffTrees,
  expectedTree,
  largeImage,
  MULTI_LAYER,
  multiLayerImage,
  multiPlatformIndex,
  PAUSE_ENTRYPOINT,
  pauseImage,
  treeOf,
  BERTH_UID,
} from '../fixtures/images.js';
import { buildLayer, hostPlatform, MediaTypes, sha256, type Image } from '../fixtures/oci-image.js';

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'berth-fixtures-images-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function extract(tar: Buffer, dir: string): void {
  execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--same-owner', '--same-permissions', '--numeric-owner', '-xf', '-', '-C', dir], {
    input: tar,
    maxBuffer: 1024 * 1024,
  });
}

/** Turns OCI whiteout files into overlayfs whiteouts (0/0 char devices, trusted.overlay.opaque=y). */
async function toOverlayWhiteouts(dir: string): Promise<void> {
  for (const ent of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.name === '.wh..wh..opq') {
      await unlink(p);
      execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', dir]);
    } else if (ent.name.startsWith('.wh.')) {
      await unlink(p);
      execFileSync('mknod', [path.join(dir, ent.name.slice(4)), 'c', '0', '0']);
    } else if (ent.isDirectory()) {
      await toOverlayWhiteouts(p);
    }
  }
}

async function extractLayers(img: Image, name: string): Promise<string[]> {
  const dirs: string[] = [];
  for (const [i, l] of img.layers.entries()) {
    const d = path.join(tmp, name, `layer-${i}`);
    await mkdir(d, { recursive: true });
    extract(l.tar, d);
    await toOverlayWhiteouts(d);
    dirs.push(d);
  }
  return dirs;
}

describe('ready-made images', () => {
  test('busybox: applet symlinks, users, /tmp 1777, and the rootfs actually runs', async () => {
    const img = await busyboxImage();
    assert.equal(img.layers.length, 1);
    assert.equal(img.manifest.mediaType, MediaTypes.ociManifest);
    assert.equal(img.manifest.layers[0]!.mediaType, MediaTypes.ociLayerGzip);
    assert.deepEqual(img.config.config.Cmd, ['sh']);
    assert.deepEqual(img.config.rootfs.diff_ids, [sha256(img.layers[0]!.tar)]);
    assert.equal(img.config.architecture, hostPlatform().architecture);
    const tree = expectedTree(img);
    for (const a of ['sh', 'ls', 'cat', 'echo', 'sleep', 'id']) assert.equal(tree.get(`/bin/${a}`)?.target, 'busybox', a);
    assert.equal(tree.get('/tmp')?.mode, 0o1777);
    assert.equal(tree.get('/home/berth')?.uid, BERTH_UID);

    const root = path.join(tmp, 'busybox-root');
    await mkdir(root);
    extract(img.layers[0]!.tar, root);
    assert.deepEqual(diffTrees(tree, await treeOf(root)), []);
    const out = execFileSync('chroot', [root, '/bin/sh', '-c', 'id -un berth; id -u nobody; id -G berth; ls -ld /tmp'], { encoding: 'utf8' });
    assert.match(out, /^berth\n65534\n1234 2000\ndrwxrwxrwt /);
  });

  test('pause image: entrypoint sleeps and exits 0 on SIGTERM', async () => {
    const img = await pauseImage();
    assert.deepEqual(img.config.config.Entrypoint, PAUSE_ENTRYPOINT);
    assert.equal(img.layers[0]!.digest, (await busyboxImage()).layers[0]!.digest, 'shares the busybox layer');
    const root = path.join(tmp, 'pause-root');
    await mkdir(root);
    extract(img.layers[0]!.tar, root);
    const child = spawn('chroot', [root, ...PAUSE_ENTRYPOINT], { stdio: 'ignore' });
    try {
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const early = await Promise.race([exited.then(() => 'exited'), new Promise((r) => setTimeout(() => r('running'), 300))]);
      assert.equal(early, 'running');
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  test('multi-layer: whiteouts, opaque dir, type changes, hardlinks and metadata in expectedTree', async () => {
    const img = await multiLayerImage();
    const m = MULTI_LAYER;
    assert.equal(img.layers.length, 4);
    assert.equal(img.config.config.User, 'app');
    const t = expectedTree(img);
    assert.equal(t.has(m.removedFile), false);
    assert.equal(t.has(m.removedDir), false);
    assert.equal(t.has(`${m.removedDir}/inner.txt`), false);
    for (const p of m.opaqueLowerFiles) assert.equal(t.has(p), false, p);
    for (const p of m.opaqueUpperFiles) assert.equal(t.get(p)?.type, 'file', p);
    assert.deepEqual([...t.keys()].filter((p) => p.startsWith('/opaque/')), [...m.opaqueUpperFiles]);
    assert.equal(t.get(m.opaqueDir)?.mode, 0o750);
    assert.equal(t.get(m.recreated.path)?.sha256, sha256(Buffer.from(m.recreated.content)));
    for (const [a, b] of m.hardlinks) {
      assert.equal(t.get(a)?.linkGroup, a);
      assert.equal(t.get(b)?.linkGroup, a);
      assert.equal(t.get(b)?.sha256, t.get(a)?.sha256);
    }
    for (const [p, target] of Object.entries(m.symlinks)) assert.equal(t.get(p)?.target, target);
    assert.equal(t.get(m.fifo)?.type, 'fifo');
    assert.deepEqual(t.get(m.xattrFile.path)?.xattrs, { [m.xattrFile.name]: m.xattrFile.value });
    assert.equal(t.get(m.setuidFile.path)?.mode, m.setuidFile.mode);
    assert.deepEqual([t.get(m.setgidDir.path)?.mode, t.get(m.setgidDir.path)?.gid], [m.setgidDir.mode, m.setgidDir.gid]);
    assert.deepEqual([t.get(m.ownedFile.path)?.uid, t.get(m.ownedFile.path)?.mode], [m.ownedFile.uid, m.ownedFile.mode]);
    assert.equal(t.get(m.dirToFile)?.type, 'file');
    assert.equal(t.has(`${m.dirToFile}/child`), false);
    assert.equal(t.get(m.fileToDir)?.type, 'dir');
    assert.equal(t.get(`${m.fileToDir}/child`)?.type, 'file');
    // Lower layers alone still have what the upper ones remove.
    const lower = expectedTree(img.layers.slice(0, 2));
    assert.equal(lower.get(m.removedFile)?.type, 'file');
    assert.equal(lower.get('/opaque/lower-a.txt')?.type, 'file');
  });

  test('multi-layer: overlay layer dirs and a real overlay mount agree with expectedTree', async () => {
    const img = await multiLayerImage();
    const want = expectedTree(img);
    const dirs = await extractLayers(img, 'multi');
    assert.deepEqual(diffTrees(want, await treeOf(dirs)), []);

    const merged = path.join(tmp, 'multi', 'merged');
    await mkdir(merged);
    const lowers = [...dirs].reverse().join(':');
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lowers}`, merged]);
    try {
      assert.deepEqual(diffTrees(want, await treeOf(merged)), []);
    } finally {
      execFileSync('umount', [merged]);
    }
  });

  test('deep image: many layers, top wins, periodic whiteouts', async () => {
    const img = await deepImage(64);
    assert.equal(img.layers.length, 64);
    assert.equal(new Set(img.layers.map((l) => l.diffId)).size, 64);
    const t = expectedTree(img);
    assert.equal(t.get('/deep/top')?.sha256, sha256(Buffer.from('64\n')));
    assert.equal(t.has('/deep/layer-9'), false);
    assert.equal(t.has('/deep/layer-10'), true);
    assert.equal(t.has('/deep/layer-59'), false);
    assert.equal(t.has('/deep/layer-63'), true);
    assert.equal(t.has('/deep/layer-64'), true);
    const dirs = await extractLayers(img, 'deep');
    assert.deepEqual(diffTrees(t, await treeOf(dirs)), []);
  });

  test('deterministic digests; docker and zstd variants', async () => {
    const a = await multiLayerImage();
    const b = await multiLayerImage();
    assert.equal(a.digest, b.digest);
    assert.equal((await buildLayer(busyboxRootfsEntries())).digest, (await busyboxImage()).layers[0]!.digest);

    const d = await busyboxImage({ format: 'docker' });
    assert.equal(d.manifest.mediaType, MediaTypes.dockerManifest);
    assert.equal(d.manifest.config.mediaType, MediaTypes.dockerConfig);
    assert.equal(d.manifest.layers[0]!.mediaType, MediaTypes.dockerLayerGzip);

    const z = await multiLayerImage({ compression: 'zstd' });
    assert.equal(z.manifest.layers[1]!.mediaType, MediaTypes.ociLayerZstd);
    const blob = z.layers[1]!.blob;
    assert.deepEqual([...blob.subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd]);
    assert.deepEqual(zlib.zstdDecompressSync(blob), z.layers[1]!.tar);
    assert.deepEqual(z.config.rootfs.diff_ids, a.config.rootfs.diff_ids, 'diff_ids do not depend on compression');

    const n = await busyboxImage({ compression: 'none' });
    assert.equal(n.manifest.layers[0]!.mediaType, MediaTypes.ociLayer);
    assert.equal(n.layers[0]!.digest, n.layers[0]!.diffId);
  });

  test('multi-platform index lists distinct platforms, host first', async () => {
    const idx = await multiPlatformIndex();
    assert.equal(idx.index.mediaType, MediaTypes.ociIndex);
    assert.ok(idx.index.manifests.length >= 3);
    const names = idx.index.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}/${m.platform?.variant ?? ''}`);
    assert.equal(new Set(names).size, names.length);
    assert.equal(idx.index.manifests[0]!.platform?.architecture, hostPlatform().architecture);
    for (const img of idx.images) {
      const p = expectedTree(img).get('/platform');
      assert.equal(p?.type, 'file');
      assert.equal(img.config.architecture, img.platform.architecture);
    }
  });

  test('large image (small size here): sizes add up, seed decides the digests', async () => {
    const o = { totalBytes: 3 * 1024 * 1024 + 5, layers: 2, maxFileBytes: 1024 * 1024 };
    const a = await largeImage(o);
    assert.equal(a.layers.length, 3);
    const t = expectedTree(a);
    const bytes = [...t].filter(([p]) => p.startsWith('/large-')).reduce((s, [, e]) => s + (e.size ?? 0), 0);
    assert.equal(bytes, o.totalBytes);
    assert.ok(a.layers[1]!.size > 1.5 * 1024 * 1024, 'random data does not compress');
    assert.equal((await largeImage(o)).digest, a.digest);
    assert.notEqual((await largeImage({ ...o, seed: 'other' })).digest, a.digest);
  });

  test('large image at full size builds in seconds', { skip: process.env['BERTH_TEST_LARGE'] ? false : 'set BERTH_TEST_LARGE=1' }, async () => {
    const t0 = Date.now();
    const img = await largeImage();
    const ms = Date.now() - t0;
    const total = img.layers.slice(1).reduce((s, l) => s + l.tar.length, 0);
    assert.ok(total >= 200 * 1024 * 1024, `${total} bytes`);
    assert.ok(ms < 30_000, `took ${ms} ms`);
  });
});
