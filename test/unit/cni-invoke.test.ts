import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { pino } from 'pino';
import type { CniNetwork } from '../../src/cni/conf-loader.js';
import {
  addNetworkList,
  buildExecConfig,
  checkNetworkList,
  delNetworkList,
  type CniExecOptions,
  type CniResult,
} from '../../src/cni/invoke.js';
import { loopbackNetwork } from '../../src/cni/loopback.js';
import { BerthError } from '../../src/core/errors.js';
import { network, rand, SYSTEM_BIN } from './cni-helpers.js';

const run = promisify(execFile);
const log = pino({ level: 'silent' });

async function linkExists(name: string, netns?: string): Promise<boolean> {
  try {
    await run('ip', [...(netns ? ['-n', netns] : []), 'link', 'show', 'dev', name]);
    return true;
  } catch {
    return false;
  }
}

async function addrsIn(netns: string, ifName: string): Promise<{ flags: string[]; addrs: string[] }> {
  const { stdout } = await run('ip', ['-n', netns, '-j', 'addr', 'show', 'dev', ifName]);
  const [link] = JSON.parse(stdout) as Array<{ flags: string[]; addr_info: Array<{ local: string; prefixlen: number }> }>;
  assert.ok(link, `${ifName} exists in ${netns}`);
  return { flags: link.flags, addrs: link.addr_info.map((a) => `${a.local}/${a.prefixlen}`) };
}

function isBerthError(err: unknown, code: string): err is BerthError {
  return err instanceof BerthError && err.code === code;
}

describe('CNI invoke with real plugins in a real netns', () => {
  const netnsName = `berth-test-${rand(4)}`;
  const netnsPath = `/run/netns/${netnsName}`;
  const bridge = `berthtst${rand(3)}`;
  const third = 1 + (randomBytes(1)[0] ?? 0) % 120;
  let tmp: string;
  let opts: CniExecOptions;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'berth-cni-invoke-'));
    await run('ip', ['netns', 'add', netnsName]);
    opts = { binDirs: ['/nonexistent-berth-bin', SYSTEM_BIN], timeoutMs: 30_000, log };
  });

  after(async () => {
    await run('ip', ['link', 'del', bridge]).catch(() => {});
    await run('ip', ['netns', 'del', netnsName]).catch(() => {});
    await rm(tmp, { recursive: true, force: true });
  });

  function bridgeNet(name: string, subnet: string, dataDir: string, capabilities?: Record<string, boolean>): CniNetwork {
    return network({
      cniVersion: '1.0.0',
      name,
      plugins: [
        {
          type: 'bridge',
          bridge,
          isGateway: false,
          ipMasq: false,
          ...(capabilities ? { capabilities } : {}),
          ipam: { type: 'host-local', subnet, dataDir },
        },
      ],
    });
  }

  it('runs ADD, CHECK and DEL of the loopback plugin', async () => {
    const rt = { containerId: `lo${rand(4)}`, netns: netnsPath, ifName: 'lo' };
    const result = await addNetworkList(loopbackNetwork, rt, opts);
    try {
      assert.ok(result.ips?.some((ip) => ip.address === '127.0.0.1/8'), JSON.stringify(result));
      assert.ok((await addrsIn(netnsName, 'lo')).flags.includes('UP'));
      await checkNetworkList(loopbackNetwork, rt, result, opts);
    } finally {
      await delNetworkList(loopbackNetwork, rt, result, opts);
    }
    assert.ok(!(await addrsIn(netnsName, 'lo')).flags.includes('UP'), 'DEL brings lo down');
  });

  it('runs ADD, CHECK and DEL of a bridge + host-local list', async () => {
    const dataDir = await mkdtemp(path.join(tmp, 'ipam-'));
    const net = bridgeNet('berth-test-br', `10.250.${third}.0/24`, dataDir);
    const rt = { containerId: `br${rand(4)}`, netns: netnsPath, ifName: 'eth0', args: { IgnoreUnknown: '1', K8S_POD_NAME: 'p' } };
    let result: CniResult | undefined;
    try {
      result = await addNetworkList(net, rt, opts);
      const ip = result.ips?.[0]?.address ?? '';
      assert.match(ip, new RegExp(`^10\\.250\\.${third}\\.\\d+/24$`), JSON.stringify(result));
      assert.deepEqual((await addrsIn(netnsName, 'eth0')).addrs.filter((a) => a.startsWith('10.')), [ip]);
      assert.ok(await linkExists(bridge));
      await checkNetworkList(net, rt, result, opts);
    } finally {
      await delNetworkList(net, rt, result, opts);
    }
    assert.equal(await linkExists('eth0', netnsName), false, 'DEL removed the veth');
    const leases = (await readdir(path.join(dataDir, 'berth-test-br'))).filter((f) => /^\d/.test(f));
    assert.deepEqual(leases, [], 'DEL released the address');
  });

  it('passes capability args only to plugins that declare the capability', async () => {
    const dataDir = await mkdtemp(path.join(tmp, 'ipam-'));
    const override = [[{ subnet: `10.250.${third + 128}.0/24` }]];
    const declared = bridgeNet('berth-test-caps', `10.250.${third}.0/24`, dataDir, { ipRanges: true });
    const undeclared = bridgeNet('berth-test-nocaps', `10.250.${third}.0/24`, dataDir);
    const rt1 = { containerId: `cap${rand(4)}`, netns: netnsPath, ifName: 'eth1', capabilityArgs: { ipRanges: override } };
    const rt2 = { containerId: `nocap${rand(4)}`, netns: netnsPath, ifName: 'eth2', capabilityArgs: { ipRanges: override } };
    let r1: CniResult | undefined;
    let r2: CniResult | undefined;
    try {
      r1 = await addNetworkList(declared, rt1, opts);
      assert.match(r1.ips?.[0]?.address ?? '', new RegExp(`^10\\.250\\.${third + 128}\\.`), 'runtimeConfig.ipRanges used');
      r2 = await addNetworkList(undeclared, rt2, opts);
      assert.match(r2.ips?.[0]?.address ?? '', new RegExp(`^10\\.250\\.${third}\\.`), 'undeclared capability not passed');
    } finally {
      await delNetworkList(undeclared, rt2, r2, opts);
      await delNetworkList(declared, rt1, r1, opts);
    }
  });

  it('turns a plugin error result into a BerthError with plugin, network, container, code and msg', async () => {
    const dataDir = await mkdtemp(path.join(tmp, 'ipam-'));
    const net = bridgeNet('berth-test-bad', '10.250.0.0/33', dataDir);
    const rt = { containerId: `bad${rand(4)}`, netns: netnsPath, ifName: 'eth3' };
    try {
      await assert.rejects(addNetworkList(net, rt, opts), (err: unknown) => {
        assert.ok(isBerthError(err, 'ERR_CNI_PLUGIN_FAILED'), String(err));
        assert.equal(err.context['plugin'], 'bridge');
        assert.equal(err.context['network'], 'berth-test-bad');
        assert.equal(err.context['containerId'], rt.containerId);
        assert.equal(typeof err.context['cniCode'], 'number');
        assert.match(String(err.context['cniMsg']), /invalid CIDR/);
        assert.match(err.message, /bridge ADD on network berth-test-bad/);
        return true;
      });
    } finally {
      await delNetworkList(net, rt, undefined, opts).catch(() => {});
    }
  });

  it('fails with ERR_CNI_PLUGIN_NOT_FOUND naming the bin dirs', async () => {
    const net = network({ cniVersion: '1.0.0', name: 'nf', plugins: [{ type: 'berth-no-such-plugin' }] });
    await assert.rejects(
      addNetworkList(net, { containerId: 'c1', netns: netnsPath, ifName: 'eth0' }, opts),
      (err: unknown) => isBerthError(err, 'ERR_CNI_PLUGIN_NOT_FOUND') && err.message.includes('/nonexistent-berth-bin'),
    );
  });
});

describe('CNI invoke protocol (recording plugins)', () => {
  let tmp: string;
  let bin: string;
  let record: string;

  /** A plugin that records its env and stdin, then prints a result naming itself. */
  async function recordingPlugin(name: string): Promise<void> {
    const script = `#!/bin/sh
set -e
input=$(cat)
n=$(ls "${record}" | grep -c '[.]json$' || true)
printf '%s' "$input" > "${record}/$n-${name}-$CNI_COMMAND.json"
env | grep '^CNI_' | sort > "${record}/$n-${name}-$CNI_COMMAND.env"
if [ "$CNI_COMMAND" = ADD ]; then
  printf '{"cniVersion":"1.0.0","ips":[{"address":"192.0.2.%s/24"}],"by":"${name}"}' "$(printf '%s' ${name} | wc -c)"
fi
`;
    await writeFile(path.join(bin, name), script);
    await chmod(path.join(bin, name), 0o755);
  }

  async function scriptPlugin(name: string, body: string): Promise<void> {
    await writeFile(path.join(bin, name), `#!/bin/sh\n${body}\n`);
    await chmod(path.join(bin, name), 0o755);
  }

  async function records(): Promise<Array<{ file: string; stdin: Record<string, unknown>; env: Record<string, string> }>> {
    const files = (await readdir(record)).filter((f) => f.endsWith('.json')).sort((a, b) => parseInt(a) - parseInt(b));
    return Promise.all(
      files.map(async (file) => {
        const stdin = JSON.parse(await readFile(path.join(record, file), 'utf8')) as Record<string, unknown>;
        const envText = await readFile(path.join(record, file.replace(/\.json$/, '.env')), 'utf8');
        const env = Object.fromEntries(
          envText
            .split('\n')
            .filter(Boolean)
            .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
        );
        return { file, stdin, env };
      }),
    );
  }

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'berth-cni-proto-'));
    bin = path.join(tmp, 'bin');
    record = path.join(tmp, 'record');
    await mkdir(bin);
    await mkdir(record);
    await recordingPlugin('one');
    await recordingPlugin('three');
  });

  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  const chain = () =>
    network({
      cniVersion: '1.0.0',
      name: 'rec',
      plugins: [
        { type: 'one', capabilities: { portMappings: true, dns: false }, custom: { a: 1 } },
        { type: 'three', capabilities: { bandwidth: true } },
      ],
    });

  it('builds the exec config: name, cniVersion, declared runtimeConfig, prevResult, no capabilities', () => {
    const net = chain();
    const [one] = net.plugins;
    assert.ok(one);
    const conf = buildExecConfig(net, one, { cniVersion: '1.0.0' }, { portMappings: [{ hostPort: 80 }], dns: { servers: [] }, ipRanges: [] });
    assert.deepEqual(conf, {
      type: 'one',
      custom: { a: 1 },
      name: 'rec',
      cniVersion: '1.0.0',
      runtimeConfig: { portMappings: [{ hostPort: 80 }] },
      prevResult: { cniVersion: '1.0.0' },
    });
    assert.equal('runtimeConfig' in buildExecConfig(net, one, undefined, { bandwidth: {} }), false);
  });

  it('chains results on ADD, passes the cached result on CHECK and DEL, and DELs in reverse', async () => {
    await rm(record, { recursive: true, force: true });
    await mkdir(record);
    const net = chain();
    const rt = {
      containerId: 'abc123',
      netns: '/proc/self/ns/net',
      ifName: 'eth0',
      args: { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'web' },
      capabilityArgs: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }], bandwidth: { ingressRate: 1000 } },
    };
    const result = await addNetworkList(net, rt, { binDirs: [bin] });
    assert.equal(result['by'], 'three', 'ADD returns the last plugin result');
    await checkNetworkList(net, rt, result, { binDirs: [bin] });
    await delNetworkList(net, rt, result, { binDirs: [bin] });
    const calls = await records();
    assert.deepEqual(
      calls.map((c) => c.file),
      ['0-one-ADD.json', '1-three-ADD.json', '2-one-CHECK.json', '3-three-CHECK.json', '4-three-DEL.json', '5-one-DEL.json'],
    );
    const [addOne, addThree, checkOne, , delThree, delOne] = calls;
    assert.ok(addOne && addThree && checkOne && delThree && delOne);
    assert.deepEqual(addOne.env, {
      CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web',
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'abc123',
      CNI_IFNAME: 'eth0',
      CNI_NETNS: '/proc/self/ns/net',
      CNI_PATH: bin,
    });
    assert.equal(addOne.stdin['name'], 'rec');
    assert.equal(addOne.stdin['cniVersion'], '1.0.0');
    assert.equal('prevResult' in addOne.stdin, false, 'first plugin has no prevResult');
    assert.equal('capabilities' in addOne.stdin, false);
    assert.deepEqual(addOne.stdin['runtimeConfig'], { portMappings: rt.capabilityArgs.portMappings });
    assert.deepEqual(addThree.stdin['runtimeConfig'], { bandwidth: rt.capabilityArgs.bandwidth });
    assert.equal((addThree.stdin['prevResult'] as Record<string, unknown>)['by'], 'one', 'ADD chains the previous result');
    assert.deepEqual(checkOne.stdin['prevResult'], result);
    assert.deepEqual(delThree.stdin['prevResult'], result);
    assert.deepEqual(delOne.stdin['prevResult'], result);
    assert.equal(delOne.env['CNI_COMMAND'], 'DEL');
  });

  it('skips CHECK when disableCheck is set and refuses CHECK before spec 0.4.0', async () => {
    await rm(record, { recursive: true, force: true });
    await mkdir(record);
    const rt = { containerId: 'c', netns: '/proc/self/ns/net', ifName: 'eth0' };
    const disabled = network({ cniVersion: '1.0.0', name: 'd', disableCheck: true, plugins: [{ type: 'one' }] });
    await checkNetworkList(disabled, rt, {}, { binDirs: [bin] });
    assert.deepEqual(await records(), []);
    const old = network({ cniVersion: '0.3.1', name: 'o', plugins: [{ type: 'one' }] });
    await assert.rejects(checkNetworkList(old, rt, {}, { binDirs: [bin] }), (err: unknown) =>
      isBerthError(err, 'ERR_CNI_CHECK_UNSUPPORTED'),
    );
    // Before 0.4.0 DEL gets no prevResult either.
    await delNetworkList(old, rt, { cniVersion: '0.3.1' }, { binDirs: [bin] });
    const [del] = await records();
    assert.ok(del);
    assert.equal('prevResult' in del.stdin, false);
  });

  it('kills a plugin that exceeds its timeout', async () => {
    const pidFile = path.join(tmp, 'slow.pid');
    await scriptPlugin('slow', `echo $$ > ${pidFile}\nexec sleep 30`);
    const net = network({ cniVersion: '1.0.0', name: 'slow', plugins: [{ type: 'slow' }] });
    const started = Date.now();
    await assert.rejects(
      addNetworkList(net, { containerId: 'c', netns: '/proc/self/ns/net', ifName: 'eth0' }, { binDirs: [bin], timeoutMs: 300 }),
      (err: unknown) => isBerthError(err, 'ERR_CNI_PLUGIN_TIMEOUT') && err.kind === 'deadline-exceeded',
    );
    assert.ok(Date.now() - started < 5_000);
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    await new Promise((r) => setTimeout(r, 100));
    assert.throws(() => process.kill(pid, 0), /ESRCH/, 'the plugin process is gone');
  });

  it('stops a plugin when the caller aborts', async () => {
    await scriptPlugin('hang', 'exec sleep 30');
    const net = network({ cniVersion: '1.0.0', name: 'hang', plugins: [{ type: 'hang' }] });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(
      delNetworkList(net, { containerId: 'c', netns: '', ifName: 'eth0' }, undefined, { binDirs: [bin], signal: ac.signal }),
      (err: unknown) => isBerthError(err, 'ERR_CNI_PLUGIN_CANCELLED') && err.kind === 'cancelled',
    );
  });

  it('reports a failure without an error object by its stderr, and maps retryable codes to unavailable', async () => {
    await scriptPlugin('crash', 'echo "boom: no bridge" >&2\nexit 3');
    await scriptPlugin('busy', `printf '{"cniVersion":"1.0.0","code":11,"msg":"try again later","details":"lock held"}'\nexit 1`);
    const rt = { containerId: 'c', netns: '/proc/self/ns/net', ifName: 'eth0' };
    const crash = network({ cniVersion: '1.0.0', name: 'crash', plugins: [{ type: 'crash' }] });
    await assert.rejects(addNetworkList(crash, rt, { binDirs: [bin] }), (err: unknown) => {
      assert.ok(isBerthError(err, 'ERR_CNI_PLUGIN_FAILED'));
      assert.match(err.message, /failed \(exit status 3\): boom: no bridge/);
      assert.equal(err.context['exitCode'], 3);
      return true;
    });
    const busy = network({ cniVersion: '1.0.0', name: 'busy', plugins: [{ type: 'busy' }] });
    await assert.rejects(addNetworkList(busy, rt, { binDirs: [bin] }), (err: unknown) => {
      assert.ok(isBerthError(err, 'ERR_CNI_PLUGIN_FAILED'));
      assert.equal(err.kind, 'unavailable');
      assert.equal(err.context['cniCode'], 11);
      assert.equal(err.context['cniMsg'], 'try again later');
      assert.equal(err.context['cniDetails'], 'lock held');
      return true;
    });
  });

  it('rejects an ADD result that is not JSON', async () => {
    await scriptPlugin('garbage', 'echo not-json');
    const net = network({ cniVersion: '1.0.0', name: 'g', plugins: [{ type: 'garbage' }] });
    await assert.rejects(
      addNetworkList(net, { containerId: 'c', netns: '/proc/self/ns/net', ifName: 'eth0' }, { binDirs: [bin] }),
      (err: unknown) => isBerthError(err, 'ERR_CNI_INVALID_RESULT'),
    );
  });

  it('rejects invalid runtime parameters before running anything', async () => {
    const net = chain();
    const cases = [
      { containerId: '', netns: '/proc/self/ns/net', ifName: 'eth0' },
      { containerId: '-bad', netns: '/proc/self/ns/net', ifName: 'eth0' },
      { containerId: 'c', netns: '/proc/self/ns/net', ifName: 'averyveryverylongname' },
      { containerId: 'c', netns: '/proc/self/ns/net', ifName: 'eth/0' },
      { containerId: 'c', netns: '', ifName: 'eth0' },
      { containerId: 'c', netns: '/proc/self/ns/net', ifName: 'eth0', args: { 'A;B': '1' } },
    ];
    for (const rt of cases) {
      await assert.rejects(addNetworkList(net, rt, { binDirs: [bin] }), (err: unknown) =>
        isBerthError(err, 'ERR_CNI_INVALID_RUNTIME_CONF'),
      );
    }
  });
});
