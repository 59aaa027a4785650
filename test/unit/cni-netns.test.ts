import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { access, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { isNetnsPinned, NetnsManager } from '../../src/cni/netns.js';
import { BerthError } from '../../src/core/errors.js';
import { listMountPoints, unmountAllUnder } from '../../src/core/mountinfo.js';

const run = promisify(execFile);

async function isMountPoint(p: string): Promise<boolean> {
  return (await listMountPoints()).includes(p);
}

async function missing(p: string): Promise<boolean> {
  return access(p).then(
    () => false,
    () => true,
  );
}

describe('NetnsManager', () => {
  let tmp: string;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'berth-netns-'));
  });

  after(async () => {
    await unmountAllUnder(tmp);
    await rm(tmp, { recursive: true, force: true });
    assert.deepEqual((await listMountPoints()).filter((p) => p.startsWith(tmp)), [], 'no mounts left under the temp dir');
  });

  it('makes its dir a private mount and undoes it at close', async () => {
    const dir = path.join(tmp, 'a', 'netns');
    const mgr = await NetnsManager.open(dir);
    assert.ok(await isMountPoint(dir));
    const info = (await run('findmnt', ['-n', '-o', 'PROPAGATION', dir])).stdout.trim();
    assert.equal(info, 'private');
    await mgr.close();
    assert.equal(await isMountPoint(dir), false);
  });

  it('creates pinned namespaces that ip netns does not list, and removes them', async () => {
    const dir = path.join(tmp, 'b');
    const mgr = await NetnsManager.open(dir);
    try {
      const started = performance.now();
      const one = await mgr.create('pod-one');
      const ms = performance.now() - started;
      const two = await mgr.create();
      assert.equal(one, path.join(dir, 'pod-one'));
      assert.match(path.basename(two), /^cni-[0-9a-f-]{36}$/);
      assert.ok(ms < 1000, `create took ${ms} ms`);
      assert.ok(await mgr.exists(one));
      assert.ok(await isNetnsPinned(two));
      // Two distinct namespaces, each with only a loopback.
      assert.notEqual((await stat(one)).ino, (await stat(two)).ino);
      const links = (await run('nsenter', [`--net=${one}`, 'ip', '-o', 'link'])).stdout.trim().split('\n');
      assert.equal(links.length, 1);
      assert.match(links[0] ?? '', /: lo: /);
      const listed = (await run('ip', ['netns', 'list'])).stdout;
      assert.ok(!listed.includes('pod-one') && !listed.includes(path.basename(two)), listed);
      assert.deepEqual(await mgr.list(), [two, one].sort());

      await assert.rejects(mgr.create('pod-one'), (err: unknown) => err instanceof BerthError && err.code === 'ERR_NETNS_EXISTS');
      assert.ok(await mgr.exists(one), 'a failed create leaves the existing namespace alone');

      await mgr.remove(one);
      assert.ok(await missing(one));
      assert.equal(await mgr.exists(one), false);
      await mgr.remove(one);
      assert.deepEqual(await mgr.list(), [two]);
      await mgr.remove(two);
      assert.deepEqual(await mgr.list(), []);
    } finally {
      for (const p of await mgr.list()) await mgr.remove(p);
      await mgr.close();
    }
    assert.equal(await isMountPoint(dir), false);
  });

  it('removes a namespace a process is still in; the process keeps it', async () => {
    const dir = path.join(tmp, 'c');
    const mgr = await NetnsManager.open(dir);
    const ns = await mgr.create('busy');
    const child = spawn('nsenter', [`--net=${ns}`, 'sleep', '30'], { stdio: 'ignore' });
    try {
      await new Promise((resolve) => child.once('spawn', resolve));
      await mgr.remove(ns);
      assert.ok(await missing(ns));
      assert.equal(await isMountPoint(ns), false);
    } finally {
      child.kill('SIGKILL');
      await mgr.close();
    }
  });

  it('resolves a symlinked dir, so a reopen does not stack mounts', async () => {
    const real = path.join(tmp, 'real-f');
    const link = path.join(tmp, 'link-f');
    await mkdir(real);
    await symlink(real, link);
    const first = await NetnsManager.open(link);
    assert.equal(first.dir, real);
    const ns = await first.create('kept');
    assert.equal(ns, path.join(real, 'kept'));
    const second = await NetnsManager.open(link);
    try {
      assert.equal((await listMountPoints()).filter((p) => p === real).length, 1);
    } finally {
      await second.remove(ns);
      await second.close();
      await first.close();
    }
    assert.equal(await isMountPoint(real), false);
  });

  it('runs a command in the same spawn once the namespace is pinned, and removes the namespace when it fails', async () => {
    const dir = path.join(tmp, 'h');
    const mgr = await NetnsManager.open(dir);
    try {
      const marker = path.join(tmp, 'h-marker');
      const ns = await mgr.create('with-cmd', { alsoRun: ['sh', '-c', `readlink /proc/self/ns/net > ${marker}`] });
      assert.ok(await mgr.exists(ns));
      // It ran inside the new namespace.
      const inside = (await run('readlink', ['/proc/self/ns/net'])).stdout.trim();
      assert.notEqual((await readFile(marker, 'utf8')).trim(), inside);
      await mgr.remove(ns);
      await assert.rejects(mgr.create('cmd-fails', { alsoRun: ['sh', '-c', 'echo nope >&2; exit 3'] }), (err: unknown) => err instanceof BerthError && err.code === 'ERR_NETNS_CREATE' && /nope/.test(err.message));
      assert.ok(await missing(path.join(dir, 'cmd-fails')));
    } finally {
      await mgr.close();
    }
  });

  it('removes a half-made (unmounted) file and rejects paths outside its dir', async () => {
    const dir = path.join(tmp, 'd');
    const mgr = await NetnsManager.open(dir);
    try {
      const stale = path.join(dir, 'stale');
      await writeFile(stale, '');
      assert.equal(await mgr.exists(stale), false);
      assert.deepEqual(await mgr.list(), [stale]);
      await mgr.remove(stale);
      assert.ok(await missing(stale));
      for (const bad of [path.join(tmp, 'elsewhere'), path.join(dir, 'x', 'y'), path.join(dir, '.hidden')]) {
        await assert.rejects(mgr.remove(bad), (err: unknown) => err instanceof BerthError && err.code === 'ERR_NETNS_INVALID');
      }
      await assert.rejects(mgr.create('../escape'), (err: unknown) => err instanceof BerthError && err.code === 'ERR_NETNS_INVALID');
    } finally {
      await mgr.close();
    }
  });

  it('keeps the dir mounted at close while namespaces are pinned, and reuses it on reopen', async () => {
    const dir = path.join(tmp, 'e');
    const first = await NetnsManager.open(dir);
    const ns = await first.create('survivor');
    await first.close();
    assert.ok(await isMountPoint(dir), 'pinned namespaces keep the dir mount');
    assert.ok(await isNetnsPinned(ns));

    const second = await NetnsManager.open(dir);
    try {
      assert.deepEqual(await second.list(), [ns]);
      assert.ok(await second.exists(ns));
      await second.remove(ns);
    } finally {
      await second.close();
    }
    // The reopened manager did not make the mount, but with no namespace pinned it goes at close.
    assert.equal(await isMountPoint(dir), false);
  });

  it('unmounts at close a dir mount a killed manager left, stacked ones too', async () => {
    const dir = path.join(tmp, 'g');
    await mkdir(dir);
    // What a berthd killed with -9 leaves: the dir bound onto itself (twice, to be thorough).
    await run('mount', ['--bind', dir, dir]);
    await run('mount', ['--bind', dir, dir]);
    const mgr = await NetnsManager.open(dir);
    await mgr.close();
    assert.equal(await isMountPoint(dir), false);
    await rm(dir, { recursive: true });
  });
});
