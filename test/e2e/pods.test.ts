import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, afterEach, before, describe, test } from 'node:test';
import {
  ContainerConfig,
  ContainerEventType,
  ContainerState,
  type ContainerEventResponse,
  NamespaceMode,
  type ContainerStatusResponse,
  type CreateContainerResponse,
  type ExecSyncResponse,
  type ListContainersResponse,
  PodSandboxConfig,
  PodSandboxState,
  Protocol,
  type ListPodSandboxResponse,
  type ListPodSandboxStatsResponse,
  type PodSandboxStatsResponse,
  type PodSandboxStatusResponse,
  type RunPodSandboxResponse,
  type StatusResponse,
} from '../../src/generated/api.js';
import { busyboxImage, pauseImage, pushImage, startRegistry, type RegistryHandle } from '../fixtures/index.js';
import { call, startBerthd, waitFor, type Berthd } from './harness.js';
import { assertNoLeaks, findLeaks } from './leaks.js';
import { cniNatRules, dropNewCniNatChains } from '../fixtures/iptables.js';

const sh = promisify(execFile);

/** A test network of its own: bridge name (< 15 chars), subnet and CNI network name. */
export function testNetwork(tag: string) {
  const octet = 200 + randomBytes(1)[0]! % 50;
  const suffix = randomBytes(3).toString('hex');
  return {
    name: `berth-${tag}-${suffix}`,
    bridge: `bt${suffix}`,
    subnet: `10.${octet}.0.0/24`,
    prefix: `10.${octet}.0.`,
  };
}

type TestNetwork = ReturnType<typeof testNetwork>;

/**
 * Everything a describe block made, taken down even after a failure: the
 * pods (so berthd's dir can go), berthd, the bridge, host-local's dir for the
 * network, then `extra` (registry, temp dirs). Every step runs; the first
 * error is thrown at the end.
 */
/** CNI nat rules before any pod of this file ran: portmap's shared chains it adds are removed at teardown. */
const natRulesAtStart = await cniNatRules();

async function teardown(d: Berthd | undefined, net: TestNetwork, ...extra: Array<() => Promise<unknown> | undefined>): Promise<void> {
  const errors: unknown[] = [];
  const step = async (fn: () => Promise<unknown> | undefined): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      errors.push(err);
    }
  };
  if (d !== undefined) {
    await step(async () => {
      if (d.proc.exitCode !== null || d.proc.signalCode !== null) return;
      const left = await call<object, ListPodSandboxResponse>(d.runtime, 'listPodSandbox', {});
      for (const p of left.items) await call(d.runtime, 'removePodSandbox', { podSandboxId: p.id });
    });
    await step(() => d.dispose());
  }
  await step(() => sh('ip', ['link', 'del', net.bridge]).catch(() => undefined));
  await step(() => rm(join('/var/lib/cni/networks', net.name), { recursive: true, force: true }));
  await step(() => dropNewCniNatChains(natRulesAtStart));
  for (const fn of extra) await step(fn);
  if (errors.length > 0) throw errors[0];
}

function conflist(net: TestNetwork, extra: object[] = []): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: net.name,
    plugins: [
      { type: 'bridge', bridge: net.bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet: net.subnet }]] } },
      { type: 'portmap', capabilities: { portMappings: true } },
      ...extra,
    ],
  });
}

let podSeq = 0;
function podConfig(overrides: Partial<PodSandboxConfig> & { name?: string } = {}): PodSandboxConfig {
  const name = overrides.name ?? `pod-${process.pid}-${++podSeq}`;
  const { name: _n, ...rest } = overrides;
  return PodSandboxConfig.fromPartial({
    metadata: { name, namespace: 'e2e', uid: `uid-${name}`, attempt: 0 },
    hostname: name,
    logDirectory: '',
    labels: { test: 'pods' },
    annotations: { 'berth.io/e2e': 'yes' },
    linux: {},
    ...rest,
  });
}

function grpcCode(code: GrpcStatus, pattern?: RegExp) {
  return (err: ServiceError) => {
    assert.equal(err.code, code, `${GrpcStatus[err.code]}: ${err.details}`);
    if (pattern) assert.match(err.details, pattern);
    return true;
  };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

describe('pod sandboxes on a real berthd', () => {
  let registry: RegistryHandle;
  let d: Berthd;
  const net = testNetwork('pods');
  let pauseRef: string;
  let busyboxRef: string;
  const made: string[] = [];

  const run = async (config: PodSandboxConfig, runtimeHandler = ''): Promise<string> => {
    const res = await call<object, RunPodSandboxResponse>(d.runtime, 'runPodSandbox', { config, runtimeHandler });
    made.push(res.podSandboxId);
    return res.podSandboxId;
  };
  const podStatus = (id: string, verbose = false) => call<object, PodSandboxStatusResponse>(d.runtime, 'podSandboxStatus', { podSandboxId: id, verbose });
  const list = async (filter?: object) => (await call<object, ListPodSandboxResponse>(d.runtime, 'listPodSandbox', filter === undefined ? {} : { filter })).items;
  const stop = (id: string) => call(d.runtime, 'stopPodSandbox', { podSandboxId: id });
  const remove = (id: string) => call(d.runtime, 'removePodSandbox', { podSandboxId: id });
  const removeAll = async () => {
    for (const p of await list()) await remove(p.id);
  };

  before(async () => {
    registry = await startRegistry();
    const pushed = await pushImage(registry, 'e2e/pause', 'latest', await pauseImage());
    pauseRef = `${registry.host}/e2e/pause:latest`;
    await pushImage(registry, 'e2e/busybox', 'latest', await busyboxImage());
    busyboxRef = `${registry.host}/e2e/busybox:latest`;
    assert.ok(pushed.digest);
    // A second handler: runc again, with its own root.
    d = await startBerthd({
      configToml: [
        '[plugins."cri.service"]',
        `sandbox_image = "${pauseRef}"`,
        '[plugins."runtime.oci".runtimes.runc]',
        '[plugins."runtime.oci".runtimes.runc2]',
        'options = { note = "second handler" }',
        '',
      ].join('\n'),
    });
    await writeFile(join(d.confDir, '10-test.conflist'), conflist(net));
    // The conf dir is watched: wait until the network is loaded.
    for (let i = 0; i < 100; i++) {
      const st = await call<object, StatusResponse>(d.runtime, 'status', {});
      if (st.status?.conditions.find((c) => c.type === 'NetworkReady')?.status) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  afterEach(async () => {
    await removeAll();
    await assertNoLeaks({ dir: d.dir, bridge: net.bridge, network: net.name, ids: made });
  });

  after(() => teardown(d, net, () => registry?.stop()));

  test('Status lists the runtime handlers with their features', async () => {
    const st = await call<object, StatusResponse>(d.runtime, 'status', {});
    assert.deepEqual(
      st.runtimeHandlers.map((h) => h.name),
      ['', 'runc', 'runc2'],
    );
    assert.equal(typeof st.runtimeHandlers[0]?.features?.recursiveReadOnlyMounts, 'boolean');
  });

  test('run, status, list, stop (twice), remove (twice)', async () => {
    const config = podConfig({
      dnsConfig: { servers: ['10.96.0.10'], searches: ['e2e.svc.cluster.local'], options: ['ndots:5'] },
      portMappings: [{ protocol: Protocol.TCP, containerPort: 80, hostPort: 0, hostIp: '' }],
    });
    const started = performance.now();
    const id = await run(config);
    const ms = performance.now() - started;
    assert.match(id, /^[0-9a-f]{64}$/);

    const st = await podStatus(id, true);
    assert.equal(st.status?.state, PodSandboxState.SANDBOX_READY);
    assert.equal(st.status?.id, id);
    assert.deepEqual(st.status?.metadata, config.metadata);
    assert.deepEqual(st.status?.labels, config.labels);
    assert.deepEqual(st.status?.annotations, config.annotations);
    assert.ok((st.status?.createdAt ?? 0n) > 0n);
    assert.ok(st.status?.network?.ip.startsWith(net.prefix), `pod IP ${st.status?.network?.ip} in ${net.subnet}`);
    assert.equal(st.status?.runtimeHandler, '');
    const info = JSON.parse(st.info['info'] ?? '{}') as { pid: number; netNamespacePath: string; image: string; cniResult: object; config: { metadata: { name: string } } };
    assert.ok(info.pid > 0);
    assert.equal(info.image, pauseRef);
    assert.ok(info.cniResult);
    assert.equal(info.config.metadata.name, config.metadata?.name);
    assert.ok(await exists(info.netNamespacePath), 'netns pinned');
    // The pause process lives in the pinned namespace.
    const [procNs, pinned] = await Promise.all([stat(`/proc/${info.pid}/ns/net`), stat(info.netNamespacePath)]);
    assert.equal(procNs.ino, pinned.ino);
    const resolv = await readFile(join(d.root, 'cri.service', 'sandboxes', id, 'resolv.conf'), 'utf8');
    assert.equal(resolv, 'search e2e.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n');
    assert.equal(await readFile(join(d.root, 'cri.service', 'sandboxes', id, 'hostname'), 'utf8'), `${config.hostname}\n`);
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    assert.ok(mounts.includes(join(d.state, 'cri.service', 'sandboxes', id, 'shm')), 'shm mounted');

    // The leak checker sees a running pod's every part (so it can fail).
    const parts = (await findLeaks({ dir: d.dir, bridge: net.bridge, network: net.name, ids: [id] })).map((l) => l.split(' ')[0]);
    for (const kind of ['mount', 'netns', 'bridge', 'runc', 'conmon', 'cgroup', 'host-local']) assert.ok(parts.includes(kind), `leak check sees the ${kind}`);

    const items = await list();
    assert.deepEqual(items.map((p) => p.id), [id]);
    assert.equal(items[0]?.state, PodSandboxState.SANDBOX_READY);

    await stop(id);
    const stopped = await podStatus(id);
    assert.equal(stopped.status?.state, PodSandboxState.SANDBOX_NOTREADY);
    assert.equal(stopped.status?.network?.ip, '');
    assert.equal(await exists(info.netNamespacePath), false, 'netns gone after stop');
    await stop(id);
    await remove(id);
    await remove(id);
    await assert.rejects(podStatus(id), grpcCode(GrpcStatus.NOT_FOUND));
    assert.deepEqual(await list(), []);
    console.log(`RunPodSandbox took ${ms.toFixed(1)} ms`);
  });

  test('ListPodSandbox filters by id prefix, state and labels', async () => {
    const a = await run(podConfig({ labels: { app: 'a', tier: 'x' } }));
    const b = await run(podConfig({ labels: { app: 'b', tier: 'x' } }));
    await stop(b);
    assert.deepEqual((await list({ id: a.slice(0, 12), labelSelector: {} })).map((p) => p.id), [a]);
    assert.deepEqual((await list({ id: '', state: { state: PodSandboxState.SANDBOX_NOTREADY }, labelSelector: {} })).map((p) => p.id), [b]);
    assert.deepEqual((await list({ id: '', state: { state: PodSandboxState.SANDBOX_READY }, labelSelector: {} })).map((p) => p.id), [a]);
    assert.deepEqual((await list({ id: '', labelSelector: { app: 'b' } })).map((p) => p.id), [b]);
    assert.deepEqual((await list({ id: '', labelSelector: { tier: 'x' } })).map((p) => p.id).sort(), [a, b].sort());
    assert.deepEqual(await list({ id: 'ffffffffffff', labelSelector: {} }), []);
    // Status and stop by a unique prefix too.
    assert.equal((await podStatus(a.slice(0, 8))).status?.id, a);
  });

  test('a duplicate pod is AlreadyExists; an unknown handler is InvalidArgument naming the handlers', async () => {
    const config = podConfig();
    await run(config);
    await assert.rejects(call(d.runtime, 'runPodSandbox', { config, runtimeHandler: '' }), grpcCode(GrpcStatus.ALREADY_EXISTS));
    await assert.rejects(call(d.runtime, 'runPodSandbox', { config: podConfig(), runtimeHandler: 'nope' }), grpcCode(GrpcStatus.INVALID_ARGUMENT, /runc/));
    await assert.rejects(call(d.runtime, 'runPodSandbox', { config: { ...podConfig(), metadata: undefined }, runtimeHandler: '' }), grpcCode(GrpcStatus.INVALID_ARGUMENT));
    assert.equal((await list()).length, 1);
  });

  test('a pod runs under the handler it names, in that handler\'s runc root', async () => {
    const id = await run(podConfig(), 'runc2');
    assert.equal((await podStatus(id)).status?.runtimeHandler, 'runc2');
    assert.equal((await list()).find((p) => p.id === id)?.runtimeHandler, 'runc2');
    const listed = async (handler: string) => (await sh('runc', ['--root', join(d.state, 'runtime.oci', handler), 'list', '-q'])).stdout.split('\n');
    assert.ok((await listed('runc2')).includes(id), 'pause container in the runc2 root');
    assert.ok(!(await listed('runc')).includes(id), 'not in the default root');
    await stop(id);
  });

  test('two pods on the bridge reach each other by IP', async () => {
    const a = await run(podConfig());
    const b = await run(podConfig());
    const [sa, sb] = await Promise.all([podStatus(a, true), podStatus(b, true)]);
    const nsA = (JSON.parse(sa.info['info']!) as { netNamespacePath: string }).netNamespacePath;
    const ipB = sb.status!.network!.ip;
    assert.notEqual(sa.status?.network?.ip, ipB);
    const { stdout } = await sh('nsenter', [`--net=${nsA}`, 'busybox', 'ping', '-c', '1', '-W', '2', ipB]);
    assert.match(stdout, /1 packets received/);
  });

  test('a port mapping on a pod is reachable from the host on 127.0.0.1', async () => {
    const hostPort = 30000 + (randomBytes(2).readUInt16BE(0) % 20000);
    const id = await run(podConfig({ portMappings: [{ protocol: Protocol.TCP, containerPort: 8080, hostPort, hostIp: '' }] }));
    const ns = (JSON.parse((await podStatus(id, true)).info['info']!) as { netNamespacePath: string }).netNamespacePath;
    const server = spawn('nsenter', [`--net=${ns}`, 'busybox', 'nc', '-l', '-p', '8080'], { stdio: ['pipe', 'ignore', 'ignore'] });
    server.stdin.end('hello from the pod\n');
    try {
      const got = await waitFor(
        'the mapped port to answer',
        () =>
          new Promise<string | undefined>((resolve) => {
            const sock = connect(hostPort, '127.0.0.1');
            let text = '';
            sock.setTimeout(1000, () => sock.destroy());
            sock.on('data', (b) => (text += b.toString()));
            sock.on('close', () => resolve(text === '' ? undefined : text));
            sock.on('error', () => resolve(undefined));
          }),
        10_000,
        100,
      );
      assert.equal(got, 'hello from the pod\n');
      const rules = (await sh('iptables-save', ['-t', 'nat'])).stdout;
      assert.ok(rules.includes(`--dport ${hostPort}`), 'portmap DNAT rule present while the pod runs');
    } finally {
      server.kill('SIGKILL');
    }
    await stop(id);
    const rules = (await sh('iptables-save', ['-t', 'nat'])).stdout;
    assert.ok(!rules.includes(`--dport ${hostPort}`), 'portmap rules gone after stop');
  });

  test('busybox containers of two pods reach each other; RemovePodSandbox removes a running container with its pod', async () => {
    await call(d.images, 'pullImage', { image: { image: busyboxRef, annotations: {}, userSpecifiedImage: '', runtimeHandler: '', imageRef: '' } });
    const pods = [podConfig(), podConfig()];
    const [a, b] = [await run(pods[0]!), await run(pods[1]!)];
    const ctr = async (podId: string, config: PodSandboxConfig) => {
      const { containerId } = await call<object, CreateContainerResponse>(d.runtime, 'createContainer', {
        podSandboxId: podId,
        config: ContainerConfig.fromPartial({ metadata: { name: 'box', attempt: 0 }, image: { image: busyboxRef }, command: ['sleep', '3600'] }),
        sandboxConfig: config,
      });
      await call(d.runtime, 'startContainer', { containerId });
      return containerId;
    };
    const [ca] = [await ctr(a, pods[0]!), await ctr(b, pods[1]!)];
    const ipB = (await podStatus(b)).status!.network!.ip;
    const res = await call<object, ExecSyncResponse>(d.runtime, 'execSync', { containerId: ca, cmd: ['ping', '-c', '1', '-W', '2', ipB], timeout: 10n });
    assert.equal(res.exitCode, 0, res.stdout.toString() + res.stderr.toString());
    // The container sees the pod's hostname and network (eth0 with the pod IP).
    const host = await call<object, ExecSyncResponse>(d.runtime, 'execSync', { containerId: ca, cmd: ['hostname'], timeout: 10n });
    assert.equal(host.stdout.toString().trim(), pods[0]!.hostname);

    await remove(a);
    const left = await call<object, ListContainersResponse>(d.runtime, 'listContainers', {});
    assert.deepEqual(left.containers.map((c) => c.podSandboxId), [b]);
    made.push(ca, ...left.containers.map((c) => c.id));
  });

  test('a host-network pod gets no namespace, no CNI and no IP', async () => {
    const id = await run(podConfig({ linux: { securityContext: { namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.POD, ipc: NamespaceMode.POD, targetId: '' } } } as PodSandboxConfig['linux'] }));
    const st = await podStatus(id, true);
    assert.equal(st.status?.state, PodSandboxState.SANDBOX_READY);
    assert.deepEqual(st.status?.network, { ip: '', additionalIps: [] });
    const info = JSON.parse(st.info['info']!) as { pid: number; netNamespacePath: string };
    assert.equal(info.netNamespacePath, '');
    const [procNs, hostNs] = await Promise.all([stat(`/proc/${info.pid}/ns/net`), stat('/proc/self/ns/net')]);
    assert.equal(procNs.ino, hostNs.ino);
    await stop(id);
  });

  test('PodSandboxStats and ListPodSandboxStats report the pod cgroup and eth0', async () => {
    const id = await run(podConfig());
    const one = await call<object, PodSandboxStatsResponse>(d.runtime, 'podSandboxStats', { podSandboxId: id });
    assert.equal(one.stats?.attributes?.id, id);
    assert.ok((one.stats?.linux?.memory?.workingSetBytes?.value ?? 0n) > 0n, 'memory working set');
    assert.ok(one.stats?.linux?.cpu?.usageCoreNanoSeconds !== undefined, 'cpu usage');
    assert.equal(one.stats?.linux?.network?.defaultInterface?.name, 'eth0');
    const all = await call<object, ListPodSandboxStatsResponse>(d.runtime, 'listPodSandboxStats', {});
    assert.deepEqual(all.stats.map((s) => s.attributes?.id), [id]);
  });

  test('a pause container killed behind berthd\'s back marks the pod NOTREADY', async () => {
    const id = await run(podConfig());
    const info = JSON.parse((await podStatus(id, true)).info['info']!) as { pid: number };
    process.kill(info.pid, 'SIGKILL');
    for (let i = 0; i < 100; i++) {
      if ((await podStatus(id)).status?.state === PodSandboxState.SANDBOX_NOTREADY) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal((await podStatus(id)).status?.state, PodSandboxState.SANDBOX_NOTREADY);
    await stop(id);
  });

  test('GetContainerEvents carries the sandbox lifecycle (container id = sandbox id)', async () => {
    const stream = d.runtime.getContainerEvents({});
    const seen: Array<{ id: string; type: ContainerEventType; state: PodSandboxState | undefined }> = [];
    stream.on('data', (e: ContainerEventResponse) => seen.push({ id: e.containerId, type: e.containerEventType, state: e.podSandboxStatus?.state }));
    stream.on('error', () => undefined);
    try {
      await new Promise((r) => setTimeout(r, 200));
      const id = await run(podConfig());
      await stop(id);
      await remove(id);
      await waitFor('the DELETED event', () => (seen.some((e) => e.id === id && e.type === ContainerEventType.CONTAINER_DELETED_EVENT) ? true : undefined), 5000);
      const mine = seen.filter((e) => e.id === id);
      assert.deepEqual(
        mine.map((e) => e.type),
        [
          ContainerEventType.CONTAINER_CREATED_EVENT,
          ContainerEventType.CONTAINER_STARTED_EVENT,
          ContainerEventType.CONTAINER_STOPPED_EVENT,
          ContainerEventType.CONTAINER_DELETED_EVENT,
        ],
      );
      assert.equal(mine[1]?.state, PodSandboxState.SANDBOX_READY);
      assert.equal(mine[2]?.state, PodSandboxState.SANDBOX_NOTREADY);
    } finally {
      stream.cancel();
    }
  });

  test('Stop and Remove of an unknown pod succeed; Status of one is NotFound', async () => {
    await stop('0123456789abcdef');
    await remove('0123456789abcdef');
    await assert.rejects(podStatus('0123456789abcdef'), grpcCode(GrpcStatus.NOT_FOUND));
  });
});

describe('a RunPodSandbox that fails part-way leaves nothing behind', () => {
  let registry: RegistryHandle;
  let d: Berthd;
  const net = testNetwork('fail');
  const cgroupParent = `/berth-e2e-${randomBytes(4).toString('hex')}`;

  before(async () => {
    registry = await startRegistry();
    await pushImage(registry, 'e2e/pause', 'latest', await pauseImage());
    d = await startBerthd({ configToml: `[plugins."cri.service"]\nsandbox_image = "${registry.host}/e2e/pause:latest"\n` });
    // The bridge ADD works (an IP is taken, a veth made), then tuning fails on a sysctl that does not exist.
    await writeFile(join(d.confDir, '10-fail.conflist'), conflist(net, [{ type: 'tuning', sysctl: { 'net.ipv4.conf.IFNAME.no_such_sysctl': '1' } }]));
    for (let i = 0; i < 100; i++) {
      const st = await call<object, StatusResponse>(d.runtime, 'status', {});
      if (st.status?.conditions.find((c) => c.type === 'NetworkReady')?.status) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  after(() =>
    teardown(
      d,
      net,
      async () => {
        for (const controller of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
          await rmdir(join('/sys/fs/cgroup', controller, cgroupParent)).catch(() => undefined);
        }
      },
      () => registry?.stop(),
    ),
  );

  const runFails = async (config: PodSandboxConfig, pattern: RegExp) => {
    await assert.rejects(call(d.runtime, 'runPodSandbox', { config, runtimeHandler: '' }), (err: ServiceError) => {
      assert.match(err.details, pattern);
      return true;
    });
    assert.deepEqual((await call<object, ListPodSandboxResponse>(d.runtime, 'listPodSandbox', {})).items, []);
    assert.deepEqual(await readdir(join(d.state, 'cri.service', 'sandboxes')), [], 'no sandbox state dir left');
    assert.deepEqual(await readdir(join(d.root, 'cri.service', 'sandboxes')), [], 'no sandbox root dir left');
    await assertNoLeaks({ dir: d.dir, bridge: net.bridge, network: net.name, cgroupParent });
  };

  test('a CNI plugin failing at ADD', async () => {
    await runFails(podConfig({ linux: { cgroupParent } as PodSandboxConfig['linux'] }), /no_such_sysctl/);
  });

  test('the sandbox container failing at create (CNI ADD done in parallel)', async () => {
    await writeFile(join(d.confDir, '10-fail.conflist'), conflist(net));
    for (let i = 0; i < 100; i++) {
      const st = await call<object, StatusResponse>(d.runtime, 'status', { verbose: true });
      if (!(st.info['cniconfig'] ?? '').includes('tuning')) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await runFails(podConfig({ linux: { cgroupParent, sysctls: { 'net.ipv4.no_such_sysctl': '1' } } as PodSandboxConfig['linux'] }), /sysctl|no_such/);
    // The same pod name is free again after the failure.
    const config = podConfig({ linux: { cgroupParent } as PodSandboxConfig['linux'] });
    const { podSandboxId } = await call<object, RunPodSandboxResponse>(d.runtime, 'runPodSandbox', { config, runtimeHandler: '' });
    await call(d.runtime, 'removePodSandbox', { podSandboxId });
    await assertNoLeaks({ dir: d.dir, bridge: net.bridge, network: net.name, cgroupParent });
  });
});

describe('pods across a kill -9 of berthd', () => {
  let registry: RegistryHandle;
  let d: Berthd;
  let configToml: string;
  const net = testNetwork('rec');

  before(async () => {
    registry = await startRegistry();
    await pushImage(registry, 'e2e/pause', 'latest', await pauseImage());
    configToml = `[plugins."cri.service"]\nsandbox_image = "${registry.host}/e2e/pause:latest"\n`;
    d = await startBerthd({ configToml });
    await writeFile(join(d.confDir, '10-rec.conflist'), conflist(net));
    for (let i = 0; i < 100; i++) {
      const st = await call<object, StatusResponse>(d.runtime, 'status', {});
      if (st.status?.conditions.find((c) => c.type === 'NetworkReady')?.status) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  after(() => teardown(d, net, () => registry?.stop()));

  test('running pods stay ready with their IPs, a pause that died meanwhile is NOTREADY, and stop/remove clean up afterwards', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push((await call<object, RunPodSandboxResponse>(d.runtime, 'runPodSandbox', { config: podConfig(), runtimeHandler: '' })).podSandboxId);
    }
    const before = await Promise.all(ids.map((id) => call<object, PodSandboxStatusResponse>(d.runtime, 'podSandboxStatus', { podSandboxId: id, verbose: true })));
    const pids = before.map((s) => (JSON.parse(s.info['info']!) as { pid: number }).pid);

    assert.equal(await d.stop('SIGKILL'), 'SIGKILL');
    // While berthd is down: pod 0's pause dies; the others keep running.
    process.kill(pids[0]!, 'SIGKILL');
    for (const pid of pids.slice(1)) process.kill(pid, 0);
    d = await startBerthd({ dir: d.dir, configToml });

    const after = await Promise.all(ids.map((id) => call<object, PodSandboxStatusResponse>(d.runtime, 'podSandboxStatus', { podSandboxId: id })));
    assert.equal(after[0]?.status?.state, PodSandboxState.SANDBOX_NOTREADY);
    for (let i = 1; i < ids.length; i++) {
      assert.equal(after[i]?.status?.state, PodSandboxState.SANDBOX_READY, `pod ${i} still ready`);
      assert.equal(after[i]?.status?.network?.ip, before[i]?.status?.network?.ip);
      assert.deepEqual(after[i]?.status?.metadata, before[i]?.status?.metadata);
      assert.equal(after[i]?.status?.createdAt, before[i]?.status?.createdAt);
    }
    // A pod still running is watched again: its pause dying now is seen.
    process.kill(pids[1]!, 'SIGKILL');
    for (let i = 0; i < 100; i++) {
      const st = await call<object, PodSandboxStatusResponse>(d.runtime, 'podSandboxStatus', { podSandboxId: ids[1]! });
      if (st.status?.state === PodSandboxState.SANDBOX_NOTREADY) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal((await call<object, PodSandboxStatusResponse>(d.runtime, 'podSandboxStatus', { podSandboxId: ids[1]! })).status?.state, PodSandboxState.SANDBOX_NOTREADY);

    for (const id of ids) {
      await call(d.runtime, 'stopPodSandbox', { podSandboxId: id });
      await call(d.runtime, 'removePodSandbox', { podSandboxId: id });
    }
    await assertNoLeaks({ dir: d.dir, bridge: net.bridge, network: net.name, ids });
  });
});

describe('20 pods with containers across a kill -9 of berthd', () => {
  let registry: RegistryHandle;
  let d: Berthd;
  let configToml: string;
  let busyboxRef: string;
  const net = testNetwork('twenty');

  before(async () => {
    registry = await startRegistry();
    await pushImage(registry, 'e2e/pause', 'latest', await pauseImage());
    await pushImage(registry, 'e2e/busybox', 'latest', await busyboxImage());
    busyboxRef = `${registry.host}/e2e/busybox:latest`;
    configToml = `[plugins."cri.service"]\nsandbox_image = "${registry.host}/e2e/pause:latest"\n`;
    d = await startBerthd({ configToml });
    await writeFile(join(d.confDir, '10-twenty.conflist'), conflist(net));
    await waitFor('CNI to load the network', async () => {
      const st = await call<object, StatusResponse>(d.runtime, 'status', {});
      return st.status?.conditions.find((c) => c.type === 'NetworkReady')?.status ? true : undefined;
    }, 10_000);
    await call(d.images, 'pullImage', { image: { image: busyboxRef, annotations: {}, userSpecifiedImage: '', runtimeHandler: '', imageRef: '' } });
  });

  after(() => teardown(d, net, () => registry?.stop()));

  test('every pod and container keeps its state, IP and exit code; containers keep logging; cleanup is complete', async () => {
    const logDir = join(d.dir, 'logs');
    const pods: Array<{ id: string; ctr: string; ip: string; pausePid: number; ctrPid: number; log: string }> = [];
    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const config = podConfig({ logDirectory: join(logDir, `pod${i}`) });
        const { podSandboxId: id } = await call<object, RunPodSandboxResponse>(d.runtime, 'runPodSandbox', { config, runtimeHandler: '' });
        const { containerId: ctr } = await call<object, CreateContainerResponse>(d.runtime, 'createContainer', {
          podSandboxId: id,
          config: ContainerConfig.fromPartial({
            metadata: { name: 'ticker', attempt: 0 },
            image: { image: busyboxRef },
            command: ['sh', '-c', 'while true; do echo tick; sleep 0.2; done'],
            logPath: 'ticker/0.log',
          }),
          sandboxConfig: config,
        });
        await call(d.runtime, 'startContainer', { containerId: ctr });
        const st = await call<object, PodSandboxStatusResponse>(d.runtime, 'podSandboxStatus', { podSandboxId: id, verbose: true });
        const cst = await call<object, ContainerStatusResponse>(d.runtime, 'containerStatus', { containerId: ctr, verbose: true });
        const ctrPid = (JSON.parse(cst.info['info'] ?? '{}') as { pid?: number }).pid ?? 0;
        pods[i] = { id, ctr, ip: st.status!.network!.ip, pausePid: (JSON.parse(st.info['info']!) as { pid: number }).pid, ctrPid, log: cst.status!.logPath };
      }),
    );
    assert.equal(new Set(pods.map((p) => p.ip)).size, 20, 'twenty distinct pod IPs');
    assert.ok(pods[1]!.ctrPid > 0, 'verbose container status gives the pid');

    assert.equal(await d.stop('SIGKILL'), 'SIGKILL');
    const downAt = Date.now();
    process.kill(pods[0]!.pausePid, 'SIGKILL');
    process.kill(pods[1]!.ctrPid, 'SIGKILL');
    const sizes = await Promise.all(pods.map((p) => stat(p.log).then((s) => s.size)));
    await new Promise((r) => setTimeout(r, 1000));
    const grown = await Promise.all(pods.map((p) => stat(p.log).then((s) => s.size)));
    for (let i = 2; i < 20; i++) assert.ok(grown[i]! > sizes[i]!, `pod ${i}'s container keeps logging while berthd is down`);
    d = await startBerthd({ dir: d.dir, configToml });
    assert.ok(Date.now() - downAt > 1000);

    const listed = await call<object, ListPodSandboxResponse>(d.runtime, 'listPodSandbox', {});
    assert.equal(listed.items.length, 20);
    const ctrs = await call<object, ListContainersResponse>(d.runtime, 'listContainers', {});
    assert.equal(ctrs.containers.length, 20);
    for (const [i, p] of pods.entries()) {
      const st = await call<object, PodSandboxStatusResponse>(d.runtime, 'podSandboxStatus', { podSandboxId: p.id });
      assert.equal(st.status?.state, i === 0 ? PodSandboxState.SANDBOX_NOTREADY : PodSandboxState.SANDBOX_READY, `pod ${i} state`);
      assert.equal(st.status?.network?.ip, p.ip, `pod ${i} IP`);
      const cst = await call<object, ContainerStatusResponse>(d.runtime, 'containerStatus', { containerId: p.ctr });
      if (i <= 1) {
        // Pod 1's container was killed; pod 0's died with its pause, the init of the pod's PID namespace.
        assert.equal(cst.status?.state, ContainerState.CONTAINER_EXITED, `container of pod ${i} exited`);
        assert.equal(cst.status?.exitCode, 137);
      } else {
        assert.equal(cst.status?.state, ContainerState.CONTAINER_RUNNING, `container of pod ${i} still running`);
      }
    }

    for (const p of pods) {
      await call(d.runtime, 'stopPodSandbox', { podSandboxId: p.id });
      await call(d.runtime, 'removePodSandbox', { podSandboxId: p.id });
    }
    assert.equal((await call<object, ListContainersResponse>(d.runtime, 'listContainers', {})).containers.length, 0);
    await assertNoLeaks({ dir: d.dir, bridge: net.bridge, network: net.name, ids: pods.flatMap((p) => [p.id, p.ctr]) });
  });
});

describe('a RunPodSandbox cut short by kill -9', () => {
  let registry: RegistryHandle;
  let d: Berthd;
  let binDir: string;
  let configToml: string;
  const net = testNetwork('cut');

  before(async () => {
    registry = await startRegistry();
    await pushImage(registry, 'e2e/pause', 'latest', await pauseImage());
    configToml = `[plugins."cri.service"]\nsandbox_image = "${registry.host}/e2e/pause:latest"\n`;
    binDir = await mkdtemp(join(tmpdir(), 'berth-cni-bin-'));
    // A chained plugin that hangs in ADD, after bridge took an IP and made the veth.
    await writeFile(
      join(binDir, 'hang'),
      '#!/bin/sh\ncase "$CNI_COMMAND" in\n  ADD) exec sleep 20 ;;\n  VERSION) echo \'{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}\' ;;\nesac\nexit 0\n',
      { mode: 0o755 },
    );
  });

  after(() =>
    teardown(
      d,
      net,
      () => rm(binDir, { recursive: true, force: true }),
      () => registry?.stop(),
    ),
  );

  test('leaves remains that the next start removes (pause container, mounts, netns, IP, veth, dirs)', async () => {
    const extraArgs = ['--cni-bin-dir', `/usr/lib/cni,${binDir}`];
    d = await startBerthd({ configToml, extraArgs });
    await writeFile(join(d.confDir, '10-cut.conflist'), conflist(net, [{ type: 'hang' }]));
    await waitFor('CNI to load the network', async () => {
      const st = await call<object, StatusResponse>(d.runtime, 'status', {});
      return st.status?.conditions.find((c) => c.type === 'NetworkReady')?.status ? true : undefined;
    }, 10_000);
    const pending = call(d.runtime, 'runPodSandbox', { config: podConfig(), runtimeHandler: '' }).catch(() => 'cut');
    // Kill it once the pause container runs and bridge made the veth, while ADD hangs in the last plugin.
    await waitFor('the pause container and the veth', async () => {
      const parts = (await findLeaks({ dir: d.dir, bridge: net.bridge, network: net.name })).map((l) => l.split(' ')[0]);
      return parts.includes('runc') && parts.includes('bridge') && parts.includes('host-local') ? true : undefined;
    }, 20_000, 50);
    assert.equal(await d.stop('SIGKILL'), 'SIGKILL');
    assert.equal(await pending, 'cut');
    assert.notDeepEqual(await findLeaks({ dir: d.dir, bridge: net.bridge, network: net.name }), []);

    await writeFile(join(d.confDir, '10-cut.conflist'), conflist(net));
    d = await startBerthd({ dir: d.dir, configToml, extraArgs });
    assert.deepEqual((await call<object, ListPodSandboxResponse>(d.runtime, 'listPodSandbox', {})).items, []);
    await assertNoLeaks({ dir: d.dir, bridge: net.bridge, network: net.name });
    assert.deepEqual(await readdir(join(d.state, 'cri.service', 'sandboxes')), []);
    assert.deepEqual(await readdir(join(d.root, 'cri.service', 'sandboxes')), []);
  });
});

describe('the pod CIDR from UpdateRuntimeConfig', () => {
  let registry: RegistryHandle;
  let d: Berthd;
  const net = testNetwork('cidr');

  before(async () => {
    registry = await startRegistry();
    await pushImage(registry, 'e2e/pause', 'latest', await pauseImage());
    d = await startBerthd({ configToml: `[plugins."cri.service"]\nsandbox_image = "${registry.host}/e2e/pause:latest"\n` });
    // host-local has no range of its own: it can only take the one the ipRanges capability brings.
    await writeFile(
      join(d.confDir, '10-cidr.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: net.name,
        plugins: [
          {
            type: 'bridge',
            bridge: net.bridge,
            isGateway: true,
            ipMasq: false,
            capabilities: { ipRanges: true },
            ipam: { type: 'host-local' },
          },
        ],
      }),
    );
    await waitFor('CNI to load the network', async () => {
      const st = await call<object, StatusResponse>(d.runtime, 'status', {});
      return st.status?.conditions.find((c) => c.type === 'NetworkReady')?.status ? true : undefined;
    }, 10_000);
  });

  after(() => teardown(d, net, () => registry?.stop()));

  test('is the ipRanges capability the pod gets its IP from', async () => {
    await call(d.runtime, 'updateRuntimeConfig', { runtimeConfig: { networkConfig: { podCidr: net.subnet } } });
    const { podSandboxId } = await call<object, RunPodSandboxResponse>(d.runtime, 'runPodSandbox', { config: podConfig(), runtimeHandler: '' });
    const st = await call<object, PodSandboxStatusResponse>(d.runtime, 'podSandboxStatus', { podSandboxId, verbose: true });
    assert.ok(st.status?.network?.ip.startsWith(net.prefix), `pod IP ${st.status?.network?.ip} from the pod CIDR ${net.subnet}`);
    const info = JSON.parse(st.info['info']!) as { cniResult: Record<string, unknown> };
    assert.ok(info.cniResult['eth0']);
    await call(d.runtime, 'removePodSandbox', { podSandboxId });
    await assertNoLeaks({ dir: d.dir, bridge: net.bridge, network: net.name, ids: [podSandboxId] });
  });
});
