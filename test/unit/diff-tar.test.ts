import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { link, lstat, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { applyLayer, applyTarget } from '../../src/core/diff/index.js';
import { TarReader } from '../../src/core/diff/tar-reader.js';
import { isBerthError } from '../../src/core/errors.js';
import { diffTrees, treeOf, type Tree } from '../fixtures/index.js';
import { chunks, silent, Stack, TAR } from './diff-helpers.js';

/** cap_net_bind_service, permitted, as a VFS v2 capability xattr (binary, with NUL bytes). */
const CAPABILITY = Buffer.from('0100000200040000000000000000000000000000', 'hex');
const BINARY = Buffer.from([0xff, 0x00, 0xfe, 0x80]);
const LONG = ['a'.repeat(60), 'b'.repeat(60), 'c'.repeat(60), 'd'.repeat(60)].join('/');
const BIG_ID = 3_000_000; // more than the 7 octal digits of a ustar uid field

function sh(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function withoutXattrs(tree: Tree): Tree {
  return new Map([...tree].map(([p, e]) => [p, { ...e, xattrs: undefined }]));
}

describe('layers written by GNU tar', () => {
  let stack: Stack;
  let src: string;
  let n = 0;

  before(async () => {
    stack = await Stack.create('berth-diff-tar-');
    src = await mkdtemp(join(tmpdir(), 'berth-diff-tar-src-'));
    await mkdir(join(src, LONG), { recursive: true });
    await writeFile(join(src, LONG, 'deep-file'), 'at the end of a long path\n');
    await writeFile(join(src, 'plain'), 'plain\n');
    await link(join(src, 'plain'), join(src, 'plain-link'));
    await link(join(src, LONG, 'deep-file'), join(src, 'link-to-long'));
    await symlink(`/${LONG}/deep-file`, join(src, 'long-symlink'));
    await writeFile(join(src, 'cap'), 'capable\n');
    sh('setfattr', ['-n', 'security.capability', '-v', `0x${CAPABILITY.toString('hex')}`, join(src, 'cap')]);
    sh('setfattr', ['-n', 'user.bin', '-v', `0x${BINARY.toString('hex')}`, join(src, 'plain')]);
    await writeFile(join(src, 'big-ids'), 'owned\n');
    sh('chown', [`${BIG_ID}:${BIG_ID + 1}`, join(src, 'big-ids')]);
    await writeFile(join(src, 'setuid'), '');
    sh('chown', ['1000:1000', join(src, 'setuid')]);
    sh('chmod', ['4750', join(src, 'setuid')]);
    await mkdir(join(src, 'sticky'));
    sh('chmod', ['1777', join(src, 'sticky')]);
    await mkdir(join(src, 'dev'));
    sh('mknod', ['-m', '666', join(src, 'dev/null'), 'c', '1', '3']);
    sh('mknod', ['-m', '660', join(src, 'dev/loop0'), 'b', '7', '0']);
    sh('mkfifo', ['-m', '600', join(src, 'dev/fifo')]);
    sh('touch', ['-h', '-d', '@1600000000.25', join(src, 'long-symlink')]);
    sh('touch', ['-d', '@1600000000.5', join(src, 'plain'), join(src, 'dev'), join(src, 'sticky')]);
  });

  after(async () => {
    await stack.close();
    await rm(src, { recursive: true, force: true });
  });

  async function applyTar(tar: Buffer): Promise<string> {
    const mounts = await stack.snapshotter.prepare(`gnu-${++n}`);
    const result = await applyLayer(mounts, chunks(tar, 4099), { mediaType: TAR }, silent);
    assert.match(result.diffId, /^sha256:[0-9a-f]{64}$/);
    return applyTarget(mounts).root;
  }

  test('posix (pax) format: long names, xattrs with binary values, big ids, devices, hardlinks, times', async () => {
    const tar = execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--format=posix', '--numeric-owner', '-C', src, '-cf', '-', '.'], { maxBuffer: 64 << 20 });
    const root = await applyTar(tar);
    assert.deepEqual(diffTrees(await treeOf(src), await treeOf(root)), []);
    const read = (name: string, file: string): string =>
      execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', name, join(root, file)]).toString('hex');
    assert.equal(read('security.capability', 'cap'), CAPABILITY.toString('hex'), 'file capabilities survive chown');
    assert.equal(read('user.bin', 'plain'), BINARY.toString('hex'));
    // pax keeps sub-second times.
    assert.equal((await lstat(join(root, 'plain'))).mtimeMs, 1600000000500);
    assert.equal((await lstat(join(root, 'dev'))).mtimeMs, 1600000000500, 'a dir keeps its time though entries were written into it');
    assert.equal((await lstat(join(root, 'long-symlink'))).mtimeMs, 1600000000250);
    const null_ = await lstat(join(root, 'dev/null'));
    assert.ok(null_.isCharacterDevice());
    assert.equal(null_.rdev, (1 << 8) | 3);
  });

  test('gnu format: long names (L/K records), base-256 ids, whole-second times', async () => {
    const tar = execFileSync('tar', ['--format=gnu', '--numeric-owner', '-C', src, '-cf', '-', '.'], { maxBuffer: 64 << 20 });
    assert.ok(tar.includes('././@LongLink'), 'GNU tar wrote long-name records');
    const root = await applyTar(tar);
    assert.deepEqual(diffTrees(withoutXattrs(await treeOf(src)), await treeOf(root)), []);
    assert.equal((await lstat(join(root, 'plain'))).mtimeMs, 1600000000000);
    const owned = await lstat(join(root, 'big-ids'));
    assert.deepEqual([owned.uid, owned.gid], [BIG_ID, BIG_ID + 1]);
  });

  test('sparse files are refused, not written wrong', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-diff-sparse-'));
    try {
      sh('truncate', ['-s', '4M', join(dir, 'sparse')]);
      for (const format of ['posix', 'gnu']) {
        const tar = execFileSync('tar', ['--sparse', `--format=${format}`, '-C', dir, '-cf', '-', 'sparse']);
        const mounts = await stack.snapshotter.prepare(`sparse-${format}`);
        await assert.rejects(
          applyLayer(mounts, chunks(tar), { mediaType: TAR }, silent),
          (e) => isBerthError(e) && e.code === 'ERR_LAYER_TAR_UNSUPPORTED',
        );
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the reader skips unread content and reads every byte after the end blocks', async () => {
    const tar = execFileSync('tar', ['--format=posix', '-C', src, '-cf', '-', 'plain', 'cap']);
    let seen = 0;
    async function* counted(): AsyncGenerator<Uint8Array> {
      for await (const c of chunks(Buffer.concat([tar, Buffer.alloc(5000, 0)]), 511)) {
        seen += c.length;
        yield c;
      }
    }
    const reader = new TarReader(counted());
    const names: string[] = [];
    for (let h = await reader.next(); h !== undefined; h = await reader.next()) names.push(`${h.name}:${h.type}:${h.size}`);
    await reader.drain();
    assert.deepEqual(names, ['plain:file:6', 'cap:file:8']);
    assert.equal(seen, tar.length + 5000);
  });
});
