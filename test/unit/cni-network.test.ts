import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { z } from 'zod';
import { CniNetworkManager, cniConfigSchema, cniNetworkRegistration, type CniStatus } from '../../src/cni/network.js';
import type { InitContext, PluginMeta } from '../../src/core/plugin/types.js';
import { PluginType } from '../../src/core/plugin/types.js';

const log = pino({ level: 'silent' });

const conflist = (name: string) => JSON.stringify({ cniVersion: '1.0.0', name, plugins: [{ type: 'bridge', bridge: 'cni0' }] });

/** Poll until `check` holds; returns the elapsed ms, fails after `limitMs`. */
async function within(limitMs: number, what: string, check: () => boolean): Promise<number> {
  const started = performance.now();
  while (!check()) {
    if (performance.now() - started > limitMs) assert.fail(`${what} not within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return performance.now() - started;
}

describe('network.cni', () => {
  let root: string;
  const open: CniNetworkManager[] = [];

  async function manager(confDir: string, maxConfNum = 1): Promise<CniNetworkManager> {
    const m = await CniNetworkManager.open({ confDir, binDirs: ['/usr/lib/cni'], maxConfNum, log });
    open.push(m);
    return m;
  }

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'berth-cni-net-'));
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((m) => m.close()));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('is not ready on an empty conf dir, ready within 1 s of a conflist appearing, not ready once it is gone', async () => {
    const dir = await mkdtemp(path.join(root, 'net.d-'));
    const m = await manager(dir);
    const seen: CniStatus[] = [];
    m.onChange((_networks, status) => seen.push(status));
    assert.deepEqual(m.status(), {
      ready: false,
      reason: 'NetworkPluginNotReady',
      message: `cni config uninitialized: no network config found in ${dir}`,
    });
    assert.deepEqual(
      m.networks().map((n) => n.name),
      ['cni-loopback'],
    );

    await writeFile(path.join(dir, '10-test.conflist'), conflist('testnet'));
    const upMs = await within(1000, 'ready', () => m.status().ready);
    assert.ok(upMs < 1000);
    assert.deepEqual(m.status(), { ready: true });
    assert.deepEqual(
      m.networks().map((n) => n.name),
      ['cni-loopback', 'testnet'],
    );
    assert.ok(seen.some((s) => s.ready));

    await rm(path.join(dir, '10-test.conflist'));
    await within(1000, 'not ready', () => !m.status().ready);
    assert.equal(m.status().reason, 'NetworkPluginNotReady');
    assert.deepEqual(
      m.networks().map((n) => n.name),
      ['cni-loopback'],
    );
  });

  it('picks up changes to a loaded file and renames, first file wins', async () => {
    const dir = await mkdtemp(path.join(root, 'net.d-'));
    await writeFile(path.join(dir, '20-b.conflist'), conflist('bee'));
    const m = await manager(dir);
    assert.equal(m.networks()[1]?.name, 'bee');
    await writeFile(path.join(dir, '20-b.conflist'), conflist('bee2'));
    await within(1000, 'changed network', () => m.networks()[1]?.name === 'bee2');
    await writeFile(path.join(dir, '10-a.conf'), JSON.stringify({ cniVersion: '0.4.0', name: 'ay', type: 'ptp' }));
    await within(1000, 'earlier file first', () => m.networks()[1]?.name === 'ay');
    await rename(path.join(dir, '10-a.conf'), path.join(dir, '30-a.conf'));
    await within(1000, 'renamed file sorts last', () => m.networks()[1]?.name === 'bee2');
  });

  it('watches a conf dir that does not exist yet, through its creation, removal and re-creation', async () => {
    const base = await mkdtemp(path.join(root, 'missing-'));
    const dir = path.join(base, 'etc', 'cni', 'net.d');
    const m = await manager(dir);
    assert.equal(m.status().ready, false);
    assert.match(m.status().message ?? '', new RegExp(`no network config found in ${dir}`));

    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, '10-late.conflist'), conflist('late'));
    await within(1000, 'ready after creation', () => m.status().ready);

    await rm(path.join(base, 'etc'), { recursive: true });
    await within(1000, 'not ready after removal', () => !m.status().ready);

    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, '10-again.conflist'), conflist('again'));
    await within(1000, 'ready after re-creation', () => m.status().ready && m.networks()[1]?.name === 'again');
  });

  it('reports the invalid files when none is valid, and recovers when one is fixed', async () => {
    const dir = await mkdtemp(path.join(root, 'net.d-'));
    await writeFile(path.join(dir, '10-broken.conflist'), '{"name": ');
    await writeFile(path.join(dir, '20-empty.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'e', plugins: [] }));
    const m = await manager(dir);
    const status = m.status();
    assert.equal(status.ready, false);
    assert.match(status.message ?? '', /^cni config uninitialized: no valid network config found in /);
    assert.match(status.message ?? '', /10-broken\.conflist: invalid JSON/);
    assert.match(status.message ?? '', /20-empty\.conflist: no plugins in list/);
    await writeFile(path.join(dir, '10-broken.conflist'), conflist('fixed'));
    await within(1000, 'ready after fix', () => m.status().ready);
  });

  it('loads up to max_conf_num networks, loopback first, and describes them with interface names', async () => {
    const dir = await mkdtemp(path.join(root, 'net.d-'));
    for (const n of ['a', 'b', 'c']) await writeFile(path.join(dir, `10-${n}.conflist`), conflist(n));
    const m = await manager(dir, 2);
    assert.deepEqual(
      m.networks().map((n) => n.name),
      ['cni-loopback', 'a', 'b'],
    );
    assert.deepEqual(
      m.attachments().map((a) => [a.network.name, a.ifName]),
      [
        ['cni-loopback', 'lo'],
        ['a', 'eth0'],
        ['b', 'eth1'],
      ],
    );
    const described = m.describe() as { PluginConfDir: string; Networks: Array<{ Config: { Name: string; Source: string }; IFName: string }> };
    assert.equal(described.PluginConfDir, dir);
    assert.deepEqual(
      described.Networks.map((n) => [n.Config.Name, n.IFName]),
      [
        ['cni-loopback', 'lo'],
        ['a', 'eth0'],
        ['b', 'eth1'],
      ],
    );
    assert.equal(described.Networks[1]?.Config.Source, conflist('a'));
    assert.deepEqual(m.execOptions({ timeoutMs: 5 }).binDirs, ['/usr/lib/cni']);
  });

  it('stops watching on close', async () => {
    const dir = await mkdtemp(path.join(root, 'net.d-'));
    const m = await manager(dir);
    let calls = 0;
    m.onChange(() => calls++);
    await m.close();
    await writeFile(path.join(dir, '10-after.conflist'), conflist('after'));
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(calls, 0);
    assert.equal(m.status().ready, false);
  });

  it('registers as network.cni with a described, defaulted config and publishes its dirs', async () => {
    assert.equal(cniNetworkRegistration.type, PluginType.Network);
    assert.equal(cniNetworkRegistration.id, 'cni');
    assert.deepEqual(cniConfigSchema.parse({}), {
      conf_dir: '/etc/cni/net.d',
      bin_dirs: ['/opt/cni/bin', '/usr/lib/cni'],
      max_conf_num: 1,
    });
    for (const [key, field] of Object.entries(cniConfigSchema.shape)) {
      assert.ok((field as z.ZodType).description, `${key} has a description`);
    }
    assert.throws(() => cniConfigSchema.parse({ max_conf_num: -1 }));

    const dir = await mkdtemp(path.join(root, 'net.d-'));
    await writeFile(path.join(dir, '10-reg.conflist'), conflist('reg'));
    const published: PluginMeta[] = [];
    const config = cniConfigSchema.parse({ conf_dir: dir, bin_dirs: ['/a', '/b'], max_conf_num: 0 });
    const ctx = {
      type: PluginType.Network,
      id: 'cni',
      rootDir: root,
      stateDir: root,
      daemonRoot: root,
      daemonState: root,
      config,
      log,
      meta: (meta: PluginMeta) => published.push(meta),
      get: () => assert.fail('network.cni needs no other plugin'),
      getById: () => assert.fail('network.cni needs no other plugin'),
      getAll: () => assert.fail('network.cni needs no other plugin'),
      records: () => [],
    } satisfies InitContext<typeof config>;
    const m = await cniNetworkRegistration.init(ctx);
    open.push(m);
    assert.equal(m.status().ready, true);
    assert.deepEqual(published, [{ exports: { conf_dir: dir, bin_dirs: '/a:/b', max_conf_num: '0' } }]);
  });
});
