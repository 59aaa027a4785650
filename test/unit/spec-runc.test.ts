/**
 * Generated specs run under the real runc on this host: a busybox-static
 * rootfs, a sandbox (busybox sleep standing in for pause) holding a new
 * network, IPC and UTS namespace, and containers joining it. Each container
 * prints what it sees; the checks read that output.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  ContainerConfig,
  type DeepPartial,
  NamespaceMode,
  PodSandboxConfig,
  SecurityProfile_ProfileType,
} from '../../src/generated/api.js';
import { containerSpec, hostFacts, rootfsPasswd, sandboxSpec, type HostFacts, type OciSpec, type SandboxRef } from '../../src/core/runtime/spec/index.js';

const run = promisify(execFile);
const RUNC = '/usr/sbin/runc';
const BUSYBOX = '/bin/busybox';
const APPLETS = ['sh', 'id', 'cat', 'touch', 'grep', 'unshare', 'sleep', 'wc', 'hostname', 'true', 'echo'];

let tmp = '';
let rootfs = '';
let runcRoot = '';
let cgroupParent = '';
let host: HostFacts;
const started: string[] = [];
let sandbox: SandboxRef;
let privilegedSandbox: SandboxRef;

function podConfig(privileged: boolean): PodSandboxConfig {
  return PodSandboxConfig.fromPartial<DeepPartial<PodSandboxConfig>>({
    metadata: { name: 'spec-test', uid: 'uid-spec', namespace: 'default', attempt: 0 },
    hostname: 'spec-pod',
    logDirectory: path.join(tmp, 'logs'),
    linux: {
      cgroupParent,
      sysctls: { 'net.ipv4.ip_unprivileged_port_start': '80' },
      securityContext: {
        privileged,
        namespaceOptions: { network: NamespaceMode.POD, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD },
      },
    },
  });
}

async function writeBundle(id: string, spec: OciSpec): Promise<string> {
  const bundle = path.join(tmp, 'bundles', id);
  await mkdir(bundle, { recursive: true });
  await writeFile(path.join(bundle, 'config.json'), JSON.stringify(spec, null, 2));
  return bundle;
}

async function runc(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(RUNC, ['--root', runcRoot, ...args], { timeout: 60_000 });
}

/** Runs a container to completion; returns its output and exit code (runc run passes the code on). */
async function runContainer(id: string, spec: OciSpec): Promise<{ code: number; stdout: string; stderr: string }> {
  const bundle = await writeBundle(id, spec);
  started.push(id);
  try {
    const { stdout, stderr } = await runc(['run', '--bundle', bundle, id]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

let counter = 0;
async function container(config: DeepPartial<ContainerConfig>, sb: SandboxRef = sandbox) {
  const id = `spec-ctr-${process.pid}-${++counter}`;
  const { spec, notes } = await containerSpec({
    id,
    sandbox: sb,
    config: ContainerConfig.fromPartial<DeepPartial<ContainerConfig>>({ metadata: { name: `c${counter}`, attempt: 0 }, ...config }),
    image: { config: { env: ['IMAGE_ENV=yes'], entrypoint: [], cmd: ['/bin/sh'] } },
    imageName: 'test/busybox:latest',
    rootfs,
    host,
    passwd: rootfsPasswd(rootfs),
  });
  return { id, spec, notes, result: await runContainer(id, spec) };
}

const ns = { network: NamespaceMode.POD, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD };
const sh = (script: string): DeepPartial<ContainerConfig> => ({ command: ['/bin/sh', '-c', script] });

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'berth-spec-runc-'));
  rootfs = path.join(tmp, 'rootfs');
  runcRoot = path.join(tmp, 'runc');
  cgroupParent = `/berth-test-${randomBytes(4).toString('hex')}`;
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'home/app']) await mkdir(path.join(rootfs, d), { recursive: true });
  await copyFile(BUSYBOX, path.join(rootfs, 'bin/busybox'));
  for (const a of APPLETS) await symlink('busybox', path.join(rootfs, 'bin', a));
  await writeFile(path.join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/home/app:/bin/sh\n');
  await writeFile(path.join(rootfs, 'etc/group'), 'root:x:0:\nstaff:x:50:app\napp:x:1234:\n');
  for (const f of ['etc/hosts', 'etc/resolv.conf', 'etc/hostname']) await writeFile(path.join(rootfs, f), '');
  const files = { resolv: path.join(tmp, 'resolv.conf'), hosts: path.join(tmp, 'hosts'), hostname: path.join(tmp, 'hostname'), shm: path.join(tmp, 'shm') };
  await writeFile(files.resolv, 'nameserver 127.0.0.1\n');
  await writeFile(files.hosts, '127.0.0.1 localhost spec-pod\n');
  await writeFile(files.hostname, 'spec-pod\n');
  await mkdir(files.shm, { mode: 0o1777 });
  await mkdir(runcRoot);
  host = await hostFacts();

  const sandboxId = `spec-sb-${process.pid}`;
  const sb = await sandboxSpec({
    id: sandboxId,
    config: podConfig(false),
    image: { config: { env: ['PATH=/bin'], entrypoint: ['/bin/sleep'], cmd: ['600'] } },
    imageName: 'test/pause:latest',
    rootfs,
    host,
    passwd: rootfsPasswd(rootfs),
    resolvConfPath: files.resolv,
    shmPath: files.shm,
  });
  const bundle = await writeBundle(sandboxId, sb.spec);
  started.push(sandboxId);
  // Detached: the sleep inherits runc's stdio, so give it none (a pipe would stay open) and collect runc's errors in a file.
  const errLog = path.join(tmp, 'sandbox-runc.err');
  const errFd = openSync(errLog, 'w');
  try {
    const child = spawn(RUNC, ['--root', runcRoot, 'run', '--detach', '--bundle', bundle, sandboxId], { stdio: ['ignore', 'ignore', errFd] });
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', resolve);
    });
    assert.equal(code, 0, `runc run --detach failed: ${await readFile(errLog, 'utf8')}`);
  } finally {
    closeSync(errFd);
  }
  const state = JSON.parse((await runc(['state', sandboxId])).stdout) as { pid: number; status: string };
  assert.equal(state.status, 'running');
  const ref = { id: sandboxId, pid: state.pid, resolvConfPath: files.resolv, hostsPath: files.hosts, hostnamePath: files.hostname, shmPath: files.shm };
  sandbox = { ...ref, config: podConfig(false) };
  privilegedSandbox = { ...ref, config: podConfig(true) };
});

after(async () => {
  for (const id of started.reverse()) {
    await runc(['delete', '--force', id]).catch(() => undefined);
  }
  // runc removes each container's cgroup; the test parent is ours to remove in every hierarchy.
  if (cgroupParent !== '') {
    for (const hierarchy of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
      const dir = path.join('/sys/fs/cgroup', hierarchy, cgroupParent);
      const children = await readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const c of children) if (c.isDirectory()) await rmdir(path.join(dir, c.name)).catch(() => undefined);
      await rmdir(dir).catch(() => undefined);
    }
  }
  if (tmp !== '') await rm(tmp, { recursive: true, force: true });
});

test('the sandbox holds the pod hostname and sysctls; a container joins its namespaces', async () => {
  const { id, result, spec } = await container({
    ...sh('hostname; cat /proc/sys/net/ipv4/ip_unprivileged_port_start; echo $HOSTNAME $IMAGE_ENV; cat /etc/hosts'),
    linux: { securityContext: { namespaceOptions: ns } },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(spec.linux.cgroupsPath, `${cgroupParent}/${id}`);
  assert.equal(result.stdout, 'spec-pod\n80\nspec-pod yes\n127.0.0.1 localhost spec-pod\n');
});

test('run_as_user with supplemental groups: id inside the container', async () => {
  const { result, spec } = await container({
    ...sh('id -u; id -g; id -G'),
    linux: { securityContext: { namespaceOptions: ns, runAsUser: { value: 1234n }, supplementalGroups: [2000n, 3000n] } },
  });
  assert.deepEqual(spec.process.user, { uid: 1234, gid: 1234, additionalGids: [50, 2000, 3000] });
  assert.equal(result.code, 0, result.stderr);
  const [uid, gid, groups] = result.stdout.trim().split('\n');
  assert.equal(uid, '1234');
  assert.equal(gid, '1234');
  assert.deepEqual(new Set(groups?.split(' ')), new Set(['1234', '50', '2000', '3000']));

  const named = await container({ ...sh('id -u; id -g'), linux: { securityContext: { namespaceOptions: ns, runAsUsername: 'app', runAsGroup: { value: 77n } } } });
  assert.equal(named.result.stdout, '1234\n77\n');
});

test('drop ALL + add NET_BIND_SERVICE leaves exactly that capability', async () => {
  const { result } = await container({
    ...sh('grep -E "^Cap(Eff|Prm|Bnd)" /proc/self/status'),
    linux: { securityContext: { namespaceOptions: ns, capabilities: { dropCapabilities: ['ALL'], addCapabilities: ['NET_BIND_SERVICE'] } } },
  });
  assert.equal(result.code, 0, result.stderr);
  // CAP_NET_BIND_SERVICE is bit 10.
  assert.equal(result.stdout, 'CapPrm:\t0000000000000400\nCapEff:\t0000000000000400\nCapBnd:\t0000000000000400\n');
});

test('a read-only rootfs refuses writes; the pod shm stays writable', async () => {
  const { result } = await container({
    ...sh('touch /newfile; echo touch=$?; touch /dev/shm/ok && echo shm=ok'),
    linux: { securityContext: { namespaceOptions: ns, readonlyRootfs: true } },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /touch=1\n/);
  assert.match(result.stdout, /shm=ok\n/);
  assert.match(result.stdout + result.stderr, /Read-only file system/);
});

test('default masked paths hide /proc/timer_list; a request without it shows it', async () => {
  const masked = await container({ ...sh('wc -c < /proc/timer_list'), linux: { securityContext: { namespaceOptions: ns } } });
  assert.equal(masked.result.code, 0, masked.result.stderr);
  assert.equal(masked.result.stdout.trim(), '0');
  const open = await container({ ...sh('wc -c < /proc/timer_list'), linux: { securityContext: { namespaceOptions: ns, maskedPaths: ['/proc/kcore'] } } });
  assert.equal(open.result.code, 0, open.result.stderr);
  assert.ok(Number(open.result.stdout.trim()) > 0, open.result.stdout);
});

test('seccomp RuntimeDefault refuses unshare(2); Unconfined allows it', async () => {
  const script = 'unshare -U true; echo rc=$?';
  const confined = await container({
    ...sh(script),
    linux: { securityContext: { namespaceOptions: ns, seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault } } },
  });
  assert.equal(confined.result.code, 0, confined.result.stderr);
  assert.match(confined.result.stdout, /rc=1\n/);
  assert.match(confined.result.stderr, /Operation not permitted/);
  const unconfined = await container({
    ...sh(script),
    linux: { securityContext: { namespaceOptions: ns, seccomp: { profileType: SecurityProfile_ProfileType.Unconfined } } },
  });
  assert.equal(unconfined.result.stdout, 'rc=0\n', unconfined.result.stderr);
  // A non-root user without no_new_privs: runc must load the filter while it still may.
  const asUser = await container({
    ...sh('id -u; unshare -U true; echo rc=$?'),
    linux: {
      securityContext: { namespaceOptions: ns, runAsUser: { value: 1234n }, noNewPrivs: false, seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault } },
    },
  });
  assert.equal(asUser.result.code, 0, asUser.result.stderr);
  assert.equal(asUser.result.stdout, '1234\nrc=1\n');
});

test('a privileged container runs with every capability of the host (no CAP_SYS_RESOURCE trap)', async () => {
  const { result, spec } = await container(
    { ...sh('grep ^CapEff /proc/self/status; cat /proc/timer_list | wc -c'), linux: { securityContext: { namespaceOptions: ns, privileged: true } } },
    privilegedSandbox,
  );
  assert.equal(result.code, 0, result.stderr);
  const [capLine, timerBytes] = result.stdout.trim().split('\n');
  const hostBounding = (await readFile('/proc/self/status', 'utf8')).split('\n').find((l) => l.startsWith('CapBnd:'))?.split('\t')[1];
  assert.equal(capLine, `CapEff:\t${hostBounding}`);
  assert.ok(Number(timerBytes) > 0, 'nothing masked');
  assert.ok(spec.linux.devices.length > 5, 'host devices passed in');
});

test('CRI volume (read-only) and device mounts, oom_score_adj, and a TARGET pid namespace', async () => {
  const vol = path.join(tmp, 'vol');
  await mkdir(vol, { recursive: true });
  await writeFile(path.join(vol, 'hello'), 'from the host\n');
  const { result, notes } = await container({
    ...sh('cat /data/hello; touch /data/x; echo touch=$?; echo hi > /dev/mynull && echo dev=ok; cat /proc/self/oom_score_adj; cat /proc/1/comm'),
    mounts: [{ containerPath: '/data', hostPath: vol, readonly: true }],
    devices: [{ containerPath: '/dev/mynull', hostPath: '/dev/null', permissions: 'rw' }],
    linux: {
      resources: { oomScoreAdj: 500n },
      securityContext: { namespaceOptions: { ...ns, pid: NamespaceMode.POD } },
    },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(notes, []);
  assert.equal(result.stdout, 'from the host\ntouch=1\ndev=ok\n500\nsleep\n');

  // Below berthd's own score: raised to it and reported.
  const low = await container({ ...sh('cat /proc/self/oom_score_adj'), linux: { resources: { oomScoreAdj: -1000n }, securityContext: { namespaceOptions: ns } } });
  assert.equal(low.result.code, 0, low.result.stderr);
  assert.equal(low.result.stdout.trim(), String(host.oomScoreAdjFloor));
  if (host.oomScoreAdjFloor > -1000) assert.deepEqual(low.notes, [{ kind: 'oom-score-adj-clamped', requested: -1000, applied: host.oomScoreAdjFloor }]);

  const target = await containerSpec({
    id: `spec-ctr-${process.pid}-target`,
    sandbox,
    targetPid: sandbox.pid,
    config: ContainerConfig.fromPartial<DeepPartial<ContainerConfig>>({
      ...sh('cat /proc/1/comm'),
      linux: { securityContext: { namespaceOptions: { ...ns, pid: NamespaceMode.TARGET, targetId: 'sandbox' } } },
    }),
    image: { config: { env: [], entrypoint: [], cmd: [] } },
    rootfs,
    host,
    passwd: rootfsPasswd(rootfs),
  });
  const targetRun = await runContainer(`spec-ctr-${process.pid}-target`, target.spec);
  assert.equal(targetRun.stdout, 'sleep\n', targetRun.stderr);
});
