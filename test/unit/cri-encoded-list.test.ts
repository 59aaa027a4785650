import assert from 'node:assert/strict';
import { test } from 'node:test';
import { containerList, toCriContainer } from '../../src/cri/container/status.js';
import { acceptingEncodedResponses } from '../../src/cri/encoded-list.js';
import { sandboxList, toCriSandbox } from '../../src/cri/sandbox/status.js';
import { sandboxName, containerName, type ContainerRecord, type SandboxRecord } from '../../src/cri/store/index.js';
import { ContainerConfig, ListContainersResponse, ListPodSandboxResponse, PodSandboxConfig, RuntimeServiceService } from '../../src/generated/api.js';

function sandbox(n: number): SandboxRecord {
  const config = PodSandboxConfig.fromPartial({
    metadata: { name: `pod-${n}`, namespace: 'ns', uid: `uid-${n}`, attempt: 1 },
    labels: { app: `a${n}`, tier: 'web' },
    annotations: { note: 'x'.repeat(n * 50) },
  });
  const id = n.toString(16).padStart(64, 'a');
  return {
    id,
    name: sandboxName(config.metadata!),
    config,
    runtimeHandler: n % 2 === 0 ? '' : 'other',
    handler: 'runc',
    state: n % 2 === 0 ? 'ready' : 'notready',
    createdAt: 1_700_000_000_123_456_789n + BigInt(n),
    hostNetwork: false,
    netnsPath: '',
    pid: 0,
    ips: [],
    image: { id: 'sha256:abc', ref: 'pause:latest' },
    snapshotKey: '',
    rootfs: '',
    dir: '',
    stateDir: '',
    hostnamePath: '',
    hostsPath: '',
    resolvConfPath: '',
    shmPath: '',
  };
}

function container(n: number, sb: SandboxRecord): ContainerRecord {
  const config = ContainerConfig.fromPartial({
    metadata: { name: `c-${n}`, attempt: n },
    image: { image: 'busybox', annotations: { a: 'b' } },
    labels: { n: String(n) },
    annotations: { big: 'y'.repeat(200 * n) },
  });
  return {
    id: n.toString(16).padStart(64, 'c'),
    sandboxId: sb.id,
    name: containerName(config.metadata!, sb.config.metadata!),
    config,
    image: { id: 'sha256:def', ref: 'r@sha256:1', userSpecified: n % 2 === 0 ? 'busybox:latest' : '' },
    state: n % 2 === 0 ? 'running' : 'exited',
    createdAt: 5n * BigInt(n),
    startedAt: 0n,
    finishedAt: 0n,
    exitCode: 0,
    reason: '',
    message: '',
    pid: 0,
    logPath: '',
    snapshotKey: '',
    rootfs: '',
    bundle: '',
    handler: 'runc',
    mounts: [],
    stopSignal: '',
  };
}

test('a list from cached entries decodes to the same response as encoding the messages', () => {
  const pods = [0, 1, 2].map(sandbox);
  const containers = [0, 1, 2, 3].map((n) => container(n, pods[n % 3]!));

  const listed = containerList.encode(containers);
  assert.deepEqual(ListContainersResponse.decode(listed), ListContainersResponse.decode(ListContainersResponse.encode({ containers: containers.map(toCriContainer) }).finish()));
  assert.deepEqual(ListContainersResponse.decode(listed).containers.map((c) => c.id), containers.map((c) => c.id));

  const pl = sandboxList.encode(pods);
  assert.deepEqual(ListPodSandboxResponse.decode(pl), { items: pods.map(toCriSandbox) });

  assert.equal(containerList.encode([]).length, 0);
  assert.deepEqual(ListContainersResponse.decode(containerList.encode([])), { containers: [] });
});

test('an updated record (a new object) is encoded anew; the old one keeps its bytes', () => {
  const pod = sandbox(4);
  const before = container(7, pod);
  const first = containerList.encode([before]);
  // The same records again (in a new array): the same bytes, not encoded or copied again.
  assert.equal(containerList.encode([before]), first);
  assert.equal(before.state, 'exited');
  const after: ContainerRecord = { ...before, state: 'running', createdAt: 99n };
  const updated = ListContainersResponse.decode(containerList.encode([after, before]));
  assert.equal(updated.containers.length, 2);
  assert.deepEqual(updated.containers[0], toCriContainer(after));
  assert.deepEqual(updated.containers[1], toCriContainer(before));
  assert.notDeepEqual(updated.containers[0], updated.containers[1]);
  // Same length, one record replaced: a new list.
  assert.deepEqual(ListContainersResponse.decode(containerList.encode([after])).containers, [toCriContainer(after)]);
  assert.deepEqual(ListContainersResponse.decode(containerList.encode([before])).containers, [toCriContainer(before)]);
});

test('the wrapped definition passes encoded bytes through and still encodes messages', () => {
  const def = acceptingEncodedResponses(RuntimeServiceService, ['listContainers', 'listPodSandbox']);
  const bytes = Buffer.from([1, 2, 3]);
  assert.equal(def.listContainers.responseSerialize(bytes as never), bytes);
  const message = { containers: [toCriContainer(container(1, sandbox(1)))] };
  assert.deepEqual(ListContainersResponse.decode(def.listContainers.responseSerialize(message)), message);
  // Methods not named are untouched.
  assert.equal(def.version, RuntimeServiceService.version);
  assert.throws(() => acceptingEncodedResponses(RuntimeServiceService, ['noSuchMethod' as never]), /not a method/);
});
