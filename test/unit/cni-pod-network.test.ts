import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { pino } from 'pino';
import type { CniNetwork } from '../../src/cni/conf-loader.js';
import type { CniExecOptions } from '../../src/cni/invoke.js';
import { loopbackNetwork } from '../../src/cni/loopback.js';
import { NetnsManager } from '../../src/cni/netns.js';
import type { CniAttachment } from '../../src/cni/network.js';
import {
  bandwidthFromAnnotations,
  parseQuantity,
  podCapabilityArgs,
  podIpsOf,
  PodNetwork,
  type PodNetworkParams,
  type PodNetworkRecord,
  type PodNetworkSource,
} from '../../src/cni/pod-network.js';
import { BerthError } from '../../src/core/errors.js';
import { listMountPoints } from '../../src/core/mountinfo.js';
import { network, rand, SYSTEM_BIN } from './cni-helpers.js';
import { cniNatRules, dropNewCniNatChains } from '../fixtures/iptables.js';

const run = promisify(execFile);
const log = pino({ level: 'silent' });
const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';

/** What CniNetworkManager gives PodNetwork: loopback, then the networks as eth0, eth1... */
function source(networks: readonly CniNetwork[], binDirs: readonly string[] = [SYSTEM_BIN]): PodNetworkSource {
  const attachments: CniAttachment[] = [
    { network: loopbackNetwork, ifName: 'lo' },
    ...networks.map((n, i) => ({ network: n, ifName: `eth${i}` })),
  ];
  return {
    attachments: () => attachments,
    execOptions: (extra = {}): CniExecOptions => ({ log, timeoutMs: 30_000, ...extra, binDirs }),
  };
}

function isCode(code: string): (err: unknown) => boolean {
  return (err) => err instanceof BerthError && err.code === code;
}

async function succeeds(cmd: string, args: string[]): Promise<boolean> {
  try {
    await run(cmd, args);
    return true;
  } catch {
    return false;
  }
}

/** IPs host-local has allocated in a data dir (its files named by IP). */
async function allocated(dataDir: string, netName: string): Promise<string[]> {
  try {
    return (await readdir(path.join(dataDir, netName))).filter((f) => /^[0-9.]+$|:/.test(f));
  } catch {
    return [];
  }
}

async function bridgePorts(bridge: string): Promise<string[]> {
  const { stdout } = await run('ip', ['-j', 'link', 'show', 'master', bridge]).catch(() => ({ stdout: '[]' }));
  return (JSON.parse(stdout || '[]') as Array<{ ifname: string }>).map((l) => l.ifname);
}

function httpGet(port: number, urlPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, timeout: 1000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

describe('pod networking helpers', () => {
  it('parses Kubernetes quantities as Quantity.Value() does', () => {
    assert.equal(parseQuantity('10M'), 10_000_000);
    assert.equal(parseQuantity('1Gi'), 2 ** 30);
    assert.equal(parseQuantity('1e6'), 1_000_000);
    assert.equal(parseQuantity('1.5k'), 1500);
    assert.equal(parseQuantity('100m'), 1);
    assert.equal(parseQuantity('2500'), 2500);
    assert.throws(() => parseQuantity('10 Mbit'), isCode('ERR_POD_NETWORK_BANDWIDTH'));
    assert.throws(() => parseQuantity(''), isCode('ERR_POD_NETWORK_BANDWIDTH'));
  });

  it('reads bandwidth annotations with kubelet bounds', () => {
    assert.equal(bandwidthFromAnnotations({ other: 'x' }), undefined);
    assert.deepEqual(bandwidthFromAnnotations({ 'kubernetes.io/ingress-bandwidth': '10M' }), {
      ingressRate: 10_000_000,
      ingressBurst: 4_294_967_295,
    });
    assert.deepEqual(bandwidthFromAnnotations({ 'kubernetes.io/egress-bandwidth': '1G', 'kubernetes.io/ingress-bandwidth': '2k' }), {
      ingressRate: 2000,
      ingressBurst: 4_294_967_295,
      egressRate: 1_000_000_000,
      egressBurst: 4_294_967_295,
    });
    assert.throws(() => bandwidthFromAnnotations({ 'kubernetes.io/ingress-bandwidth': '10' }), isCode('ERR_POD_NETWORK_BANDWIDTH'));
    assert.throws(() => bandwidthFromAnnotations({ 'kubernetes.io/egress-bandwidth': '2P' }), isCode('ERR_POD_NETWORK_BANDWIDTH'));
  });

  it('builds capability args from CRI values and rejects bad ones', () => {
    const base = { podId: 'p', namespace: 'ns', name: 'n', uid: 'u', netnsPath: '/x' };
    assert.deepEqual(podCapabilityArgs(base), {});
    assert.deepEqual(
      podCapabilityArgs({
        ...base,
        portMappings: [
          { containerPort: 80, hostPort: 8080, protocol: 0, hostIp: '' },
          { containerPort: 53, hostPort: 5353, protocol: 1, hostIp: '127.0.0.1' },
          { containerPort: 9, hostPort: 0, protocol: 0 },
          { containerPort: 7, hostPort: 7007, protocol: 'SCTP' },
        ],
        podCidrs: ['10.244.1.0/24', 'fd00:1::/64'],
        dns: { servers: ['10.96.0.10'], searches: ['svc.cluster.local'] },
        bandwidth: { ingressRate: 1000 },
      }),
      {
        portMappings: [
          { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
          { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '127.0.0.1' },
          { hostPort: 7007, containerPort: 7, protocol: 'sctp' },
        ],
        bandwidth: { ingressRate: 1000, ingressBurst: 4_294_967_295 },
        ipRanges: [[{ subnet: '10.244.1.0/24' }], [{ subnet: 'fd00:1::/64' }]],
        dns: { servers: ['10.96.0.10'], searches: ['svc.cluster.local'], options: [] },
      },
    );
    const code = isCode('ERR_POD_NETWORK_PORT_MAPPING');
    assert.throws(() => podCapabilityArgs({ ...base, portMappings: [{ containerPort: 1, hostPort: 2, protocol: 7 }] }), code);
    assert.throws(() => podCapabilityArgs({ ...base, portMappings: [{ containerPort: 0, hostPort: 2 }] }), code);
    assert.throws(() => podCapabilityArgs({ ...base, portMappings: [{ containerPort: 1, hostPort: 70000 }] }), code);
    assert.throws(() => podCapabilityArgs({ ...base, portMappings: [{ containerPort: 1, hostPort: 2, hostIp: 'localhost' }] }), code);
    assert.throws(() => podCapabilityArgs({ ...base, podCidrs: ['10.0.0.0/33'] }), isCode('ERR_POD_NETWORK_POD_CIDR'));
  });

  it("takes the pod IPs from eth0's sandbox interface, IPv4 first", () => {
    const record = {
      attachments: [
        { network: 'lo', ifName: 'lo', config: '', result: { ips: [{ address: '127.0.0.1/8', interface: 0 }], interfaces: [{ name: 'lo', sandbox: '/ns' }] } },
        {
          network: 'n',
          ifName: 'eth0',
          config: '',
          result: {
            interfaces: [{ name: 'cni0' }, { name: 'eth0', sandbox: '/ns' }],
            ips: [
              { address: '10.0.0.1/24', interface: 0 },
              { address: 'fd00::5/64', interface: 1 },
              { address: '10.0.0.5/24', interface: 1 },
            ],
          },
        },
        { network: 'm', ifName: 'eth1', config: '', result: { ips: [{ address: '10.1.0.5/24' }] } },
      ],
    };
    assert.deepEqual(podIpsOf(record), ['10.0.0.5', 'fd00::5']);
    assert.deepEqual(podIpsOf({ attachments: [{ network: 'o', ifName: 'eth0', config: '', result: { ip4: { ip: '10.3.0.2/16' } } }] }), ['10.3.0.2']);
    assert.deepEqual(podIpsOf({ attachments: [] }), []);
  });
});

describe('PodNetwork with real plugins in pinned namespaces', () => {
  const id = rand(3);
  const second = 200 + ((randomBytes(1)[0] ?? 0) % 50);
  const third = (randomBytes(1)[0] ?? 0) % 200;
  const bridges: string[] = [];
  let tmp: string;
  let netns: NetnsManager;
  let natBefore: string[];
  let ipForwardBefore: string;
  let counter = 0;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'berth-pod-network-'));
    netns = await NetnsManager.open(path.join(tmp, 'netns'), { log });
    natBefore = await cniNatRules();
    // The bridge plugin turns on IP forwarding for gateway networks: put it back after.
    ipForwardBefore = await readFile(IP_FORWARD, 'utf8');
  });

  after(async () => {
    for (const p of await netns.list()) await netns.remove(p);
    await netns.close();
    for (const b of bridges) await run('ip', ['link', 'del', b]).catch(() => {});
    // portmap's shared top-level chains: drop them if this suite made them and no pod uses them.
    await dropNewCniNatChains(natBefore);
    await writeFile(IP_FORWARD, ipForwardBefore);
    await rm(tmp, { recursive: true, force: true });
    assert.deepEqual((await listMountPoints()).filter((p) => p.startsWith(tmp)), [], 'no netns mounts left');
    for (const b of bridges) assert.equal(await succeeds('ip', ['link', 'show', b]), false, `bridge ${b} is gone`);
    assert.deepEqual(await cniNatRules(), natBefore, 'no CNI iptables chains left');
  });

  /** A bridge network with its own bridge, subnet and host-local data dir. */
  async function bridgeNetwork(opts: { portmap?: boolean; ipam?: Record<string, unknown> } = {}) {
    const n = counter++;
    const name = `berth-pn-${id}-${n}`;
    const bridge = `bpn${id}${n}`;
    bridges.push(bridge);
    const subnet = `10.${second}.${third + n}.0/24`;
    const dataDir = await mkdtemp(path.join(tmp, 'ipam-'));
    const plugins: Record<string, unknown>[] = [
      {
        type: 'bridge',
        bridge,
        isGateway: true,
        ipMasq: false,
        ipam: { type: 'host-local', subnet, dataDir, ...opts.ipam },
      },
    ];
    if (opts.portmap) plugins.push({ type: 'portmap', capabilities: { portMappings: true } });
    return { net: network({ cniVersion: '1.0.0', name, plugins }), name, bridge, subnet, dataDir };
  }

  function params(netnsPath: string, extra: Partial<PodNetworkParams> = {}): PodNetworkParams {
    const podId = `pod${rand(8)}`;
    return { podId, namespace: 'default', name: `p-${podId}`, uid: rand(8), netnsPath, ...extra };
  }

  it('connects two pods on one bridge network', async () => {
    const { net, name, bridge, dataDir } = await bridgeNetwork();
    const pods = new PodNetwork(source([net]), { log });
    const nsA = await netns.create();
    const nsB = await netns.create();
    const a = params(nsA);
    const b = params(nsB);
    let recA: PodNetworkRecord | undefined;
    let recB: PodNetworkRecord | undefined;
    try {
      const setupA = await pods.setup(a);
      recA = setupA.record;
      const setupB = await pods.setup(b);
      recB = setupB.record;
      const [ipA] = setupA.ips;
      const [ipB] = setupB.ips;
      assert.ok(ipA && ipB && ipA !== ipB, JSON.stringify([setupA.ips, setupB.ips]));
      assert.deepEqual(
        recA.attachments.map((x) => [x.network, x.ifName]),
        [
          ['cni-loopback', 'lo'],
          [name, 'eth0'],
        ],
      );
      assert.equal(recA.args['K8S_POD_INFRA_CONTAINER_ID'], a.podId);
      // The record is plain JSON that works after a round trip.
      recA = JSON.parse(JSON.stringify(recA)) as PodNetworkRecord;
      await run('nsenter', [`--net=${nsA}`, 'busybox', 'ping', '-c1', '-W1', ipB]);
      await run('nsenter', [`--net=${nsB}`, 'busybox', 'ping', '-c1', '-W1', ipA]);
      await pods.check(recA);
      await pods.check(recB);
      assert.equal((await allocated(dataDir, name)).length, 2);
      assert.equal((await bridgePorts(bridge)).length, 2);
    } finally {
      if (recA) await pods.teardown(recA);
      if (recB) await pods.teardown(recB);
      await netns.remove(nsA);
      await netns.remove(nsB);
    }
    assert.deepEqual(await allocated(dataDir, name), []);
    assert.deepEqual(await bridgePorts(bridge), []);
  });

  it('forwards a host port on 127.0.0.1 into the pod, and DEL removes the rules', async () => {
    const { net } = await bridgeNetwork({ portmap: true });
    const pods = new PodNetwork(source([net]), { log });
    const ns = await netns.create();
    const hostPort = 20_000 + ((randomBytes(2).readUInt16BE() % 20_000));
    const p = params(ns, { portMappings: [{ containerPort: 80, hostPort, protocol: 0, hostIp: '127.0.0.1' }] });
    const www = await mkdtemp(path.join(tmp, 'www-'));
    await writeFile(path.join(www, 'hello.txt'), `hello ${p.podId}\n`);
    let record: PodNetworkRecord | undefined;
    let server: ChildProcess | undefined;
    try {
      record = (await pods.setup(p)).record;
      const rules = await cniNatRules();
      assert.ok(rules.some((r) => r.includes(p.podId) && r.includes(String(hostPort))), rules.join('\n'));
      server = spawn('nsenter', [`--net=${ns}`, '/usr/bin/python3', '-m', 'http.server', '80', '--bind', '0.0.0.0', '-d', www], {
        stdio: 'ignore',
      });
      let body = '';
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          body = await httpGet(hostPort, '/hello.txt');
          break;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      assert.equal(body, `hello ${p.podId}\n`);
    } finally {
      server?.kill('SIGKILL');
      if (record) await pods.teardown(record);
      await netns.remove(ns);
    }
    const left = (await cniNatRules()).filter((r) => r.includes(p.podId) || /^-N CNI-DN-/.test(r));
    assert.deepEqual(left, []);
  });

  it('rolls back the networks added before a failing ADD and rethrows', async () => {
    const good = await bridgeNetwork();
    // host-local rejects a range start outside the subnet, at ADD time.
    const bad = await bridgeNetwork({ ipam: { rangeStart: '10.99.99.5' } });
    const pods = new PodNetwork(source([good.net, bad.net]), { log });
    const ns = await netns.create();
    try {
      await assert.rejects(pods.setup(params(ns)), isCode('ERR_CNI_PLUGIN_FAILED'));
      assert.deepEqual(await allocated(good.dataDir, good.name), [], 'IP of the first network released');
      assert.deepEqual(await allocated(bad.dataDir, bad.name), []);
      assert.equal(await succeeds('nsenter', [`--net=${ns}`, 'ip', 'link', 'show', 'eth0']), false, 'eth0 removed');
      assert.deepEqual(await bridgePorts(good.bridge), []);
      const lo = (await run('nsenter', [`--net=${ns}`, 'ip', '-o', 'link', 'show', 'lo'])).stdout;
      assert.ok(!/[<,]UP[,>]/.test(lo), `lo brought down again: ${lo}`);
    } finally {
      await netns.remove(ns);
    }
  });

  it('tears down twice, without a record, and after the namespace is gone', async () => {
    const { net, name, bridge, dataDir } = await bridgeNetwork();
    const pods = new PodNetwork(source([net]), { log });

    // Twice with the record.
    const ns1 = await netns.create();
    const { record } = await pods.setup(params(ns1));
    await pods.teardown(record);
    await pods.teardown(record);
    assert.deepEqual(await allocated(dataDir, name), []);
    await netns.remove(ns1);

    // From the pod's params alone (no record kept), the same networks are DELeted.
    const ns2 = await netns.create();
    const p2 = params(ns2);
    await pods.setup(p2);
    assert.equal((await allocated(dataDir, name)).length, 1);
    await pods.teardown(p2);
    assert.deepEqual(await allocated(dataDir, name), []);
    assert.equal(await succeeds('nsenter', [`--net=${ns2}`, 'ip', 'link', 'show', 'eth0']), false);
    await netns.remove(ns2);

    // After the namespace was removed: IPs are still released.
    const ns3 = await netns.create();
    const setup3 = await pods.setup(params(ns3));
    await netns.remove(ns3);
    await pods.teardown(setup3.record);
    await pods.teardown(setup3.record);
    assert.deepEqual(await allocated(dataDir, name), []);
    assert.deepEqual(await bridgePorts(bridge), []);
    await assert.rejects(pods.check(setup3.record));
  });

  it('passes CNI_ARGS and capability args to ADD and the same to DEL', async () => {
    const bin = path.join(tmp, 'bin');
    const out = path.join(tmp, 'recorded');
    await mkdir(bin, { recursive: true });
    await mkdir(out, { recursive: true });
    const ns = await netns.create();
    const result = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', sandbox: ns }, { name: 'host0' }],
      ips: [
        { address: 'fd00:10::7/64', interface: 0 },
        { address: '10.77.0.7/24', interface: 0 },
        { address: '10.77.0.1/24', interface: 1 },
      ],
    };
    const recorder = [
      '#!/bin/sh',
      `cat > "${out}/$CNI_COMMAND-$CNI_IFNAME.json"`,
      `printf '%s' "$CNI_ARGS" > "${out}/$CNI_COMMAND-$CNI_IFNAME.args"`,
      `if [ "$CNI_COMMAND" = ADD ]; then printf '%s' '${JSON.stringify(result)}'; fi`,
      '',
    ].join('\n');
    await writeFile(path.join(bin, 'berth-recorder'), recorder);
    await chmod(path.join(bin, 'berth-recorder'), 0o755);
    const net = network({
      cniVersion: '1.0.0',
      name: `berth-rec-${id}`,
      plugins: [{ type: 'berth-recorder', capabilities: { portMappings: true, bandwidth: true, ipRanges: true, dns: true } }],
    });
    const pods = new PodNetwork(source([net], [bin, SYSTEM_BIN]), { log });
    const p = params(ns, {
      namespace: 'kube-system',
      name: 'web',
      uid: 'uid-1',
      portMappings: [{ containerPort: 80, hostPort: 8080, protocol: 1, hostIp: '' }],
      bandwidth: bandwidthFromAnnotations({ 'kubernetes.io/ingress-bandwidth': '1M' }),
      podCidrs: ['10.77.0.0/24'],
      dns: { servers: ['10.96.0.10'], searches: ['cluster.local'], options: ['ndots:5'] },
    });
    const readJson = async (f: string) => JSON.parse(await readFile(path.join(out, f), 'utf8')) as Record<string, unknown>;
    try {
      const setup = await pods.setup(p);
      assert.deepEqual(setup.ips, ['10.77.0.7', 'fd00:10::7']);
      const wantArgs = `IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=${p.podId};K8S_POD_UID=uid-1`;
      assert.equal(await readFile(path.join(out, 'ADD-eth0.args'), 'utf8'), wantArgs);
      const wantRuntime = {
        portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'udp' }],
        bandwidth: { ingressRate: 1_000_000, ingressBurst: 4_294_967_295 },
        ipRanges: [[{ subnet: '10.77.0.0/24' }]],
        dns: { servers: ['10.96.0.10'], searches: ['cluster.local'], options: ['ndots:5'] },
      };
      const add = await readJson('ADD-eth0.json');
      assert.deepEqual(add['runtimeConfig'], wantRuntime);
      assert.equal(add['name'], net.name);

      await pods.teardown(JSON.parse(JSON.stringify(setup.record)) as PodNetworkRecord);
      assert.equal(await readFile(path.join(out, 'DEL-eth0.args'), 'utf8'), wantArgs);
      const del = await readJson('DEL-eth0.json');
      assert.deepEqual(del['runtimeConfig'], wantRuntime);
      assert.deepEqual(del['prevResult'], result);
    } finally {
      await netns.remove(ns);
    }
  });
});
