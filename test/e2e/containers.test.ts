/**
 * CRI containers against a real berthd: runc + conmon containers in a pod on
 * a bridge network, images from a loopback registry. After every test no
 * container, monitor or mount of it is left behind.
 */
import { status as GrpcStatus, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import {
  ContainerConfig,
  type DeepPartial,
  ContainerEventType,
  ContainerState,
  ContainerStatsRequest,
  NamespaceMode,
  Signal,
  ContainerStatusRequest,
  CreateContainerRequest,
  ExecSyncRequest,
  ListContainersRequest,
  ListContainerStatsRequest,
  PodSandboxConfig,
  PullImageRequest,
  RemoveContainerRequest,
  RemovePodSandboxRequest,
  ReopenContainerLogRequest,
  RunPodSandboxRequest,
  StartContainerRequest,
  StopContainerRequest,
  StopPodSandboxRequest,
  UpdateContainerResourcesRequest,
  type ContainerEventResponse,
  type ContainerStatsResponse,
  type ContainerStatusResponse,
  type CreateContainerResponse,
  type ExecSyncResponse,
  type ListContainersResponse,
  type ListContainerStatsResponse,
  type RunPodSandboxResponse,
} from '../../src/generated/api.js';
import { buildImage, busyboxImage, busyboxLayer, DEFAULT_PATH, pauseImage, pushImage, startRegistry, type RegistryHandle } from '../fixtures/index.js';
import { call, startBerthd, waitFor, type Berthd } from './harness.js';
import { assertNoLeaks, findLeaks } from './leaks.js';

const run = promisify(execFile);
const MiB = 1024n * 1024n;

/** Request messages by client method: ts-proto's encoders need every field, so requests go through fromPartial. */
const REQUESTS: Record<string, { fromPartial(o: object): object }> = {
  createContainer: CreateContainerRequest,
  startContainer: StartContainerRequest,
  stopContainer: StopContainerRequest,
  removeContainer: RemoveContainerRequest,
  containerStatus: ContainerStatusRequest,
  listContainers: ListContainersRequest,
  execSync: ExecSyncRequest,
  updateContainerResources: UpdateContainerResourcesRequest,
  reopenContainerLog: ReopenContainerLogRequest,
  containerStats: ContainerStatsRequest,
  listContainerStats: ListContainerStatsRequest,
  runPodSandbox: RunPodSandboxRequest,
  stopPodSandbox: StopPodSandboxRequest,
  removePodSandbox: RemovePodSandboxRequest,
};

function grpcError(code: GrpcStatus, pattern: RegExp) {
  return (err: ServiceError) => {
    assert.equal(err.code, code, `${GrpcStatus[err.code]}: ${err.details}`);
    assert.match(err.details, pattern);
    return true;
  };
}

/**
 * Last resort when berthd could not remove what it made (a failed test):
 * stops berthd, force-deletes its runc containers (their conmons then exit)
 * and lazily unmounts everything under its dir, deepest first.
 */
async function forceCleanup(d: Berthd): Promise<void> {
  await d.stop();
  const root = join(d.state, 'runtime.oci', 'runc');
  const { stdout } = await run('runc', ['--root', root, 'list', '-q']).catch(() => ({ stdout: '' }));
  for (const id of stdout.split('\n').filter((l) => l !== '')) await run('runc', ['--root', root, 'delete', '-f', id]).catch(() => undefined);
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p.startsWith(`${d.dir}/`))
    .reverse();
  for (const m of mounts) await run('umount', ['-l', m]).catch(() => undefined);
}

/** Runs every cleanup step even when one fails; throws the first failure at the end. */
async function cleanupAll(steps: Array<() => Promise<unknown>>): Promise<void> {
  let first: unknown;
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      first ??= err;
    }
  }
  if (first !== undefined) throw first;
}

describe('CRI containers', () => {
  let registry: RegistryHandle;
  let d: Berthd;
  let busybox: string;
  let podId: string;
  let podConfig: PodSandboxConfig;
  let logDir: string;
  /** What exists with only the shared pod running (its mounts, netns, runc container and conmon). */
  let baseline: string[];
  let configToml: string;
  let work: string;
  /** Containers made by the running test. */
  const made: string[] = [];
  /** Every sandbox and container id made here, for the final cgroup check. */
  const everId: string[] = [];
  const suffix = randomBytes(3).toString('hex');
  const net = { name: `berth-ctr-${suffix}`, bridge: `bc${suffix}`, subnet: `10.${200 + (randomBytes(1)[0]! % 50)}.${randomBytes(1)[0]!}.0/24` };

  const runtimeCall = <Res>(method: string, request: object, timeoutMs?: number) => {
    const message = REQUESTS[method];
    if (message === undefined) throw new Error(`no request type for ${method}`);
    return call<object, Res>(d.runtime, method, message.fromPartial(request), timeoutMs);
  };

  function containerConfig(name: string, command: string[], extra: DeepPartial<ContainerConfig> = {}): ContainerConfig {
    return ContainerConfig.fromPartial({
      metadata: { name, attempt: 0 },
      image: { image: busybox },
      command,
      logPath: `${name}/0.log`,
      ...extra,
    });
  }

  async function create(config: ContainerConfig, pod = podId, sandboxConfig = podConfig): Promise<string> {
    const res = await runtimeCall<CreateContainerResponse>('createContainer', { podSandboxId: pod, config, sandboxConfig });
    made.push(res.containerId);
    everId.push(res.containerId);
    return res.containerId;
  }

  async function createStarted(config: ContainerConfig): Promise<string> {
    const id = await create(config);
    await runtimeCall('startContainer', { containerId: id });
    return id;
  }

  async function status(id: string, verbose = false): Promise<ContainerStatusResponse> {
    return runtimeCall<ContainerStatusResponse>('containerStatus', { containerId: id, verbose });
  }

  async function waitExited(id: string, timeoutMs = 20_000) {
    return waitFor(
      `container ${id} to exit`,
      async () => {
        const st = (await status(id)).status;
        return st?.state === ContainerState.CONTAINER_EXITED ? st : undefined;
      },
      timeoutMs,
      50,
    );
  }

  async function runPod(name: string): Promise<{ id: string; config: PodSandboxConfig }> {
    const config = PodSandboxConfig.fromPartial({
      metadata: { name, namespace: 'e2e-containers', uid: randomBytes(8).toString('hex'), attempt: 0 },
      logDirectory: join(logDir, name),
      hostname: name,
    });
    const res = await runtimeCall<RunPodSandboxResponse>('runPodSandbox', { config }, 60_000);
    everId.push(res.podSandboxId);
    return { id: res.podSandboxId, config };
  }

  async function removePod(id: string): Promise<void> {
    await runtimeCall('stopPodSandbox', { podSandboxId: id }, 60_000);
    await runtimeCall('removePodSandbox', { podSandboxId: id }, 60_000);
  }

  before(async () => {
    registry = await startRegistry();
    const [bb, pause] = await Promise.all([busyboxImage(), pauseImage()]);
    await pushImage(registry, 'e2e/busybox', 'latest', bb);
    await pushImage(registry, 'e2e/pause', 'latest', pause);
    const stopper = await buildImage({ layers: [await busyboxLayer()], config: { Env: [`PATH=${DEFAULT_PATH}`], Cmd: ['sh'], StopSignal: 'SIGUSR2' } });
    await pushImage(registry, 'e2e/stopper', 'latest', stopper);
    busybox = `${registry.host}/e2e/busybox:latest`;
    const dir = await mkdtemp(join(tmpdir(), 'berth-e2e-containers-'));
    await mkdir(join(dir, 'net.d'), { recursive: true });
    await writeFile(
      join(dir, 'net.d', '10-containers.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: net.name,
        plugins: [
          {
            type: 'bridge',
            bridge: net.bridge,
            isGateway: true,
            ipMasq: false,
            ipam: { type: 'host-local', dataDir: join(dir, 'ipam'), ranges: [[{ subnet: net.subnet }]] },
          },
        ],
      }),
    );
    configToml = `[plugins."cri.service"]\nsandbox_image = "${registry.host}/e2e/pause:latest"\n`;
    d = await startBerthd({ dir, configToml });
    work = await mkdtemp(join(tmpdir(), 'berth-e2e-containers-work-'));
    logDir = join(work, 'logs');
    for (const image of [busybox, `${registry.host}/e2e/stopper:latest`]) {
      await call(d.images, 'pullImage', PullImageRequest.fromPartial({ image: { image } }), 60_000);
    }
    const pod = await runPod('shared');
    podId = pod.id;
    podConfig = pod.config;
    baseline = await findLeaks({ dir: d.dir });
  });

  afterEach(async () => {
    const ids = made.splice(0);
    for (const id of ids) await runtimeCall('removeContainer', { containerId: id }).catch(() => undefined);
    if (d === undefined || baseline === undefined) return;
    assert.deepEqual(await findLeaks({ dir: d.dir, ids }), baseline, 'a container left something behind');
  });

  after(async () => {
    await cleanupAll([
      async () => {
        if (podId !== undefined) await removePod(podId);
        if (d !== undefined) await assertNoLeaks({ dir: d.dir, bridge: net.bridge, network: net.name, ids: everId });
      },
      async () => {
        if (d === undefined) return;
        await forceCleanup(d);
        await d.dispose();
      },
      async () => registry?.stop(),
      async () => work !== undefined && rm(work, { recursive: true, force: true }),
      async () => run('ip', ['link', 'del', net.bridge]).catch(() => undefined),
    ]);
  });

  test('create, start, status, list, stop and remove a container; its output is in the CRI log', async () => {
    const config = containerConfig('lifecycle', ['sh', '-c', 'echo hello; trap "exit 0" TERM; sleep 1000 & wait'], {
      labels: { app: 'lifecycle' },
      annotations: { note: 'kept' },
    });
    const id = await create(config);
    let st = (await status(id)).status!;
    assert.equal(st.state, ContainerState.CONTAINER_CREATED);
    assert.ok(st.createdAt > 0n);
    assert.equal(st.startedAt, 0n);
    assert.equal(st.metadata?.name, 'lifecycle');
    assert.equal(st.image?.image, busybox);
    assert.match(st.imageRef, /^sha256:[0-9a-f]{64}$/);
    assert.equal(st.imageId, st.imageRef);
    assert.deepEqual(st.labels, { app: 'lifecycle' });
    assert.deepEqual(st.annotations, { note: 'kept' });
    assert.equal(st.logPath, join(logDir, 'shared', 'lifecycle/0.log'));

    await runtimeCall('startContainer', { containerId: id });
    st = (await status(id)).status!;
    assert.equal(st.state, ContainerState.CONTAINER_RUNNING);
    assert.ok(st.startedAt >= st.createdAt);
    await assert.rejects(runtimeCall('startContainer', { containerId: id }), grpcError(GrpcStatus.FAILED_PRECONDITION, /running/));

    const listed = (await runtimeCall<ListContainersResponse>('listContainers', {})).containers.find((c) => c.id === id);
    assert.equal(listed?.podSandboxId, podId);
    assert.equal(listed?.state, ContainerState.CONTAINER_RUNNING);

    const verbose = JSON.parse((await status(id.slice(0, 12), true)).info['info'] ?? '{}');
    assert.ok(verbose.pid > 0, 'verbose info has the pid');
    assert.equal(verbose.sandboxID, podId);

    const log = await waitFor('the log line', async () => {
      const text = await readFile(st.logPath, 'utf8').catch(() => '');
      return text.includes('hello') ? text : undefined;
    }, 10_000);
    assert.match(log, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d) stdout F hello\n/);

    await runtimeCall('stopContainer', { containerId: id, timeout: 10n });
    st = (await status(id)).status!;
    assert.equal(st.state, ContainerState.CONTAINER_EXITED, 'exited as soon as StopContainer returns');
    assert.equal(st.exitCode, 0, 'SIGTERM reached the trap');
    assert.equal(st.reason, 'Completed');
    assert.ok(st.finishedAt >= st.startedAt);
    await runtimeCall('stopContainer', { containerId: id, timeout: 10n });

    await runtimeCall('removeContainer', { containerId: id });
    await assert.rejects(status(id), grpcError(GrpcStatus.NOT_FOUND, /not found/));
    await runtimeCall('removeContainer', { containerId: id });
    await runtimeCall('stopContainer', { containerId: id, timeout: 0n });
  });

  test('exit codes and reasons: 0 is Completed, 3 is Error', async () => {
    const ok = await createStarted(containerConfig('exit0', ['sh', '-c', 'exit 0']));
    const bad = await createStarted(containerConfig('exit3', ['sh', '-c', 'exit 3']));
    const [a, b] = await Promise.all([waitExited(ok), waitExited(bad)]);
    assert.equal(a.exitCode, 0);
    assert.equal(a.reason, 'Completed');
    assert.equal(b.exitCode, 3);
    assert.equal(b.reason, 'Error');
    assert.ok(b.finishedAt > 0n && b.finishedAt >= b.startedAt);
  });

  test('a container over its memory limit is OOMKilled', async () => {
    const id = await createStarted(
      containerConfig('oom', ['sh', '-c', 'a=xxxxxxxxxxxxxxxx; while :; do a="$a$a"; done'], {
        linux: { resources: { memoryLimitInBytes: 16n * MiB } },
      }),
    );
    const st = await waitExited(id, 30_000);
    assert.equal(st.reason, 'OOMKilled');
    assert.equal(st.exitCode, 137);
  });

  test('ExecSync returns output and exit code, and a timeout as DEADLINE_EXCEEDED', async () => {
    const id = await createStarted(containerConfig('exec', ['sleep', '1000']));
    const res = await runtimeCall<ExecSyncResponse>('execSync', { containerId: id, cmd: ['sh', '-c', 'echo out; echo err >&2; exit 5'], timeout: 10n });
    assert.equal(res.stdout.toString(), 'out\n');
    assert.equal(res.stderr.toString(), 'err\n');
    assert.equal(res.exitCode, 5);
    const started = Date.now();
    await assert.rejects(runtimeCall('execSync', { containerId: id, cmd: ['sleep', '30'], timeout: 1n }), grpcError(GrpcStatus.DEADLINE_EXCEEDED, /timeout 1s exceeded/));
    assert.ok(Date.now() - started < 10_000, 'the timeout ends the exec');
    await assert.rejects(runtimeCall('execSync', { containerId: id, cmd: [], timeout: 1n }), grpcError(GrpcStatus.INVALID_ARGUMENT, /command/));
    await runtimeCall('stopContainer', { containerId: id, timeout: 0n });
    await assert.rejects(runtimeCall('execSync', { containerId: id, cmd: ['true'], timeout: 1n }), grpcError(GrpcStatus.FAILED_PRECONDITION, /exited/));
  });

  test('StopContainer with timeout 0 kills at once', async () => {
    // sh as pid 1 ignores SIGTERM without a trap: only SIGKILL ends it.
    const id = await createStarted(containerConfig('kill', ['sh', '-c', 'while :; do sleep 1; done']));
    const started = Date.now();
    await runtimeCall('stopContainer', { containerId: id, timeout: 0n });
    assert.ok(Date.now() - started < 5_000, `stop took ${Date.now() - started} ms`);
    const st = (await status(id)).status!;
    assert.equal(st.state, ContainerState.CONTAINER_EXITED);
    assert.equal(st.exitCode, 137);
    assert.equal(st.reason, 'Error');
  });

  test('StopContainer sends the stop signal the config names, else the image\'s', async () => {
    const id = await createStarted(
      containerConfig('stopsignal', ['sh', '-c', 'trap "exit 42" USR1; trap "exit 1" TERM; sleep 1000 & wait'], { stopSignal: Signal.SIGUSR1 }),
    );
    assert.equal((await status(id)).status?.stopSignal, Signal.SIGUSR1);
    await runtimeCall('stopContainer', { containerId: id, timeout: 10n });
    assert.equal((await status(id)).status?.exitCode, 42);

    // Without one in the config, the image's StopSignal is sent.
    const fromImage = await createStarted(
      containerConfig('imagesignal', ['sh', '-c', 'trap "exit 43" USR2; trap "exit 1" TERM; sleep 1000 & wait'], { image: { image: `${registry.host}/e2e/stopper:latest` } }),
    );
    assert.equal((await status(fromImage)).status?.stopSignal, Signal.SIGUSR2);
    await runtimeCall('stopContainer', { containerId: fromImage, timeout: 10n });
    assert.equal((await status(fromImage)).status?.exitCode, 43);
  });

  test('a container can join the pid namespace of another container of the pod (TARGET)', async () => {
    const target = await createStarted(
      containerConfig('target', ['sh', '-c', 'exec sleep 4242'], { linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.CONTAINER } } } }),
    );
    const joiner = await createStarted(
      containerConfig('joiner', ['sleep', '1000'], { linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.TARGET, targetId: target } } } }),
    );
    const res = await runtimeCall<ExecSyncResponse>('execSync', { containerId: joiner, cmd: ['ps', '-o', 'pid,args'], timeout: 10n });
    assert.match(res.stdout.toString(), /^\s*1\s+sleep 4242$/m, 'the target is pid 1 of the shared namespace');
    await assert.rejects(
      create(containerConfig('joiner2', ['true'], { linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.TARGET, targetId: 'f'.repeat(64) } } } })),
      grpcError(GrpcStatus.NOT_FOUND, /target container/),
    );
  });

  test('UpdateContainerResources changes the live cgroup memory limit', async () => {
    const id = await createStarted(containerConfig('update', ['sleep', '1000'], { linux: { resources: { memoryLimitInBytes: 64n * MiB } } }));
    const info = JSON.parse((await status(id, true)).info['info'] ?? '{}') as { cgroupsPath: string };
    const limitFile = join('/sys/fs/cgroup/memory', info.cgroupsPath, 'memory.limit_in_bytes');
    assert.equal((await readFile(limitFile, 'utf8')).trim(), String(64n * MiB));
    await runtimeCall('updateContainerResources', { containerId: id, linux: { memoryLimitInBytes: 32n * MiB } });
    assert.equal((await readFile(limitFile, 'utf8')).trim(), String(32n * MiB));
    assert.equal((await status(id)).status?.resources?.linux?.memoryLimitInBytes, 32n * MiB);
  });

  test('ReopenContainerLog: after the log is renamed, output goes to a new file', async () => {
    const id = await createStarted(containerConfig('reopen', ['sh', '-c', 'while :; do echo tick; sleep 0.1; done']));
    const logPath = (await status(id)).status!.logPath;
    await waitFor('first ticks', async () => ((await readFile(logPath, 'utf8').catch(() => '')).includes('tick') ? true : undefined), 10_000);
    await rename(logPath, `${logPath}.1`);
    await runtimeCall('reopenContainerLog', { containerId: id });
    await waitFor('ticks in the new file', async () => ((await readFile(logPath, 'utf8').catch(() => '')).includes('stdout F tick') ? true : undefined), 10_000);
    await runtimeCall('stopContainer', { containerId: id, timeout: 0n });
    await assert.rejects(runtimeCall('reopenContainerLog', { containerId: id }), grpcError(GrpcStatus.FAILED_PRECONDITION, /not running|exited/));
  });

  test('ListContainers filters by id prefix, state, pod id prefix and labels', async () => {
    const other = await runPod('other');
    try {
      const a = await createStarted(containerConfig('list-a', ['sleep', '1000'], { labels: { tier: 'a', shared: 'yes' } }));
      const b = await create(containerConfig('list-b', ['sleep', '1000'], { labels: { tier: 'b', shared: 'yes' } }));
      const c = await create(containerConfig('list-c', ['sleep', '1000'], { labels: { tier: 'c', shared: 'yes' } }), other.id, other.config);
      const ids = async (filter: object) => (await runtimeCall<ListContainersResponse>('listContainers', { filter })).containers.map((x) => x.id).sort();
      assert.deepEqual(await ids({}), [a, b, c].sort());
      assert.deepEqual(await ids({ id: a.slice(0, 10) }), [a]);
      assert.deepEqual(await ids({ state: { state: ContainerState.CONTAINER_RUNNING } }), [a]);
      assert.deepEqual(await ids({ state: { state: ContainerState.CONTAINER_CREATED } }), [b, c].sort());
      assert.deepEqual(await ids({ podSandboxId: other.id.slice(0, 8) }), [c]);
      assert.deepEqual(await ids({ podSandboxId: podId }), [a, b].sort());
      assert.deepEqual(await ids({ labelSelector: { shared: 'yes', tier: 'b' } }), [b]);
      assert.deepEqual(await ids({ labelSelector: { tier: 'nope' } }), []);
      assert.deepEqual(await ids({ podSandboxId: podId, labelSelector: { tier: 'c' } }), []);
      await runtimeCall('removeContainer', { containerId: c });
    } finally {
      await removePod(other.id);
    }
  });

  test('the termination message is read from the file mounted at its path', async () => {
    const hostFile = join(work, 'termination-log');
    await writeFile(hostFile, '');
    const id = await createStarted(
      containerConfig('term', ['sh', '-c', 'printf "gone for good" > /dev/termination-log; exit 1'], {
        mounts: [{ containerPath: '/dev/termination-log', hostPath: hostFile }],
        annotations: { 'io.kubernetes.container.terminationMessagePath': '/dev/termination-log' },
      }),
    );
    const st = await waitExited(id);
    assert.equal(st.message, 'gone for good');
    assert.equal(st.reason, 'Error');
  });

  test('CreateContainer errors: unknown pod, missing image, duplicate name', async () => {
    await assert.rejects(create(containerConfig('nopod', ['true']), 'f'.repeat(64)), grpcError(GrpcStatus.NOT_FOUND, /not found/));
    await assert.rejects(
      create(ContainerConfig.fromPartial({ metadata: { name: 'noimage' }, image: { image: `${registry.host}/e2e/absent:latest` }, command: ['true'] })),
      grpcError(GrpcStatus.NOT_FOUND, /e2e\/absent/),
    );
    await create(containerConfig('dup', ['true']));
    await assert.rejects(create(containerConfig('dup', ['true'])), grpcError(GrpcStatus.ALREADY_EXISTS, /dup/));
  });

  test('a create that fails at the spec or in the runtime undoes every step', async () => {
    // Spec generation fails after the rootfs is mounted (the user is looked up in it).
    await assert.rejects(
      create(containerConfig('nouser', ['true'], { linux: { securityContext: { runAsUsername: 'nosuchuser' } } })),
      (err: ServiceError) => /nosuchuser/.test(err.details),
    );
    // runc create fails after conmon started: the binary is not in the image.
    await assert.rejects(create(containerConfig('nobinary', ['/no/such/binary'])), (err: ServiceError) => /no\/such\/binary/.test(err.details));
    const listed = (await runtimeCall<ListContainersResponse>('listContainers', {})).containers;
    assert.deepEqual(listed, []);
    // The names were released with everything else.
    const id = await create(containerConfig('nobinary', ['true']));
    assert.equal((await status(id)).status?.metadata?.name, 'nobinary');
  });

  test('GetContainerEvents streams CREATED, STARTED, STOPPED and DELETED', async () => {
    const stream = (d.runtime as unknown as { getContainerEvents(req: object): ClientReadableStream<ContainerEventResponse> }).getContainerEvents({});
    const seen: ContainerEventResponse[] = [];
    stream.on('data', (e: ContainerEventResponse) => seen.push(e));
    stream.on('error', () => undefined);
    try {
      // The subscription is made when the server gets the call: give it a moment.
      await new Promise((r) => setTimeout(r, 300));
      const id = await createStarted(containerConfig('events', ['sleep', '1000']));
      await runtimeCall('stopContainer', { containerId: id, timeout: 0n });
      await runtimeCall('removeContainer', { containerId: id });
      const mine = await waitFor(
        'four events',
        () => {
          const m = seen.filter((e) => e.containerId === id);
          return m.length >= 4 ? m : undefined;
        },
        10_000,
      );
      assert.deepEqual(
        mine.map((e) => e.containerEventType),
        [
          ContainerEventType.CONTAINER_CREATED_EVENT,
          ContainerEventType.CONTAINER_STARTED_EVENT,
          ContainerEventType.CONTAINER_STOPPED_EVENT,
          ContainerEventType.CONTAINER_DELETED_EVENT,
        ],
      );
      assert.equal(mine[0]?.podSandboxStatus?.id, podId);
      assert.ok(mine.every((e) => e.createdAt > 0n));
      const started = mine[1]?.containersStatuses.find((s) => s.id === id);
      assert.equal(started?.state, ContainerState.CONTAINER_RUNNING);
      assert.equal(mine[2]?.containersStatuses.find((s) => s.id === id)?.state, ContainerState.CONTAINER_EXITED);
      assert.equal(mine[3]?.containersStatuses.find((s) => s.id === id), undefined);
    } finally {
      stream.cancel();
    }
  });

  test('ContainerStats and ListContainerStats report cpu, memory and the writable layer', async () => {
    const id = await createStarted(containerConfig('stats', ['sh', '-c', 'head -c 1048576 /dev/zero > /tmp/blob; sleep 1000']));
    const stats = await waitFor(
      'the blob in the writable layer',
      async () => {
        const s = (await runtimeCall<ContainerStatsResponse>('containerStats', { containerId: id })).stats;
        return (s?.writableLayer?.usedBytes?.value ?? 0n) >= 1024n * 1024n ? s : undefined;
      },
      10_000,
    );
    assert.equal(stats.attributes?.id, id);
    assert.ok((stats.cpu?.usageCoreNanoSeconds?.value ?? 0n) > 0n, 'cpu used');
    assert.ok((stats.memory?.workingSetBytes?.value ?? 0n) > 0n, 'memory used');
    assert.ok((stats.writableLayer?.inodesUsed?.value ?? 0n) > 0n);
    assert.ok((stats.writableLayer?.fsId?.mountpoint ?? '') !== '');
    const second = (await runtimeCall<ContainerStatsResponse>('containerStats', { containerId: id })).stats;
    assert.ok(second?.cpu?.usageNanoCores !== undefined, 'a second sample has a rate');
    const listed = (await runtimeCall<ListContainerStatsResponse>('listContainerStats', { filter: { podSandboxId: podId } })).stats;
    assert.deepEqual(
      listed.map((s) => s.attributes?.id),
      [id],
    );
  });
  test('after a kill -9 of berthd: running containers run and log on, an exit while it was down is recorded', async () => {
    const runner = await createStarted(containerConfig('survivor', ['sh', '-c', 'while :; do echo alive; sleep 0.1; done']));
    const quitter = await createStarted(containerConfig('quitter', ['sh', '-c', 'sleep 1; exit 7']));
    const idle = await create(containerConfig('idle', ['sleep', '1000']));
    const logPath = (await status(runner)).status!.logPath;
    assert.equal(await d.stop('SIGKILL'), 'SIGKILL');
    const lines = async () => (await readFile(logPath, 'utf8')).split('\n').filter((l) => l.endsWith(' stdout F alive')).length;
    const before = await lines();
    await new Promise((r) => setTimeout(r, 2000));
    assert.ok((await lines()) > before, 'the container logs while berthd is down');
    d = await startBerthd({ dir: d.dir, configToml });

    const q = (await status(quitter)).status!;
    assert.equal(q.state, ContainerState.CONTAINER_EXITED);
    assert.equal(q.exitCode, 7);
    assert.equal(q.reason, 'Error');
    assert.ok(q.finishedAt > q.startedAt);
    assert.equal((await status(runner)).status?.state, ContainerState.CONTAINER_RUNNING);
    assert.equal((await status(idle)).status?.state, ContainerState.CONTAINER_CREATED);
    const exec = await runtimeCall<ExecSyncResponse>('execSync', { containerId: runner, cmd: ['echo', 'still here'], timeout: 10n });
    assert.equal(exec.stdout.toString(), 'still here\n');
    await runtimeCall('stopContainer', { containerId: runner, timeout: 0n });
    assert.equal((await status(runner)).status?.exitCode, 137);
  });
});
