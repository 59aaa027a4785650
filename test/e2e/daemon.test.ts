import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BERTHD_V8_FLAGS } from '../../src/cmd/node-flags.js';
import { CgroupDriver, type StatusResponse, type VersionResponse } from '../../src/generated/api.js';
import { bridgeConflist, call, runBerthd, startBerthd, waitFor, type Berthd } from './harness.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

function condition(res: StatusResponse, type: string) {
  const found = res.status?.conditions.find((c) => c.type === type);
  assert.ok(found, `condition ${type} missing`);
  return found;
}

async function networkReady(d: Berthd): Promise<boolean> {
  return condition(await call<object, StatusResponse>(d.runtime, 'status', { verbose: false }), 'NetworkReady').status;
}

describe('berthd serving the CRI', () => {
  let d: Berthd;
  before(async () => {
    d = await startBerthd();
  });
  after(async () => {
    await d.dispose();
  });

  test('Version names berth, its package version and CRI v1', async () => {
    const res = await call<object, VersionResponse>(d.runtime, 'version', { version: '' });
    assert.equal(res.runtimeName, 'berth');
    assert.equal(res.runtimeVersion, pkg.version);
    assert.equal(res.runtimeApiVersion, 'v1');
  });

  test('berthd runs under node with its V8 flags, in the process it was started as', () => {
    // berthd.ts replaced itself (same pid) with node started with BERTHD_V8_FLAGS.
    const argv = readFileSync(`/proc/${d.proc.pid}/cmdline`, 'utf8').split('\0');
    for (const flag of BERTHD_V8_FLAGS) assert.ok(argv.includes(flag), `${flag} missing from ${argv.join(' ')}`);
    assert.ok(argv.some((a) => a.endsWith('/cmd/berthd.js')));
  });

  test('the socket is 0660', async () => {
    const st = await stat(d.socket);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o660);
  });

  test('NetworkReady follows the CNI conf dir', async () => {
    const res = await call<object, StatusResponse>(d.runtime, 'status', { verbose: false });
    assert.equal(condition(res, 'RuntimeReady').status, true);
    const net = condition(res, 'NetworkReady');
    assert.equal(net.status, false);
    assert.equal(net.reason, 'NetworkPluginNotReady');
    assert.match(net.message, new RegExp(d.confDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));

    const file = join(d.confDir, '10-berth.conflist');
    await writeFile(file, bridgeConflist());
    await waitFor('NetworkReady true', async () => ((await networkReady(d)) ? true : undefined), 3000);
    await unlink(file);
    await waitFor('NetworkReady false', async () => ((await networkReady(d)) ? undefined : true), 3000);
  });

  test('verbose Status carries the effective config and the plugin list', async () => {
    const res = await call<object, StatusResponse>(d.runtime, 'status', { verbose: true });
    const config = JSON.parse(res.info['config'] ?? '{}') as { root: string; grpc: { address: string } };
    assert.equal(config.root, d.root);
    assert.equal(config.grpc.address, d.socket);
    const plugins = JSON.parse(res.info['plugins'] ?? '[]') as { key: string; status: { state: string } }[];
    for (const key of ['network.cni', 'cri.service', 'grpc.cri']) {
      assert.equal(plugins.find((p) => p.key === key)?.status.state, 'ok', `${key} not ok`);
    }
  });

  test('UpdateRuntimeConfig keeps the pod CIDR and rejects a malformed one', async () => {
    await call(d.runtime, 'updateRuntimeConfig', { runtimeConfig: { networkConfig: { podCidr: '10.244.0.0/16,fd00::/64' } } });
    const res = await call<object, StatusResponse>(d.runtime, 'status', { verbose: true });
    assert.deepEqual(JSON.parse(res.info['runtimeConfig'] ?? '{}'), { podCidrs: ['10.244.0.0/16', 'fd00::/64'] });
    await assert.rejects(
      call(d.runtime, 'updateRuntimeConfig', { runtimeConfig: { networkConfig: { podCidr: '10.244.0.0/99' } } }),
      (err: ServiceError) => err.code === GrpcStatus.INVALID_ARGUMENT && /10\.244\.0\.0\/99/.test(err.details),
    );
  });

  test('RuntimeConfig reports the cgroupfs driver', async () => {
    const res = await call<object, { linux?: { cgroupDriver: CgroupDriver } }>(d.runtime, 'runtimeConfig', {});
    assert.equal(res.linux?.cgroupDriver, CgroupDriver.CGROUPFS);
  });

  test('an RPC berth does not implement answers UNIMPLEMENTED naming it', async () => {
    await assert.rejects(call(d.runtime, 'checkpointContainer', { containerId: 'x', location: '', timeout: 0n }), (err: ServiceError) => {
      assert.equal(err.code, GrpcStatus.UNIMPLEMENTED);
      assert.match(err.details, /CheckpointContainer/);
      return true;
    });
  });

  test('a second berthd on the same socket fails and leaves the first serving', async () => {
    const other = await mkdtemp(join(tmpdir(), 'berth-e2e-'));
    try {
      const res = await runBerthd(['--address', d.socket, '--root', join(other, 'root'), '--state', join(other, 'state'), '--cni-conf-dir', d.confDir]);
      assert.notEqual(res.code, 0);
      assert.match(res.stderr, /another process is serving/);
      await call(d.runtime, 'version', {});
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });
});

describe('berthd lifecycle', () => {
  test('the pod CIDR survives a restart, SIGTERM exits 0 and removes the socket', async () => {
    const first = await startBerthd();
    let second: Berthd | undefined;
    try {
      await call(first.runtime, 'updateRuntimeConfig', { runtimeConfig: { networkConfig: { podCidr: '10.88.0.0/16' } } });
      assert.equal(await first.stop('SIGTERM'), 0);
      await assert.rejects(stat(first.socket), { code: 'ENOENT' });
      second = await startBerthd({ dir: first.dir });
      const res = await call<object, StatusResponse>(second.runtime, 'status', { verbose: true });
      assert.deepEqual(JSON.parse(res.info['runtimeConfig'] ?? '{}'), { podCidrs: ['10.88.0.0/16'] });
    } finally {
      await (second ?? first).dispose();
    }
  });

  test('temporary mounts a crashed run left under <state>/tmpmounts are unmounted at start', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-e2e-'));
    let d: Berthd | undefined;
    const target = join(dir, 'state', 'tmpmounts', 'left-behind');
    try {
      await mkdir(target, { recursive: true });
      const mounted = spawnSync('mount', ['-t', 'tmpfs', 'berth-test', target]);
      assert.equal(mounted.status, 0, mounted.stderr.toString());
      d = await startBerthd({ dir });
      const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
      assert.ok(!mountinfo.includes(target), 'the left-behind tmpfs is still mounted');
    } finally {
      spawnSync('umount', [target]);
      if (d) await d.dispose();
      else await rm(dir, { recursive: true, force: true });
    }
  });

  test('a stale socket left by a dead process is replaced', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-e2e-'));
    let d: Berthd | undefined;
    try {
      const sock = join(dir, 'berth.sock');
      // python binds and exits without unlinking: a socket file nobody answers on.
      const py = spawnSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(sock)})`]);
      assert.equal(py.status, 0, py.stderr.toString());
      assert.ok((await stat(sock)).isSocket());
      d = await startBerthd({ dir });
      await call(d.runtime, 'version', {});
    } finally {
      if (d) await d.dispose();
      else await rm(dir, { recursive: true, force: true });
    }
  });

  test('a bad config file is a clear error and a non-zero exit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-e2e-'));
    try {
      const file = join(dir, 'config.toml');
      const base = ['--address', join(dir, 's.sock'), '--root', join(dir, 'root'), '--state', join(dir, 'state'), '--config', file];

      await writeFile(file, 'root = [unclosed\n');
      let res = await runBerthd(base);
      assert.equal(res.code, 1);
      assert.match(res.stderr, /not valid TOML at line 1/);

      await writeFile(file, 'log_level = "loud"\n');
      res = await runBerthd(base);
      assert.equal(res.code, 1);
      assert.match(res.stderr, /invalid config in .*config\.toml: log_level/);

      await writeFile(file, '[plugins."network.cni"]\nmax_conf_num = "many"\n');
      res = await runBerthd(base);
      assert.equal(res.code, 1);
      assert.match(res.stderr, /network\.cni/);

      res = await runBerthd([...base.slice(0, -1), join(dir, 'missing.toml')]);
      assert.equal(res.code, 1);
      assert.match(res.stderr, /cannot read config file .*missing\.toml: no such file/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('config default prints a commented config that berthd accepts', async () => {
    const res = await runBerthd(['config', 'default']);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^# /m);
    assert.match(res.stdout, /\[plugins\."network\.cni"\]/);
    assert.match(res.stdout, /conf_dir = "\/etc\/cni\/net\.d"/);
    const dir = await mkdtemp(join(tmpdir(), 'berth-e2e-'));
    try {
      const d = await startBerthd({ dir, configToml: res.stdout });
      await d.dispose();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('deploy/berth.toml is exactly the default config', async () => {
    const res = await runBerthd(['config', 'default']);
    const shipped = readFileSync(new URL('../../../deploy/berth.toml', import.meta.url), 'utf8');
    assert.equal(shipped, res.stdout, 'regenerate with: npx berthd config default > deploy/berth.toml');
  });

  test('--help and --version', async () => {
    const help = await runBerthd(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--cni-conf-dir/);
    const version = await runBerthd(['--version']);
    assert.equal(version.stdout.trim(), `berthd ${pkg.version}`);
  });
});
