import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { applyLayer, applyTarget } from '../../src/core/diff/index.js';
import { isBerthError } from '../../src/core/errors.js';
import { writeTar, type TarEntry } from '../fixtures/index.js';
import { chunks, raw, silent, Stack, TAR } from './diff-helpers.js';

function code(err: unknown): string {
  return isBerthError(err) ? err.code : String(err);
}

/** Every path under `dir` with its type, mode and content, to compare before and after. */
async function snapshotOf(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      const p = join(d, name);
      const st = await lstat(p);
      const content = st.isFile() ? await readFile(p, 'utf8') : st.isSymbolicLink() ? `-> ${await readlink(p)}` : '';
      out.push(`${relative(dir, p)} ${st.mode.toString(8)} ${st.uid} ${st.nlink} ${content}`);
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return out;
}

describe('hostile layers never write outside the snapshot', () => {
  let stack: Stack;
  let outside: string;
  let sentinel: string[];
  let passwdLinks: number;
  let n = 0;

  before(async () => {
    stack = await Stack.create('berth-diff-hostile-');
    outside = join(stack.dir, 'outside');
    await mkdir(join(outside, 'sub'), { recursive: true });
    await writeFile(join(outside, 'keep'), 'sentinel\n');
    sentinel = await snapshotOf(outside);
    passwdLinks = (await stat('/etc/passwd')).nlink;
  });

  after(async () => {
    await stack.close();
  });

  async function untouched(): Promise<void> {
    assert.deepEqual(await snapshotOf(outside), sentinel, 'the sentinel dir outside is unchanged');
    assert.equal((await stat('/etc/passwd')).nlink, passwdLinks, '/etc/passwd got no new hardlink');
    const snapshots = join(stack.dir, 'root', 'snapshots');
    assert.ok((await readdir(snapshots)).every((name) => /^[0-9]+$/.test(name)), 'nothing beside the snapshot dirs');
    assert.deepEqual((await readdir(stack.dir)).sort(), ['meta.db', 'meta.db-shm', 'meta.db-wal', 'mnt', 'outside', 'root'].filter((x) => x !== 'mnt' || stack.mounted.length > 0));
  }

  /** Applies `entries` as one layer to a fresh snapshot on `parent`; returns its writable dir. */
  async function apply(entries: TarEntry[], parent?: string): Promise<{ root: string; result: Promise<unknown> }> {
    const mounts = await stack.snapshotter.prepare(`hostile-${++n}`, parent);
    const root = applyTarget(mounts).root;
    const result = applyLayer(mounts, chunks(writeTar(entries), 100), { mediaType: TAR }, silent);
    result.catch(() => undefined);
    return { root, result };
  }

  test('../ names are refused', async () => {
    const { result } = await apply([raw('../../escape', 'file', { data: Buffer.from('x') })]);
    await assert.rejects(result, (e) => code(e) === 'ERR_LAYER_UNSAFE_PATH');
    const { result: r2 } = await apply([raw('a/../../escape', 'file', { data: Buffer.from('x') })]);
    await assert.rejects(r2, (e) => code(e) === 'ERR_LAYER_UNSAFE_PATH');
    const { result: r3 } = await apply([raw('d/', 'dir'), raw('d/.wh..', 'file')]);
    await assert.rejects(r3, (e) => code(e) === 'ERR_LAYER_UNSAFE_PATH');
    const { result: r4 } = await apply([raw('.wh.', 'file')]);
    await assert.rejects(r4, (e) => code(e) === 'ERR_LAYER_UNSAFE_PATH');
    await untouched();
  });

  test('absolute names land inside the snapshot', async () => {
    const { root, result } = await apply([raw('/abs/path', 'file', { data: Buffer.from('inside') })]);
    await result;
    assert.equal(await readFile(join(root, 'abs/path'), 'utf8'), 'inside');
    await assert.rejects(lstat('/abs'), { code: 'ENOENT' });
    await untouched();
  });

  test('a file under a symlink the layer placed is written where the link points inside the snapshot, also through a chain', async () => {
    const { root, result } = await apply([
      raw('evil', 'symlink', { linkname: outside }),
      raw('evil/x', 'file', { data: Buffer.from('abs') }),
      raw('a', 'symlink', { linkname: 'b' }),
      raw('b', 'symlink', { linkname: outside }),
      raw('a/y', 'file', { data: Buffer.from('chain') }),
      raw('rel', 'symlink', { linkname: '../../../../outside' }),
      raw('rel/sub/z', 'file', { data: Buffer.from('clamped') }),
    ]);
    await result;
    assert.equal(await readFile(join(root, outside, 'x'), 'utf8'), 'abs');
    assert.equal(await readFile(join(root, outside, 'y'), 'utf8'), 'chain');
    assert.equal(await readFile(join(root, 'outside/sub/z'), 'utf8'), 'clamped', '.. stops at the root');
    for (const link of ['evil', 'a', 'b', 'rel']) assert.ok((await lstat(join(root, link))).isSymbolicLink(), `${link} is still a symlink`);
    await untouched();
  });

  test('an absolute symlink to /etc puts etc/passwd in the snapshot, not on the host', async () => {
    const passwd = await readFile('/etc/passwd', 'utf8');
    const { root, result } = await apply([raw('evil', 'symlink', { linkname: '/etc' }), raw('evil/passwd', 'file', { data: Buffer.from('root::0:0::/:/bin/sh\n') })]);
    await result;
    assert.equal(await readFile(join(root, 'etc/passwd'), 'utf8'), 'root::0:0::/:/bin/sh\n');
    assert.equal(await readFile('/etc/passwd', 'utf8'), passwd);
    await untouched();
  });

  test('.. in link targets and names stops at the root', async () => {
    const { root, result } = await apply([
      raw('d/', 'dir'),
      raw('d/up', 'symlink', { linkname: '../../../../../../..' }),
      raw('d/up/top', 'file', { data: Buffer.from('1') }),
      raw('d/mixed', 'symlink', { linkname: 'x/../../../../../etc/./' }),
      raw('d/mixed/f', 'file', { data: Buffer.from('2') }),
      raw('d/abs', 'symlink', { linkname: '/../../tmp/../..' }),
      raw('d/abs/g', 'file', { data: Buffer.from('3') }),
      raw('d/up/d/up/h', 'file', { data: Buffer.from('4') }),
    ]);
    await result;
    assert.equal(await readFile(join(root, 'top'), 'utf8'), '1');
    assert.equal(await readFile(join(root, 'etc/f'), 'utf8'), '2');
    assert.equal(await readFile(join(root, 'g'), 'utf8'), '3');
    assert.equal(await readFile(join(root, 'h'), 'utf8'), '4');
    await assert.rejects(lstat(join(root, 'd/x')), { code: 'ENOENT' }, 'a missing part undone by .. is not created');
    await untouched();
  });

  test('symlink loops and chains of 40 links are refused; 39 resolve', async () => {
    const { result } = await apply([raw('l1', 'symlink', { linkname: 'l2' }), raw('l2', 'symlink', { linkname: '/l1' }), raw('l1/x', 'file', { data: Buffer.from('x') })]);
    await assert.rejects(result, (e) => code(e) === 'ERR_LAYER_SYMLINK_LOOP');
    const { result: r2 } = await apply([raw('self', 'symlink', { linkname: 'self/a/..' }), raw('self/x', 'file', { data: Buffer.from('x') })]);
    await assert.rejects(r2, (e) => code(e) === 'ERR_LAYER_SYMLINK_LOOP');
    const { result: r3 } = await apply([raw('d/', 'dir'), raw('d/s', 'symlink', { linkname: '.' }), raw(`d/${'s/'.repeat(45)}x`, 'file', { data: Buffer.from('x') })]);
    await assert.rejects(r3, (e) => code(e) === 'ERR_LAYER_SYMLINK_LOOP', 'each pass through a link counts');
    const chain = (n: number): TarEntry[] => [
      raw('end/', 'dir'),
      ...Array.from({ length: n }, (_, i) => raw(`c${i}`, 'symlink', { linkname: i === n - 1 ? 'end' : `c${i + 1}` })),
      raw('c0/x', 'file', { data: Buffer.from('end of chain') }),
    ];
    const { result: r4 } = await apply(chain(40));
    await assert.rejects(r4, (e) => code(e) === 'ERR_LAYER_SYMLINK_LOOP');
    const { root, result: r5 } = await apply(chain(39));
    await r5;
    assert.equal(await readFile(join(root, 'end/x'), 'utf8'), 'end of chain');
    await untouched();
  });

  test('entries replace a symlink at their own path instead of following it', async () => {
    const { root, result } = await apply([
      raw('f', 'symlink', { linkname: join(outside, 'keep') }),
      raw('f', 'file', { data: Buffer.from('replaced'), mode: 0o600 }),
      raw('d', 'symlink', { linkname: join(outside, 'sub') }),
      raw('d/', 'dir', { mode: 0o700 }),
      raw('d/y', 'file', { data: Buffer.from('in d') }),
    ]);
    await result;
    assert.equal(await readFile(join(root, 'f'), 'utf8'), 'replaced');
    assert.ok((await lstat(join(root, 'd'))).isDirectory());
    assert.equal(await readFile(join(root, 'd/y'), 'utf8'), 'in d');
    await untouched();
  });

  test('hardlinks must point inside, at a non-directory; a link to a symlink links the symlink', async () => {
    const { result } = await apply([raw('pw', 'hardlink', { linkname: '/etc/passwd' })]);
    await assert.rejects(result, (e) => code(e) === 'ERR_LAYER_HARDLINK');
    const { result: r2 } = await apply([raw('pw', 'hardlink', { linkname: '../../../../../../../../etc/passwd' })]);
    await assert.rejects(r2, (e) => code(e) === 'ERR_LAYER_UNSAFE_PATH');
    // out/keep resolves to <snapshot>/<outside>/keep, which does not exist.
    const { result: r3 } = await apply([raw('out', 'symlink', { linkname: outside }), raw('pw', 'hardlink', { linkname: 'out/keep' })]);
    await assert.rejects(r3, (e) => code(e) === 'ERR_LAYER_HARDLINK');
    const { result: r6 } = await apply([raw('e', 'symlink', { linkname: '/etc' }), raw('pw', 'hardlink', { linkname: 'e/passwd' })]);
    await assert.rejects(r6, (e) => code(e) === 'ERR_LAYER_HARDLINK');
    // Inside the root, etc -> /etc points at itself.
    const { result: r7 } = await apply([raw('etc', 'symlink', { linkname: '/etc' }), raw('pw', 'hardlink', { linkname: 'etc/passwd' })]);
    await assert.rejects(r7, (e) => code(e) === 'ERR_LAYER_SYMLINK_LOOP');
    const { result: r4 } = await apply([raw('d/', 'dir'), raw('dl', 'hardlink', { linkname: 'd' })]);
    await assert.rejects(r4, (e) => code(e) === 'ERR_LAYER_UNSAFE_PATH');
    const { root, result: r5 } = await apply([raw('s', 'symlink', { linkname: '/etc/passwd' }), raw('h', 'hardlink', { linkname: 's' })]);
    await r5;
    assert.ok((await lstat(join(root, 'h'))).isSymbolicLink());
    assert.equal((await lstat(join(root, 'h'))).ino, (await lstat(join(root, 's'))).ino);
    await untouched();
  });

  test('symlinks from an earlier layer are followed by a later one inside the snapshot only', async () => {
    const base = await stack.snapshotter.prepare('evil-base');
    await applyLayer(
      base,
      chunks(
        writeTar([
          raw('evil', 'symlink', { linkname: outside }),
          raw('sub', 'symlink', { linkname: join(outside, 'sub') }),
          raw('etc/', 'dir', { mode: 0o750, uid: 5 }),
          raw('etc/hosts', 'file', { data: Buffer.from('lower hosts\n') }),
          raw('etc2', 'symlink', { linkname: '/etc' }),
          raw('up', 'symlink', { linkname: '../../../../../../../etc' }),
          raw('loop1', 'symlink', { linkname: 'loop2/x' }),
          raw('loop2', 'symlink', { linkname: '/loop1/..' }),
        ]),
      ),
      { mediaType: TAR },
      silent,
    );
    await stack.snapshotter.commit('evil-layer', 'evil-base');
    const hostHosts = await readFile('/etc/hosts', 'utf8');

    const { root, result } = await apply(
      [raw('evil/x', 'file', { data: Buffer.from('in scope') }), raw('etc2/hosts', 'file', { data: Buffer.from('upper hosts\n') }), raw('up/passwd', 'file', { data: Buffer.from('pw\n') })],
      'evil-layer',
    );
    await result;
    assert.equal(await readFile(join(root, outside, 'x'), 'utf8'), 'in scope');
    assert.equal(await readFile(join(root, 'etc/hosts'), 'utf8'), 'upper hosts\n');
    assert.equal(await readFile(join(root, 'etc/passwd'), 'utf8'), 'pw\n');
    const etc = await lstat(join(root, 'etc'));
    assert.deepEqual([etc.isDirectory(), etc.mode & 0o7777, etc.uid], [true, 0o750, 5], 'etc is copied up with the lower dir\'s metadata');
    assert.deepEqual((await readdir(root)).sort(), [outside.split('/')[1], 'etc'].sort(), 'no entry is made for the symlinks themselves');
    assert.equal(await readFile('/etc/hosts', 'utf8'), hostHosts);

    const { result: r2 } = await apply([raw('h', 'hardlink', { linkname: 'evil/keep' })], 'evil-layer');
    await assert.rejects(r2, (e) => code(e) === 'ERR_LAYER_HARDLINK');
    const { result: r4 } = await apply([raw('loop1/f', 'file', { data: Buffer.from('x') })], 'evil-layer');
    await assert.rejects(r4, (e) => code(e) === 'ERR_LAYER_SYMLINK_LOOP');
    // Whiteouts under a lower symlink whose target the snapshot lacks have nothing to hide: they are dropped.
    const { root: root3, result: r3 } = await apply([raw('evil/.wh.keep', 'file'), raw('sub/.wh..wh..opq', 'file'), raw('ok', 'file', { data: Buffer.from('1') })], 'evil-layer');
    await r3;
    assert.deepEqual((await readdir(root3)).sort(), ['ok']);
    await untouched();
  });

  test('overlayfs xattrs in a layer are dropped', async () => {
    const { root, result } = await apply([
      raw('d/', 'dir', { xattrs: { 'trusted.overlay.opaque': Buffer.from('y'), 'trusted.overlay.redirect': Buffer.from('/etc'), 'user.ok': Buffer.from('1') } }),
    ]);
    await result;
    const attrs = execFileSync('getfattr', ['--absolute-names', '-d', '-m', '-', join(root, 'd')], { encoding: 'utf8' });
    assert.match(attrs, /user\.ok="1"/);
    assert.doesNotMatch(attrs, /overlay/);
    await untouched();
  });
});
