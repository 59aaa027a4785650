// Sanity of the fixture tar writer/reader and of treeOf/expectedTree, checked against GNU tar as an
// independent implementation (it extracts what we write, and we read what it writes).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, chown, link, mkdir, mkdtemp, rm, symlink as fsSymlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { charDevice, dir, fifo, file, hardlink, symlink } from '../fixtures/oci-image.js';
import { readTar, writeTar, type TarEntry } from '../fixtures/tar.js';
import { diffTrees, expectedTree, treeOf } from '../fixtures/tree.js';

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'berth-fixtures-tar-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const longDir = `/d/${'x'.repeat(120)}`;
const sample: TarEntry[] = [
  dir('/d', { mode: 0o2755, gid: 1234 }),
  file('/d/plain.txt', 'hello\n', { uid: 1234, gid: 1234, mode: 0o640 }),
  file('/d/setuid', '#!/bin/sh\n', { mode: 0o4755 }),
  file('/d/xattr', 'x', { xattrs: { 'user.berth': '1', 'user.bin': new Uint8Array([0, 255, 10]) } }),
  hardlink('/d/plain-link', '/d/plain.txt'),
  symlink('/d/sym', '../etc/passwd'),
  fifo('/d/pipe', { mode: 0o600 }),
  charDevice('/d/null', 1, 3),
  dir(longDir),
  file(`${longDir}/${'y'.repeat(90)}.txt`, 'long path\n'),
  symlink('/d/long-target', `/${'t'.repeat(150)}`),
  file('/d/big-ids', 'ids\n', { uid: 3_000_000, gid: 4_000_000 }),
  dir('/sticky', { mode: 0o1777 }),
];

describe('fixture tar', () => {
  test('round-trips every entry kind, long names, xattrs and big ids', () => {
    const back = readTar(writeTar(sample));
    assert.equal(back.length, sample.length);
    for (const [i, want] of sample.entries()) {
      const got = back[i]!;
      assert.equal(got.path, want.path, `entry ${i}`);
      assert.equal(got.type, want.type, want.path);
      assert.equal(got.mode, want.mode, want.path);
      assert.equal(got.uid, want.uid, want.path);
      assert.equal(got.gid, want.gid, want.path);
      assert.equal(got.linkname, want.linkname, want.path);
      assert.deepEqual(got.data, want.data, want.path);
      assert.deepEqual(got.xattrs, want.xattrs, want.path);
      if (want.type === 'char') assert.deepEqual([got.devmajor, got.devminor], [1, 3]);
    }
  });

  test('rejects a corrupted header', () => {
    const tar = writeTar([file('/a', 'a')]);
    tar[10] = (tar[10]! + 1) & 0xff;
    assert.throws(() => readTar(tar), /checksum/);
  });

  test('GNU tar extracts what we write into the tree expectedTree predicts', async () => {
    const tarFile = path.join(tmp, 'sample.tar');
    await writeFile(tarFile, writeTar(sample));
    const listing = execFileSync('tar', ['-tvf', tarFile], { encoding: 'utf8' });
    assert.match(listing, /^hrw-r--r-- .* d\/plain-link link to d\/plain.txt$/m);
    assert.match(listing, /^crw-rw-rw- .* 1,3 .*d\/null$/m);
    const out = path.join(tmp, 'extract');
    await mkdir(out);
    execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--same-owner', '--same-permissions', '--numeric-owner', '-xf', tarFile, '-C', out]);
    const want = expectedTree([writeTar(sample)]);
    const got = await treeOf(out);
    assert.deepEqual(diffTrees(want, got), []);
    assert.equal(got.get('/d/plain-link')?.linkGroup, '/d/plain-link');
    assert.equal(got.get('/d/xattr')?.xattrs?.['user.bin'], '\u0000\u00ff\n');
  });

  test('reads an archive GNU tar wrote (pax, xattrs, hardlinks) like treeOf reads the source dir', async () => {
    const src = path.join(tmp, 'src');
    await mkdir(path.join(src, 'sub'), { recursive: true });
    await writeFile(path.join(src, 'sub', 'a.txt'), 'aaa');
    await link(path.join(src, 'sub', 'a.txt'), path.join(src, 'b.txt'));
    await fsSymlink('sub/a.txt', path.join(src, 'ln'));
    await writeFile(path.join(src, 'z'.repeat(130)), 'long');
    await chmod(path.join(src, 'sub'), 0o750);
    await chown(path.join(src, 'b.txt'), 1234, 99);
    execFileSync('setfattr', ['-n', 'user.k', '-v', 'value', path.join(src, 'sub', 'a.txt')]);
    const archive = execFileSync('tar', ['--format=posix', '--xattrs', '--numeric-owner', '-cf', '-', '-C', src, '.'], {
      maxBuffer: 64 * 1024 * 1024,
    });
    const entries = readTar(archive);
    assert.ok(entries.some((e) => e.type === 'hardlink'), 'GNU tar stored the second name as a hardlink');
    assert.deepEqual(diffTrees(expectedTree([archive]), await treeOf(src)), []);
    assert.equal((await treeOf(src)).get('/sub/a.txt')?.xattrs?.['user.k'], 'value');
  });
});
