import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import { createLogger } from '../../src/core/log.js';
import { SqliteMetadata } from '../../src/core/metadata/index.js';
import { openCriStores, sandboxName, containerName, newId, type ContainerRecord, type SandboxRecord } from '../../src/cri/store/index.js';
import { ContainerConfig, PodSandboxConfig } from '../../src/generated/api.js';
import { closeTempMetadata, isBerth, openTempMetadata } from './metadata-helpers.js';

const log = createLogger('silent');
let dir: string;
let meta: SqliteMetadata;

beforeEach(async () => ({ dir, meta } = await openTempMetadata('berth-cri-store-')));
afterEach(() => closeTempMetadata(dir, meta));

function sandbox(id: string, name: string, labels: Record<string, string> = {}): SandboxRecord {
  const config = PodSandboxConfig.fromPartial({
    metadata: { name, namespace: 'ns', uid: `uid-${name}`, attempt: 0 },
    labels,
    // An int64 deep inside the config must survive the trip through JSON.
    linux: { securityContext: { runAsUser: { value: 12345678901234567n } }, resources: { memoryLimitInBytes: 9007199254740993n } },
  });
  return {
    id,
    name: sandboxName(config.metadata!),
    config,
    runtimeHandler: '',
    handler: 'runc',
    state: 'ready',
    createdAt: 1_700_000_000_123_456_789n,
    hostNetwork: false,
    netnsPath: `/run/netns/${id}`,
    ips: ['10.0.0.2'],
    pid: 42,
    image: { id: 'sha256:abc', ref: 'pause:latest' },
    snapshotKey: `sandbox-${id}`,
    rootfs: `/x/${id}/rootfs`,
    dir: `/x/${id}`,
    stateDir: `/y/${id}`,
    hostnamePath: '',
    hostsPath: '',
    resolvConfPath: '',
    shmPath: '',
  };
}

function container(id: string, sb: SandboxRecord, name: string, labels: Record<string, string> = {}): ContainerRecord {
  const config = ContainerConfig.fromPartial({ metadata: { name, attempt: 1 }, labels, linux: { resources: { memoryLimitInBytes: 2n ** 60n } } });
  return {
    id,
    sandboxId: sb.id,
    name: containerName(config.metadata!, sb.config.metadata!),
    config,
    image: { id: 'sha256:def', ref: 'r@sha256:1', userSpecified: 'busybox' },
    state: 'created',
    createdAt: 5n,
    startedAt: 0n,
    finishedAt: 0n,
    exitCode: 0,
    reason: '',
    message: '',
    pid: 0,
    logPath: '/log',
    snapshotKey: 'k',
    rootfs: '/r',
    bundle: '/b',
    handler: 'runc',
    mounts: [],
    resources: { cpuPeriod: 100000n, cpuQuota: 50000n, cpuShares: 2n, memoryLimitInBytes: 1n << 40n, oomScoreAdj: 0n, cpusetCpus: '', cpusetMems: '', hugepageLimits: [], unified: {}, memorySwapLimitInBytes: 0n },
    stopSignal: '',
  };
}

test('records survive a reload with their bigints, names stay reserved, ids resolve by prefix', () => {
  const { sandboxes, containers } = openCriStores(meta);
  const a = sandboxes.add(sandbox('aa11' + '0'.repeat(60), 'a', { app: 'x' }));
  const b = sandboxes.add(sandbox('aa22' + '0'.repeat(60), 'b', { app: 'y' }));
  containers.add(container('cc11' + '0'.repeat(60), a, 'web', { tier: 'front' }));
  containers.add(container('cc22' + '0'.repeat(60), b, 'web'));

  const again = openCriStores(meta);
  assert.deepEqual(again.sandboxes.get(a.id), a);
  assert.equal(again.sandboxes.get(a.id)?.config.linux?.resources?.memoryLimitInBytes, 9007199254740993n);
  assert.equal(again.sandboxes.get(a.id)?.config.linux?.securityContext?.runAsUser?.value, 12345678901234567n);
  assert.deepEqual(again.containers.get('cc11' + '0'.repeat(60)), containers.get('cc11' + '0'.repeat(60)));
  assert.throws(() => again.sandboxes.add(sandbox(newId(), 'a')), isBerth('already-exists', 'ERR_CRI_NAME_RESERVED'));

  assert.equal(again.sandboxes.find('aa1')?.id, a.id);
  assert.throws(() => again.sandboxes.find('aa'), isBerth('invalid-argument', 'ERR_CRI_ID_AMBIGUOUS'));
  assert.equal(again.sandboxes.find('ff'), undefined);
  assert.throws(() => again.sandboxes.resolve('ff'), isBerth('not-found', 'ERR_CRI_SANDBOX_NOT_FOUND'));

  assert.deepEqual(again.sandboxes.filter({ labelSelector: { app: 'y' } }).map((s) => s.id), [b.id]);
  assert.deepEqual(again.sandboxes.filter({ id: 'aa' }), [], 'an ambiguous prefix filters to nothing');
  assert.deepEqual(again.containers.filter({ sandboxId: a.id }).map((c) => c.id), ['cc11' + '0'.repeat(60)]);
  assert.deepEqual(again.containers.filter({ labelSelector: { tier: 'front' } }).length, 1);
  assert.deepEqual(again.containers.filter({ state: 'running' }), []);
});

test('update writes through and keeps the sandbox index; delete releases the name', () => {
  const { sandboxes, containers } = openCriStores(meta);
  const a = sandboxes.add(sandbox(newId(), 'a'));
  const c = containers.add(container(newId(), a, 'web'));
  containers.patch(c.id, { state: 'running', startedAt: 99n });
  sandboxes.patch(a.id, { state: 'notready', exitCode: 0, exitedAt: 7n });
  assert.throws(() => containers.update(c.id, (cur) => cur), isBerth('internal', 'ERR_CRI_RECORD_UPDATE'));

  const again = openCriStores(meta);
  assert.equal(again.containers.get(c.id)?.state, 'running');
  assert.equal(again.containers.get(c.id)?.startedAt, 99n);
  assert.equal(again.sandboxes.get(a.id)?.exitedAt, 7n);
  assert.equal(again.containers.bySandbox(a.id).length, 1);

  again.containers.delete(c.id);
  again.containers.delete(c.id);
  assert.equal(again.containers.bySandbox(a.id).length, 0);
  again.containers.add(container(newId(), a, 'web'));
  assert.equal(openCriStores(meta).containers.size, 1);
});

test('a name can be reserved before its record exists, and released on failure', () => {
  const { sandboxes } = openCriStores(meta);
  const id = newId();
  sandboxes.names.reserve('k8s_POD_x', id);
  assert.throws(() => sandboxes.names.reserve('k8s_POD_x', newId()), isBerth('already-exists', 'ERR_CRI_NAME_RESERVED'));
  sandboxes.names.release('k8s_POD_x', 'someone-else');
  assert.equal(sandboxes.names.owner('k8s_POD_x'), id);
  sandboxes.names.release('k8s_POD_x', id);
  sandboxes.names.reserve('k8s_POD_x', newId());
});
