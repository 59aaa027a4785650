import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, readFile, readdir, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { applyLayer } from '../../src/core/diff/index.js';
import { isBerthError } from '../../src/core/errors.js';
import {
  buildLayer,
  deepImage,
  DEFAULT_MTIME,
  diffTrees,
  dir,
  expectedTree,
  file,
  hardlink,
  MULTI_LAYER,
  multiLayerImage,
  treeOf,
  writeTar,
  type Image,
} from '../fixtures/index.js';
import { chunks, raw, silent, Stack, TAR, TAR_GZIP } from './diff-helpers.js';

function layersOf(image: Image): { blob: Buffer; mediaType: string; diffId: string }[] {
  return image.layers.map((l, i) => ({ blob: l.blob, mediaType: image.manifest.layers[i]!.mediaType, diffId: l.diffId }));
}

function code(err: unknown): string {
  return isBerthError(err) ? err.code : String(err);
}

describe('applying image layers to overlay snapshots', () => {
  let stack: Stack;

  before(async () => {
    stack = await Stack.create('berth-diff-apply-');
  });

  after(async () => {
    await stack.close();
  });

  test('a four-layer image (gzip, OCI) mounts as exactly the tree its layers describe', async () => {
    const image = await multiLayerImage({ compression: 'gzip' });
    let parent: string | undefined;
    for (const [i, layer] of layersOf(image).entries()) {
      const result = await stack.applyAndCommit(`multi-${i}`, parent, layer);
      assert.equal(result.diffId, layer.diffId);
      assert.equal(result.size, image.layers[i]!.tar.length);
      parent = `multi-${i}`;
    }
    const merged = await stack.mountAt(await stack.snapshotter.view('multi-view', parent), 'multi');
    assert.deepEqual(diffTrees(expectedTree(image), await treeOf(merged)), []);

    // What the tree comparison covers, spelled out for the reader.
    const m = MULTI_LAYER;
    await assert.rejects(lstat(join(merged, m.removedFile)), { code: 'ENOENT' });
    await assert.rejects(lstat(join(merged, m.removedDir)), { code: 'ENOENT' });
    assert.deepEqual((await readdir(join(merged, m.opaqueDir))).sort(), ['upper-c.txt']);
    assert.equal(await readFile(join(merged, m.recreated.path), 'utf8'), m.recreated.content);
    for (const [a, b] of m.hardlinks) assert.equal((await stat(join(merged, a))).ino, (await stat(join(merged, b))).ino, `${a} and ${b} share an inode`);
    assert.ok((await lstat(join(merged, m.fifo))).isFIFO());
    assert.equal((await stat(join(merged, m.setuidFile.path))).mode & 0o7777, m.setuidFile.mode);
    const owned = await stat(join(merged, m.ownedFile.path));
    assert.deepEqual([owned.uid, owned.gid, owned.mode & 0o777], [m.ownedFile.uid, m.ownedFile.gid, m.ownedFile.mode]);
    assert.equal(execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', m.xattrFile.name, join(merged, m.xattrFile.path)], { encoding: 'utf8' }), m.xattrFile.value);
    assert.equal((await lstat(join(merged, '/data/rel-link'))).mtimeMs, DEFAULT_MTIME * 1000, 'symlink times');
    assert.equal((await stat(join(merged, '/data'))).mtimeMs, DEFAULT_MTIME * 1000, 'dir times are set after their contents');
    assert.equal((await stat(join(merged, '/data/keep.txt'))).mtimeMs, DEFAULT_MTIME * 1000);
  });

  test('the upper dirs hold overlay whiteouts: 0/0 char devices and opaque xattrs', async () => {
    // Layer 3 of the multi-layer image, read through its snapshot's own dir.
    const view = await stack.snapshotter.view('multi-2-view', 'multi-2');
    const upperView = await stack.snapshotter.prepare('multi-3-probe', 'multi-2');
    const lowers = upperView[0]!.options.find((o) => o.startsWith('lowerdir='))!.slice('lowerdir='.length).split(':');
    const layer3 = join(upperView[0]!.cwd!, lowers[0]!);
    const wh = await lstat(join(layer3, MULTI_LAYER.removedFile));
    assert.ok(wh.isCharacterDevice() && wh.rdev === 0, 'whiteout is a 0/0 char device');
    assert.equal(execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', 'trusted.overlay.opaque', join(layer3, MULTI_LAYER.opaqueDir)], { encoding: 'utf8' }), 'y');
    assert.ok(!(await readdir(layer3)).some((n) => n.startsWith('.berth-whiteout-')), 'the whiteout template is gone');
    assert.ok(!(await readdir(join(layer3, 'data'))).some((n) => n.startsWith('.wh.')), 'no .wh. files are written');
    await stack.snapshotter.remove('multi-3-probe');
    assert.equal(view[0]!.type, 'overlay');
    await stack.snapshotter.remove('multi-2-view');
  });

  test('64 layers (zstd, Docker media types) apply, mount and show the top layer', async () => {
    const image = await deepImage(64, { compression: 'zstd', format: 'docker' });
    assert.match(image.manifest.layers[0]!.mediaType, /docker.*zstd/);
    let parent: string | undefined;
    for (const [i, layer] of layersOf(image).entries()) {
      await stack.applyAndCommit(`deep-${i}`, parent, layer);
      parent = `deep-${i}`;
    }
    const merged = await stack.mountAt(await stack.snapshotter.prepare('deep-rw', parent), 'deep');
    assert.equal(await readFile(join(merged, 'deep/top'), 'utf8'), '64\n');
    await assert.rejects(lstat(join(merged, 'deep/layer-19')), { code: 'ENOENT' }, 'whited out by layer 20');
    assert.equal(await readFile(join(merged, 'deep/layer-2'), 'utf8'), 'layer 2\n', 'a file from the second layer');
    assert.ok((await lstat(join(merged, 'bin/busybox'))).isFile(), 'the bottom layer shows');
    assert.deepEqual(diffTrees(expectedTree(image), await treeOf(merged)), []);
  });

  test('a hardlink to a file of a lower layer copies it up and links it', async () => {
    await stack.applyAndCommit('hl-0', undefined, { blob: (await buildLayer([dir('/d'), file('/d/orig', 'lower content\n', { mode: 0o640, uid: 7 })], { compression: 'none' })).tar, mediaType: TAR });
    const layer = await buildLayer([dir('/d'), hardlink('/d/link', '/d/orig')], { compression: 'none' });
    await stack.applyAndCommit('hl-1', 'hl-0', { blob: layer.tar, mediaType: TAR });
    const merged = await stack.mountAt(await stack.snapshotter.view('hl-view', 'hl-1'), 'hl');
    assert.equal(await readFile(join(merged, 'd/link'), 'utf8'), 'lower content\n');
    const [a, b] = [await stat(join(merged, 'd/orig')), await stat(join(merged, 'd/link'))];
    assert.equal(a.ino, b.ino);
    assert.deepEqual([b.mode & 0o777, b.uid], [0o640, 7]);
  });

  test('a usrmerge image: a later layer writes through lib -> usr/lib of an earlier one', async () => {
    await stack.applyAndCommit('usrmerge-0', undefined, {
      blob: writeTar([
        raw('usr/', 'dir'),
        raw('usr/lib/', 'dir', { mode: 0o750, uid: 3, gid: 4 }),
        raw('usr/lib/old', 'file', { data: Buffer.from('old\n') }),
        raw('usr/lib/keep', 'file', { data: Buffer.from('keep\n'), mode: 0o640 }),
        raw('usr/sbin/', 'dir'),
        raw('lib', 'symlink', { linkname: 'usr/lib' }),
        raw('lib64', 'symlink', { linkname: '/usr/lib' }),
        raw('sbin', 'symlink', { linkname: 'usr/sbin' }),
        raw('bin', 'symlink', { linkname: 'usr/bin' }),
      ]),
      mediaType: TAR,
    });
    await stack.applyAndCommit('usrmerge-1', 'usrmerge-0', {
      blob: writeTar([
        raw('lib/x/file', 'file', { data: Buffer.from('through the link\n') }),
        raw('lib/x/hl', 'hardlink', { linkname: 'lib/x/file' }),
        raw('lib/x/keep-link', 'hardlink', { linkname: 'lib/keep' }),
        raw('lib/.wh.old', 'file'),
        raw('lib64/abs-file', 'file', { data: Buffer.from('absolute link\n') }),
        raw('bin/sh', 'file', { data: Buffer.from('#!\n'), mode: 0o755 }),
        raw('sbin/', 'dir', { mode: 0o700 }),
        raw('sbin/tool', 'file', { data: Buffer.from('tool\n') }),
      ]),
      mediaType: TAR,
    });
    const merged = await stack.mountAt(await stack.snapshotter.view('usrmerge-view', 'usrmerge-1'), 'usrmerge');
    assert.equal(await readFile(join(merged, 'usr/lib/x/file'), 'utf8'), 'through the link\n');
    assert.ok((await lstat(join(merged, 'lib'))).isSymbolicLink(), '/lib is still a symlink');
    assert.equal(await readlink(join(merged, 'lib')), 'usr/lib');
    assert.equal(await readFile(join(merged, 'lib/x/file'), 'utf8'), 'through the link\n');
    assert.equal((await stat(join(merged, 'usr/lib/x/hl'))).ino, (await stat(join(merged, 'usr/lib/x/file'))).ino);
    assert.equal((await stat(join(merged, 'usr/lib/x/keep-link'))).ino, (await stat(join(merged, 'usr/lib/keep'))).ino, 'the lower file was copied up and linked');
    assert.equal(await readFile(join(merged, 'usr/lib/keep'), 'utf8'), 'keep\n');
    await assert.rejects(lstat(join(merged, 'usr/lib/old')), { code: 'ENOENT' }, 'whited out through the link');
    const usrLib = await stat(join(merged, 'usr/lib'));
    assert.deepEqual([usrLib.mode & 0o7777, usrLib.uid, usrLib.gid], [0o750, 3, 4], 'usr/lib keeps the lower layer\'s metadata');
    assert.equal(await readFile(join(merged, 'usr/lib/abs-file'), 'utf8'), 'absolute link\n');
    assert.ok((await lstat(join(merged, 'lib64'))).isSymbolicLink());
    assert.equal(await readFile(join(merged, 'usr/bin/sh'), 'utf8'), '#!\n', 'a dangling link\'s target dir is created');
    assert.ok((await lstat(join(merged, 'bin'))).isSymbolicLink());
    const sbin = await lstat(join(merged, 'sbin'));
    assert.deepEqual([sbin.isDirectory(), sbin.mode & 0o7777], [true, 0o700], 'a dir entry replaces the symlink at its own name');
    assert.deepEqual(await readdir(join(merged, 'sbin')), ['tool']);
    assert.deepEqual(await readdir(join(merged, 'usr/sbin')), []);

    // The layer's own dir holds the files under usr/, and nothing for the links it wrote through.
    const probe = await stack.snapshotter.prepare('usrmerge-probe', 'usrmerge-1');
    const lowers = probe[0]!.options.find((o) => o.startsWith('lowerdir='))!.slice('lowerdir='.length).split(':');
    assert.deepEqual((await readdir(join(probe[0]!.cwd!, lowers[0]!))).sort(), ['sbin', 'usr']);
    await stack.snapshotter.remove('usrmerge-probe');
  });

  test('compression goes by the content when the media type is wrong, and the diff ID covers trailing bytes', async () => {
    const layer = await buildLayer([file('/plain', 'x')], { compression: 'none' });
    const withTail = Buffer.concat([layer.tar, Buffer.alloc(8192)]);
    const mounts = await stack.snapshotter.prepare('mislabelled');
    const warnings: unknown[] = [];
    const log = silent.child({});
    log.warn = ((obj: unknown) => warnings.push(obj)) as typeof log.warn;
    const result = await applyLayer(mounts, chunks(withTail, 333), { mediaType: TAR_GZIP }, log);
    assert.equal(result.diffId, `sha256:${createHash('sha256').update(withTail).digest('hex')}`);
    assert.equal(result.size, withTail.length);
    assert.equal(warnings.length, 1, 'the mismatch is logged');

    // And gzip under a plain tar media type.
    const gz = gzipSync(layer.tar);
    const r2 = await applyLayer(await stack.snapshotter.prepare('mislabelled-2'), chunks(gz, 10), { mediaType: TAR }, silent);
    assert.equal(r2.diffId, layer.diffId);
  });

  test('a wrong diff ID, a corrupt stream, an unknown media type, bzip2, a cancel: all refused', async () => {
    const layer = await buildLayer([file('/f', 'data')], { compression: 'gzip' });
    const mounts = await stack.snapshotter.prepare('refusals');
    await assert.rejects(
      applyLayer(mounts, chunks(layer.blob), { mediaType: TAR_GZIP, expectedDiffId: `sha256:${'0'.repeat(64)}` }, silent),
      (e) => code(e) === 'ERR_DIFF_ID_MISMATCH',
    );
    await assert.rejects(
      applyLayer(mounts, chunks(layer.blob.subarray(0, layer.blob.length - 20)), { mediaType: TAR_GZIP }, silent),
      (e) => code(e) === 'ERR_LAYER_DECOMPRESS',
    );
    await assert.rejects(applyLayer(mounts, chunks(layer.blob), { mediaType: 'application/vnd.oci.image.layer.v1.tar+bzip2' }, silent), (e) => code(e) === 'ERR_LAYER_MEDIA_TYPE');
    await assert.rejects(applyLayer(mounts, chunks(Buffer.from('BZh91AY&SY')), { mediaType: TAR }, silent), (e) => code(e) === 'ERR_LAYER_COMPRESSION');
    const tornHeader = Buffer.from(layer.tar.subarray(0, 512));
    tornHeader[0] = (tornHeader[0]! + 1) & 0xff;
    await assert.rejects(applyLayer(mounts, chunks(tornHeader), { mediaType: TAR }, silent), (e) => code(e) === 'ERR_LAYER_TAR_INVALID');
    await assert.rejects(applyLayer(mounts, chunks(layer.tar.subarray(0, 700)), { mediaType: TAR }, silent), (e) => code(e) === 'ERR_LAYER_TAR_INVALID');

    const ac = new AbortController();
    async function* slow(): AsyncGenerator<Uint8Array> {
      yield layer.tar.subarray(0, 512);
      ac.abort();
      await new Promise((r) => setTimeout(r, 10));
      yield layer.tar.subarray(512);
    }
    await assert.rejects(applyLayer(mounts, slow(), { mediaType: TAR, signal: ac.signal }, silent), (e) => code(e) === 'ERR_DIFF_CANCELLED');
    await assert.rejects(applyLayer(await stack.snapshotter.view('ro-view'), chunks(layer.tar), { mediaType: TAR }, silent), (e) => code(e) === 'ERR_DIFF_MOUNTS');
  });
});
