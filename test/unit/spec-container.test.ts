import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  ContainerConfig,
  type DeepPartial,
  type LinuxContainerResources,
  type LinuxContainerSecurityContext,
  type Mount,
  MountPropagation,
  NamespaceMode,
  PodSandboxConfig,
  SecurityProfile_ProfileType,
} from '../../src/generated/api.js';
import {
  ANNOTATIONS,
  DEFAULT_CAPABILITIES,
  DEFAULT_MASKED_PATHS,
  DEFAULT_READONLY_PATHS,
  capabilitiesFromMask,
  cgroupsPath,
  containerSpec,
  rootfsPasswd,
  sandboxSpec,
  type ContainerSpecInput,
  type HostFacts,
  type OciSpec,
  type SandboxSpecInput,
} from '../../src/core/runtime/spec/index.js';
import { defaultSeccompProfile } from '../../src/core/runtime/spec/seccomp.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'berth-spec-ctr-'));
  dirs.push(d);
  return d;
}

const HOST: HostFacts = {
  capabilities: capabilitiesFromMask('000001fffeffffff'),
  oomScoreAdjFloor: 0,
  cgroupVersion: 1,
  swapAccounting: true,
  hugetlb: false,
  apparmor: false,
};

const SANDBOX_CONFIG = {
  metadata: { name: 'web', uid: 'uid-1', namespace: 'default', attempt: 0 },
  hostname: 'web-pod',
  logDirectory: '/var/log/pods/default_web_uid-1',
  linux: { cgroupParent: '/kubepods/besteffort/poduid-1', sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' } },
};

interface Fixture {
  root: string;
  rootfs: string;
  files: { resolv: string; hosts: string; hostname: string; shm: string };
}

async function fixture(): Promise<Fixture> {
  const root = await tempDir();
  const rootfs = path.join(root, 'rootfs');
  await mkdir(path.join(rootfs, 'etc'), { recursive: true });
  await writeFile(path.join(rootfs, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n');
  await writeFile(path.join(rootfs, 'etc/group'), 'root:x:0:\nwheel:x:10:app\n');
  const files = {
    resolv: path.join(root, 'resolv.conf'),
    hosts: path.join(root, 'hosts'),
    hostname: path.join(root, 'hostname'),
    shm: path.join(root, 'shm'),
  };
  for (const f of [files.resolv, files.hosts, files.hostname]) await writeFile(f, '');
  await mkdir(files.shm);
  return { root, rootfs, files };
}

type CtrConfig = DeepPartial<ContainerConfig>;
type SbConfig = DeepPartial<PodSandboxConfig>;

function input(fx: Fixture, config: CtrConfig, over: Partial<ContainerSpecInput> = {}, sandboxOver: SbConfig = {}): ContainerSpecInput {
  return {
    id: 'ctr1',
    sandbox: {
      id: 'sb1',
      config: PodSandboxConfig.fromPartial<SbConfig>({ ...SANDBOX_CONFIG, ...sandboxOver }),
      pid: 4242,
      resolvConfPath: fx.files.resolv,
      hostsPath: fx.files.hosts,
      hostnamePath: fx.files.hostname,
      shmPath: fx.files.shm,
    },
    config: ContainerConfig.fromPartial<CtrConfig>({ metadata: { name: 'app', attempt: 0 }, image: { image: 'docker.io/library/busybox:latest' }, ...config }),
    image: { config: { env: ['IMG=1'], entrypoint: [], cmd: ['/bin/sh'] } },
    rootfs: fx.rootfs,
    host: HOST,
    passwd: rootfsPasswd(fx.rootfs),
    ...over,
  };
}

const dests = (s: OciSpec) => s.mounts.map((m) => m.destination);
const mountAt = (s: OciSpec, d: string) => s.mounts.find((m) => m.destination === d);

test('a plain container: defaults throughout', async () => {
  const fx = await fixture();
  const { spec, notes } = await containerSpec(input(fx, {}));
  assert.deepEqual(notes, []);
  assert.equal(spec.ociVersion, '1.0.2');
  assert.deepEqual(spec.process.args, ['/bin/sh']);
  assert.deepEqual(spec.process.env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOSTNAME=web-pod', 'IMG=1']);
  assert.equal(spec.process.cwd, '/');
  assert.equal(spec.process.terminal, false);
  assert.deepEqual(spec.process.user, { uid: 0, gid: 0, additionalGids: [] });
  assert.deepEqual(new Set(spec.process.capabilities.bounding), new Set(DEFAULT_CAPABILITIES));
  assert.deepEqual(spec.process.capabilities.ambient, []);
  assert.equal(spec.process.noNewPrivileges, false);
  assert.equal(spec.process.oomScoreAdj, 0);
  assert.equal(spec.process.rlimits, undefined);
  assert.equal(spec.process.apparmorProfile, undefined);
  assert.deepEqual(spec.root, { path: fx.rootfs, readonly: false });
  assert.equal(spec.hostname, undefined, 'containers share the pod\'s UTS namespace and never set a hostname');
  assert.deepEqual(
    dests(spec).slice(0, 6),
    ['/proc', '/dev', '/dev/pts', '/dev/mqueue', '/sys', '/sys/fs/cgroup'],
  );
  assert.deepEqual(new Set(dests(spec).slice(6)), new Set(['/dev/shm', '/etc/hosts', '/etc/hostname', '/etc/resolv.conf']));
  assert.deepEqual(mountAt(spec, '/sys')?.options, ['nosuid', 'noexec', 'nodev', 'ro']);
  assert.deepEqual(mountAt(spec, '/sys/fs/cgroup')?.options, ['nosuid', 'noexec', 'nodev', 'relatime', 'ro']);
  assert.deepEqual(mountAt(spec, '/dev/shm'), { destination: '/dev/shm', type: 'bind', source: fx.files.shm, options: ['rbind', 'rprivate', 'rw'] });
  assert.deepEqual(mountAt(spec, '/etc/hosts'), { destination: '/etc/hosts', type: 'bind', source: fx.files.hosts, options: ['rbind', 'rprivate', 'rw'] });
  assert.equal(spec.mounts.filter((m) => m.destination === '/dev/shm').length, 1, 'the tmpfs /dev/shm default is replaced');
  assert.deepEqual(spec.linux.maskedPaths, [...DEFAULT_MASKED_PATHS]);
  assert.deepEqual(spec.linux.readonlyPaths, [...DEFAULT_READONLY_PATHS]);
  assert.deepEqual(spec.linux.namespaces, [
    { type: 'mount' },
    { type: 'network', path: '/proc/4242/ns/net' },
    { type: 'uts', path: '/proc/4242/ns/uts' },
    { type: 'ipc', path: '/proc/4242/ns/ipc' },
    { type: 'pid', path: '/proc/4242/ns/pid' },
  ]);
  assert.equal(spec.linux.cgroupsPath, '/kubepods/besteffort/poduid-1/ctr1');
  assert.deepEqual(spec.linux.resources, { devices: [{ allow: false, access: 'rwm' }] });
  assert.deepEqual(spec.linux.devices, []);
  assert.equal(spec.linux.seccomp, undefined);
  assert.equal(spec.linux.sysctl, undefined, 'sysctls belong to the sandbox, whose namespaces containers join');
  assert.deepEqual(spec.annotations, {
    [ANNOTATIONS.sandboxId]: 'sb1',
    [ANNOTATIONS.sandboxNamespace]: 'default',
    [ANNOTATIONS.sandboxUid]: 'uid-1',
    [ANNOTATIONS.sandboxName]: 'web',
    [ANNOTATIONS.containerName]: 'app',
    [ANNOTATIONS.imageName]: 'docker.io/library/busybox:latest',
    [ANNOTATIONS.containerType]: 'container',
  });
  // It must be valid JSON as written to config.json.
  assert.deepEqual(JSON.parse(JSON.stringify(spec)), spec);
});

test('process fields from the request: command, args, envs, tty, working dir, user, no_new_privs, rlimits', async () => {
  const fx = await fixture();
  const { spec } = await containerSpec(
    input(
      fx,
      {
        command: ['/bin/echo'],
        args: ['hi'],
        envs: [{ key: 'IMG', value: Buffer.from('2') }],
        tty: true,
        workingDir: '/srv',
        linux: { securityContext: { runAsUsername: 'app', supplementalGroups: [5n], noNewPrivs: true } },
      },
      { rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1048576, soft: 1048576 }] },
      { hostname: '' },
    ),
  );
  assert.deepEqual(spec.process.args, ['/bin/echo', 'hi']);
  assert.equal(spec.process.terminal, true);
  assert.deepEqual(spec.process.env, [
    'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    'TERM=xterm',
    `HOSTNAME=${os.hostname()}`,
    'IMG=2',
  ]);
  assert.equal(spec.process.cwd, '/srv');
  assert.deepEqual(spec.process.user, { uid: 1000, gid: 1000, additionalGids: [5, 10] });
  assert.equal(spec.process.noNewPrivileges, true);
  assert.deepEqual(spec.process.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 1048576, soft: 1048576 }]);
});

test('readonly rootfs makes the pod files read-only too, but not /dev/shm', async () => {
  const fx = await fixture();
  const { spec } = await containerSpec(input(fx, { linux: { securityContext: { readonlyRootfs: true } } }));
  assert.equal(spec.root.readonly, true);
  for (const d of ['/etc/hosts', '/etc/hostname', '/etc/resolv.conf']) assert.deepEqual(mountAt(spec, d)?.options, ['rbind', 'rprivate', 'ro'], d);
  assert.deepEqual(mountAt(spec, '/dev/shm')?.options, ['rbind', 'rprivate', 'rw']);
});

test('CRI mounts: propagation, read-only, ordering, overrides and notes', async () => {
  const fx = await fixture();
  const vol = path.join(fx.root, 'vol');
  await mkdir(path.join(vol, 'sub'), { recursive: true });
  await symlink(vol, path.join(fx.root, 'vol-link'));
  const hostsOverride = path.join(fx.root, 'my-hosts');
  await writeFile(hostsOverride, '');
  const m = (containerPath: string, hostPath: string, extra: DeepPartial<Mount> = {}): DeepPartial<Mount> => ({ containerPath, hostPath, ...extra });
  const { spec, notes } = await containerSpec(
    input(fx, {
      mounts: [
        m('/data/deep/er', path.join(vol, 'sub'), { propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER }),
        m('/data', path.join(fx.root, 'vol-link'), { readonly: true, selinuxRelabel: true }),
        m('/shared', vol, { propagation: MountPropagation.PROPAGATION_BIDIRECTIONAL }),
        m('/etc/hosts', hostsOverride),
      ],
    }),
  );
  const binds = spec.mounts.filter((x) => x.type === 'bind');
  assert.deepEqual(
    binds.map((b) => b.destination),
    ['/data', '/shared', '/etc/hosts', '/etc/hostname', '/etc/resolv.conf', '/dev/shm', '/data/deep/er'],
    'shallow before deep, stable otherwise',
  );
  assert.deepEqual(mountAt(spec, '/data'), { destination: '/data', type: 'bind', source: vol, options: ['rbind', 'rprivate', 'ro'] });
  assert.deepEqual(mountAt(spec, '/shared')?.options, ['rbind', 'rshared', 'rw']);
  assert.deepEqual(mountAt(spec, '/data/deep/er')?.options, ['rbind', 'rslave', 'rw']);
  assert.equal(mountAt(spec, '/etc/hosts')?.source, hostsOverride);
  assert.equal(spec.mounts.filter((x) => x.destination === '/etc/hosts').length, 1);
  assert.equal(spec.linux.rootfsPropagation, 'rshared');
  assert.deepEqual(notes, [
    { kind: 'mount-propagation', hostPath: vol, containerPath: '/shared', needs: 'shared' },
    { kind: 'mount-propagation', hostPath: path.join(vol, 'sub'), containerPath: '/data/deep/er', needs: 'shared-or-slave' },
  ]);

  const slaveOnly = await containerSpec(input(fx, { mounts: [m('/x', vol, { propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER })] }));
  assert.equal(slaveOnly.spec.linux.rootfsPropagation, 'rslave');
  const privateOnly = await containerSpec(input(fx, { mounts: [m('/x', vol)] }));
  assert.equal(privateOnly.spec.linux.rootfsPropagation, undefined);
});

test('a CRI /dev mount drops every default below /dev', async () => {
  const fx = await fixture();
  const { spec } = await containerSpec(input(fx, { mounts: [{ containerPath: '/dev', hostPath: '/dev' }] }));
  assert.deepEqual(
    dests(spec).filter((d) => d.startsWith('/dev')),
    ['/dev', '/dev/shm'],
    'the pod /dev/shm bind stays (sorted after /dev); the tmpfs, pts and mqueue defaults go',
  );
});

test('CRI mount errors, and rro for a recursive read-only mount', async () => {
  const fx = await fixture();
  const vol = await tempDir();
  const cases: [DeepPartial<Mount>, string][] = [
    [{ containerPath: '/x', hostPath: path.join(vol, 'missing') }, 'ERR_SPEC_MOUNT'],
    [{ containerPath: 'rel', hostPath: vol }, 'ERR_SPEC_MOUNT'],
    [{ containerPath: '/x', hostPath: 'rel' }, 'ERR_SPEC_MOUNT'],
    [{ containerPath: '/x', hostPath: vol, recursiveReadOnly: true }, 'ERR_SPEC_MOUNT'],
    [{ containerPath: '/x', hostPath: vol, readonly: true, recursiveReadOnly: true, propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER }, 'ERR_SPEC_MOUNT'],
    [{ containerPath: '/x', hostPath: '', image: { image: 'busybox' } }, 'ERR_SPEC_MOUNT_IMAGE'],
    [{ containerPath: '/x', hostPath: vol, uidMappings: [{ hostId: 1, containerId: 0, length: 1 }] }, 'ERR_SPEC_MOUNT_IDMAP'],
  ];
  for (const [mount, code] of cases) {
    await assert.rejects(containerSpec(input(fx, { mounts: [mount] })), { code }, JSON.stringify(mount));
  }
  const rro = await containerSpec(input(fx, { mounts: [{ containerPath: '/x', hostPath: vol, readonly: true, recursiveReadOnly: true }] }));
  assert.deepEqual(rro.spec.mounts.find((m) => m.destination === '/x')?.options, ['rbind', 'rprivate', 'ro', 'rro']);
});

test('masked and read-only paths: defaults, request overrides, none when privileged', async () => {
  const fx = await fixture();
  const custom = await containerSpec(input(fx, { linux: { securityContext: { maskedPaths: ['/proc/x'], readonlyPaths: ['/proc/y'] } } }));
  assert.deepEqual(custom.spec.linux.maskedPaths, ['/proc/x']);
  assert.deepEqual(custom.spec.linux.readonlyPaths, ['/proc/y']);
  const priv = await containerSpec(
    input(fx, { linux: { securityContext: { privileged: true, maskedPaths: ['/proc/x'] } } }, {}, { linux: { ...SANDBOX_CONFIG.linux, securityContext: { privileged: true } } }),
  );
  assert.deepEqual(priv.spec.linux.maskedPaths, []);
  assert.deepEqual(priv.spec.linux.readonlyPaths, []);
});

test('privileged: every host capability and device, writable sysfs and cgroupfs, no seccomp', async () => {
  const fx = await fixture();
  const privSandbox = { linux: { ...SANDBOX_CONFIG.linux, securityContext: { privileged: true } } };
  const { spec } = await containerSpec(
    input(
      fx,
      {
        linux: {
          securityContext: {
            privileged: true,
            capabilities: { dropCapabilities: ['ALL'] },
            seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault },
          },
        },
        devices: [{ containerPath: '/dev/mynull', hostPath: '/dev/null', permissions: 'r' }],
      },
      {},
      privSandbox,
    ),
  );
  assert.deepEqual(spec.process.capabilities.bounding, HOST.capabilities);
  assert.ok(!spec.process.capabilities.bounding.includes('CAP_SYS_RESOURCE'));
  assert.deepEqual(mountAt(spec, '/sys')?.options, ['nosuid', 'noexec', 'nodev', 'rw']);
  assert.deepEqual(mountAt(spec, '/sys/fs/cgroup')?.options, ['nosuid', 'noexec', 'nodev', 'relatime', 'rw']);
  assert.equal(spec.linux.seccomp, undefined);
  assert.deepEqual(spec.linux.resources.devices, [{ allow: true, access: 'rwm' }]);
  const paths = spec.linux.devices.map((d) => d.path);
  assert.ok(paths.includes('/dev/null') && paths.includes('/dev/zero') && paths.includes('/dev/mynull'), paths.join(' '));
  assert.equal(new Set(paths).size, paths.length, 'no duplicate device paths');
  assert.ok(!paths.some((p) => p.startsWith('/dev/pts/') || p === '/dev/console'));

  await assert.rejects(containerSpec(input(fx, { linux: { securityContext: { privileged: true } } })), { code: 'ERR_SPEC_PRIVILEGED_NOT_ALLOWED' });
});

test('namespaces (table)', async () => {
  const fx = await fixture();
  const ns = (network: NamespaceMode, pid: NamespaceMode, ipc: NamespaceMode, targetId = ''): CtrConfig => ({
    linux: { securityContext: { namespaceOptions: { network, pid, ipc, targetId } } },
  });
  const P = NamespaceMode.POD;
  const C = NamespaceMode.CONTAINER;
  const N = NamespaceMode.NODE;
  const rows: { name: string; cfg: CtrConfig; over?: Partial<ContainerSpecInput>; want: unknown[] }[] = [
    {
      name: 'kubelet default: pod net/ipc, own pid',
      cfg: ns(P, C, P),
      want: [{ type: 'mount' }, { type: 'network', path: '/proc/4242/ns/net' }, { type: 'uts', path: '/proc/4242/ns/uts' }, { type: 'ipc', path: '/proc/4242/ns/ipc' }, { type: 'pid' }],
    },
    { name: 'host network, ipc and pid', cfg: ns(N, N, N), want: [{ type: 'mount' }] },
    {
      name: 'target pid namespace',
      cfg: ns(P, NamespaceMode.TARGET, P, 'other'),
      over: { targetPid: 77 },
      want: [{ type: 'mount' }, { type: 'network', path: '/proc/4242/ns/net' }, { type: 'uts', path: '/proc/4242/ns/uts' }, { type: 'ipc', path: '/proc/4242/ns/ipc' }, { type: 'pid', path: '/proc/77/ns/pid' }],
    },
    {
      name: 'pinned netns preferred; cgroup v2 adds a cgroup namespace',
      cfg: ns(P, C, C),
      over: { host: { ...HOST, cgroupVersion: 2 } },
      want: [{ type: 'mount' }, { type: 'network', path: '/run/netns/x' }, { type: 'uts', path: '/proc/4242/ns/uts' }, { type: 'ipc' }, { type: 'pid' }, { type: 'cgroup' }],
    },
  ];
  for (const r of rows) {
    const inp = input(fx, r.cfg, r.over ?? {});
    if (r.name.startsWith('pinned')) inp.sandbox.netnsPath = '/run/netns/x';
    const { spec } = await containerSpec(inp);
    assert.deepEqual(spec.linux.namespaces, r.want, r.name);
  }
  await assert.rejects(containerSpec(input(fx, ns(P, NamespaceMode.TARGET, P, 'other'))), { code: 'ERR_SPEC_NAMESPACE', message: /TARGET/ });
  await assert.rejects(
    containerSpec(input(fx, { linux: { securityContext: { namespaceOptions: { usernsOptions: { mode: NamespaceMode.POD } } } } })),
    { code: 'ERR_SPEC_NAMESPACE', message: /user namespaces/ },
  );
  const hostIpc = await containerSpec(input(fx, ns(P, C, N)));
  assert.equal(mountAt(hostIpc.spec, '/dev/shm')?.source, '/dev/shm', 'host IPC uses the host /dev/shm');
});

test('resources (table) and the oom_score_adj floor', async () => {
  const fx = await fixture();
  const res = (r: DeepPartial<LinuxContainerResources>): CtrConfig => ({ linux: { resources: r } });
  const full = await containerSpec(
    input(fx, res({ cpuPeriod: 100000n, cpuQuota: 50000n, cpuShares: 512n, memoryLimitInBytes: 1n << 30n, cpusetCpus: '0-1', cpusetMems: '0', oomScoreAdj: 999n })),
  );
  assert.deepEqual(full.spec.linux.resources, {
    devices: [{ allow: false, access: 'rwm' }],
    cpu: { period: 100000, quota: 50000, shares: 512, cpus: '0-1', mems: '0' },
    memory: { limit: 1 << 30, swap: 1 << 30 },
  });
  assert.equal(full.spec.process.oomScoreAdj, 999);
  assert.deepEqual(full.notes, []);

  const swap = await containerSpec(input(fx, res({ memoryLimitInBytes: 100n, memorySwapLimitInBytes: 300n })));
  assert.deepEqual(swap.spec.linux.resources.memory, { limit: 100, swap: 300 });
  const noSwapAcct = await containerSpec(input(fx, res({ memoryLimitInBytes: 100n, memorySwapLimitInBytes: 300n }), { host: { ...HOST, swapAccounting: false } }));
  assert.deepEqual(noSwapAcct.spec.linux.resources.memory, { limit: 100 });
  assert.equal(noSwapAcct.notes[0]?.kind, 'ignored');

  const huge = res({ hugepageLimits: [{ pageSize: '2MB', limit: 4194304n }] });
  const hugeOff = await containerSpec(input(fx, huge));
  assert.equal(hugeOff.spec.linux.resources.hugepageLimits, undefined);
  assert.deepEqual(hugeOff.notes, [{ kind: 'ignored', setting: 'hugepage_limits', reason: 'the hugetlb cgroup controller is not available' }]);
  const hugeOn = await containerSpec(input(fx, huge, { host: { ...HOST, hugetlb: true } }));
  assert.deepEqual(hugeOn.spec.linux.resources.hugepageLimits, [{ pageSize: '2MB', limit: 4194304 }]);

  const unified = res({ unified: { 'memory.high': '1000' } });
  await assert.rejects(containerSpec(input(fx, unified)), { code: 'ERR_SPEC_RESOURCES', message: /cgroup v2/ });
  const v2 = await containerSpec(input(fx, unified, { host: { ...HOST, cgroupVersion: 2 } }));
  assert.deepEqual(v2.spec.linux.resources.unified, { 'memory.high': '1000' });

  const clamped = await containerSpec(input(fx, res({ oomScoreAdj: -500n }), { host: { ...HOST, oomScoreAdjFloor: -100 } }));
  assert.equal(clamped.spec.process.oomScoreAdj, -100);
  assert.deepEqual(clamped.notes, [{ kind: 'oom-score-adj-clamped', requested: -500, applied: -100 }]);
  await assert.rejects(containerSpec(input(fx, res({ oomScoreAdj: 2000n }))), { code: 'ERR_SPEC_RESOURCES' });
  await assert.rejects(containerSpec(input(fx, res({ cpusetCpus: '0-a' }))), { code: 'ERR_SPEC_RESOURCES' });
  await assert.rejects(containerSpec(input(fx, res({ memoryLimitInBytes: 1n << 60n }))), { code: 'ERR_SPEC_RESOURCES' });
});

test('seccomp: runtime default, unconfined, localhost file, deprecated path', async () => {
  const fx = await fixture();
  const sec = (profileType: SecurityProfile_ProfileType, localhostRef = '', extra: DeepPartial<LinuxContainerSecurityContext> = {}): CtrConfig => ({
    linux: { securityContext: { seccomp: { profileType, localhostRef }, ...extra } },
  });
  const def = (await containerSpec(input(fx, sec(SecurityProfile_ProfileType.RuntimeDefault)))).spec.linux.seccomp;
  assert.ok(def);
  assert.equal(def.defaultAction, 'SCMP_ACT_ERRNO');
  const allowed = new Set(def.syscalls?.filter((r) => r.action === 'SCMP_ACT_ALLOW' && r.args === undefined).flatMap((r) => r.names));
  for (const call of ['read', 'write', 'execve', 'chroot', 'arch_prctl']) assert.ok(allowed.has(call), call);
  for (const call of ['mount', 'unshare', 'setns', 'reboot', 'kexec_load', 'bpf']) assert.ok(!allowed.has(call), call);
  assert.ok(def.syscalls?.some((r) => r.names.includes('clone') && r.args?.[0]?.op === 'SCMP_CMP_MASKED_EQ'));
  assert.ok(def.syscalls?.some((r) => r.names.includes('clone3') && r.action === 'SCMP_ACT_ERRNO' && r.errnoRet === 38));

  const admin = (await containerSpec(input(fx, sec(SecurityProfile_ProfileType.RuntimeDefault, '', { capabilities: { addCapabilities: ['SYS_ADMIN'] } }))))
    .spec.linux.seccomp;
  const adminAllowed = new Set(admin?.syscalls?.filter((r) => r.action === 'SCMP_ACT_ALLOW').flatMap((r) => r.names));
  assert.ok(adminAllowed.has('mount') && adminAllowed.has('unshare') && adminAllowed.has('clone3'));
  assert.ok(!admin?.syscalls?.some((r) => r.action === 'SCMP_ACT_ERRNO'));

  assert.equal((await containerSpec(input(fx, sec(SecurityProfile_ProfileType.Unconfined)))).spec.linux.seccomp, undefined);
  const viaPath = (await containerSpec(input(fx, { linux: { securityContext: { seccompProfilePath: 'runtime/default' } } }))).spec.linux.seccomp;
  assert.deepEqual(viaPath, def);

  const file = path.join(fx.root, 'profile.json');
  const profile = { defaultAction: 'SCMP_ACT_LOG', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO' }] };
  await writeFile(file, JSON.stringify(profile));
  assert.deepEqual((await containerSpec(input(fx, sec(SecurityProfile_ProfileType.Localhost, file)))).spec.linux.seccomp, profile);
  assert.deepEqual((await containerSpec(input(fx, { linux: { securityContext: { seccompProfilePath: `localhost/${file}` } } }))).spec.linux.seccomp, profile);

  const bad = path.join(fx.root, 'bad.json');
  await writeFile(bad, '{not json');
  const noAction = path.join(fx.root, 'noaction.json');
  await writeFile(noAction, '{"syscalls":[]}');
  for (const ref of [path.join(fx.root, 'missing.json'), bad, noAction, 'relative.json']) {
    await assert.rejects(containerSpec(input(fx, sec(SecurityProfile_ProfileType.Localhost, ref))), { code: 'ERR_SPEC_SECCOMP_PROFILE' }, ref);
  }
  await assert.rejects(containerSpec(input(fx, sec(SecurityProfile_ProfileType.RuntimeDefault, file))), { code: 'ERR_SPEC_SECCOMP_PROFILE' });
  await assert.rejects(containerSpec(input(fx, { linux: { securityContext: { seccompProfilePath: 'bogus' } } })), { code: 'ERR_SPEC_SECCOMP_PROFILE' });
});

test('default seccomp profile per architecture', () => {
  const x64 = defaultSeccompProfile(['CAP_CHOWN'], 'x64');
  assert.deepEqual(x64.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  const arm = defaultSeccompProfile(['CAP_CHOWN'], 'arm64');
  assert.deepEqual(arm.architectures, ['SCMP_ARCH_ARM', 'SCMP_ARCH_AARCH64']);
  assert.ok(arm.syscalls?.[0]?.names.includes('set_tls') && !arm.syscalls?.[0]?.names.includes('arch_prctl'));
});

test('apparmor: Localhost is refused on a host without AppArmor; RuntimeDefault is ignored with a note', async () => {
  const fx = await fixture();
  const aa = (profileType: SecurityProfile_ProfileType, localhostRef = ''): CtrConfig => ({ linux: { securityContext: { apparmor: { profileType, localhostRef } } } });
  await assert.rejects(containerSpec(input(fx, aa(SecurityProfile_ProfileType.Localhost, 'my-profile'))), {
    code: 'ERR_SPEC_APPARMOR',
    message: /AppArmor is not enabled on this host/,
  });
  await assert.rejects(containerSpec(input(fx, { linux: { securityContext: { apparmorProfile: 'localhost/p' } } })), { code: 'ERR_SPEC_APPARMOR' });
  const rd = await containerSpec(input(fx, aa(SecurityProfile_ProfileType.RuntimeDefault)));
  assert.equal(rd.spec.process.apparmorProfile, undefined);
  assert.deepEqual(rd.notes, [{ kind: 'ignored', setting: 'apparmor RuntimeDefault', reason: 'AppArmor is not enabled on this host' }]);
  const un = await containerSpec(input(fx, aa(SecurityProfile_ProfileType.Unconfined)));
  assert.deepEqual(un.notes, []);
  const withAa = await containerSpec(input(fx, aa(SecurityProfile_ProfileType.Localhost, 'my-profile'), { host: { ...HOST, apparmor: true } }));
  assert.equal(withAa.spec.process.apparmorProfile, 'my-profile');
});

test('devices: nodes, symlinks, directories, permissions', async () => {
  const fx = await fixture();
  const devdir = path.join(fx.root, 'devs');
  await mkdir(path.join(devdir, 'sub'), { recursive: true });
  execFileSync('mknod', ['-m', '0640', path.join(devdir, 'null0'), 'c', '1', '3']);
  execFileSync('mknod', [path.join(devdir, 'sub', 'zero0'), 'c', '1', '5']);
  await writeFile(path.join(devdir, 'not-a-device'), '');
  await symlink('/dev/null', path.join(fx.root, 'null-link'));
  const { spec } = await containerSpec(
    input(fx, {
      devices: [
        { containerPath: '/dev/a', hostPath: path.join(fx.root, 'null-link'), permissions: 'rw' },
        { containerPath: '/dev/set', hostPath: devdir, permissions: '' },
      ],
    }),
  );
  assert.deepEqual(
    spec.linux.devices.map((d) => [d.path, d.type, d.major, d.minor]),
    [
      ['/dev/a', 'c', 1, 3],
      ['/dev/set/null0', 'c', 1, 3],
      ['/dev/set/sub/zero0', 'c', 1, 5],
    ],
  );
  assert.equal(spec.linux.devices[1]?.fileMode, 0o640);
  assert.deepEqual(spec.linux.resources.devices, [
    { allow: false, access: 'rwm' },
    { allow: true, type: 'c', major: 1, minor: 3, access: 'rw' },
    { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' },
    { allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' },
  ]);
  for (const dev of [
    { containerPath: '/dev/x', hostPath: '/dev/null', permissions: 'rx' },
    { containerPath: '/dev/x', hostPath: '/dev/null', permissions: 'rr' },
    { containerPath: '/dev/x', hostPath: path.join(devdir, 'not-a-device'), permissions: 'r' },
    { containerPath: '/dev/x', hostPath: path.join(devdir, 'missing'), permissions: 'r' },
    { containerPath: 'x', hostPath: '/dev/null', permissions: 'r' },
  ]) {
    await assert.rejects(containerSpec(input(fx, { devices: [dev] })), { code: 'ERR_SPEC_DEVICE' }, JSON.stringify(dev));
  }
});

test('user errors surface with their codes', async () => {
  const fx = await fixture();
  await assert.rejects(containerSpec(input(fx, { linux: { securityContext: { runAsUsername: 'ghost' } } })), { code: 'ERR_SPEC_USER_NOT_FOUND' });
  await assert.rejects(containerSpec(input(fx, {}, { image: { config: { env: [], entrypoint: [], cmd: ['/x'], user: 'nobody' } } })), {
    code: 'ERR_SPEC_USER_NOT_FOUND',
  });
  await assert.rejects(containerSpec(input(fx, {}, { image: { config: { env: [], entrypoint: [], cmd: [] } } })), { code: 'ERR_SPEC_NO_COMMAND' });
});

test('cgroupsPath joins parent and id and refuses escapes', () => {
  assert.equal(cgroupsPath('/kubepods/burstable/podx', 'abc'), '/kubepods/burstable/podx/abc');
  assert.equal(cgroupsPath('kubepods', 'abc'), '/kubepods/abc');
  assert.equal(cgroupsPath('', 'abc'), '/berth/abc');
  assert.throws(() => cgroupsPath('/a/../b', 'abc'), { code: 'ERR_SPEC_CGROUP_PARENT' });
  assert.throws(() => cgroupsPath('/a', '../x'), { code: 'ERR_SPEC_ID' });
  assert.throws(() => cgroupsPath('/a', 'x/y'), { code: 'ERR_SPEC_ID' });
});

function sandboxInput(fx: Fixture, over: SbConfig = {}, extra: Partial<SandboxSpecInput> = {}): SandboxSpecInput {
  return {
    id: 'sb1',
    config: PodSandboxConfig.fromPartial<SbConfig>({ ...SANDBOX_CONFIG, ...over }),
    image: { config: { env: ['PATH=/'], entrypoint: ['/pause'], cmd: [] } },
    imageName: 'registry.k8s.io/pause:3.10',
    rootfs: fx.rootfs,
    host: HOST,
    passwd: rootfsPasswd(fx.rootfs),
    resolvConfPath: fx.files.resolv,
    shmPath: fx.files.shm,
    ...extra,
  };
}

test('sandbox spec: pause process holding the pod namespaces', async () => {
  const fx = await fixture();
  const { spec, notes } = await sandboxSpec(
    sandboxInput(fx, { linux: { ...SANDBOX_CONFIG.linux, resources: { cpuShares: 1024n, memoryLimitInBytes: 1000n, cpuPeriod: 0n, cpuQuota: 0n } } }),
  );
  assert.deepEqual(spec.process.args, ['/pause']);
  assert.deepEqual(spec.process.env, ['PATH=/']);
  assert.equal(spec.process.noNewPrivileges, true);
  assert.equal(spec.process.oomScoreAdj, 0, '-998 is below the floor of 0');
  assert.deepEqual(notes, [{ kind: 'oom-score-adj-clamped', requested: -998, applied: 0 }]);
  assert.deepEqual(new Set(spec.process.capabilities.bounding), new Set(DEFAULT_CAPABILITIES));
  assert.equal(spec.root.readonly, true);
  assert.equal(spec.hostname, 'web-pod');
  assert.deepEqual(spec.linux.sysctl, { 'net.ipv4.ip_unprivileged_port_start': '0' });
  assert.deepEqual(spec.linux.namespaces, [{ type: 'mount' }, { type: 'network' }, { type: 'uts' }, { type: 'ipc' }, { type: 'pid' }]);
  assert.equal(spec.linux.cgroupsPath, '/kubepods/besteffort/poduid-1/sb1');
  assert.deepEqual(spec.linux.resources, { devices: [{ allow: false, access: 'rwm' }], cpu: { shares: 2 } });
  assert.deepEqual(dests(spec), ['/proc', '/dev', '/dev/pts', '/dev/mqueue', '/sys', '/dev/shm', '/etc/resolv.conf']);
  assert.deepEqual(mountAt(spec, '/dev/shm'), { destination: '/dev/shm', type: 'bind', source: fx.files.shm, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] });
  assert.equal(spec.annotations[ANNOTATIONS.containerType], 'sandbox');
  assert.equal(spec.annotations[ANNOTATIONS.sandboxImageName], 'registry.k8s.io/pause:3.10');
  assert.equal(spec.annotations[ANNOTATIONS.sandboxLogDir], '/var/log/pods/default_web_uid-1');
  assert.equal(spec.annotations[ANNOTATIONS.sandboxCpuShares], '1024');
  assert.equal(spec.annotations[ANNOTATIONS.sandboxMemory], '1000');
  assert.deepEqual(spec.linux.maskedPaths, [...DEFAULT_MASKED_PATHS]);

  const lowFloor = await sandboxSpec(sandboxInput(fx, {}, { host: { ...HOST, oomScoreAdjFloor: -999 } }));
  assert.equal(lowFloor.spec.process.oomScoreAdj, -998);
  const pinned = await sandboxSpec(sandboxInput(fx, {}, { netnsPath: '/run/netns/p' }));
  assert.deepEqual(pinned.spec.linux.namespaces[1], { type: 'network', path: '/run/netns/p' });
});

test('sandbox spec: host namespaces, user, seccomp, errors', async () => {
  const fx = await fixture();
  const hostNs = await sandboxSpec(
    sandboxInput(fx, {
      hostname: 'node',
      linux: {
        securityContext: {
          namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.NODE, ipc: NamespaceMode.NODE },
          runAsUser: { value: 65535n },
          supplementalGroups: [3n],
          seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault },
        },
      },
    }),
  );
  assert.deepEqual(hostNs.spec.linux.namespaces, [{ type: 'mount' }]);
  assert.equal(hostNs.spec.hostname, undefined, 'no private UTS namespace, so no hostname');
  assert.equal(mountAt(hostNs.spec, '/dev/shm')?.source, '/dev/shm');
  assert.deepEqual(hostNs.spec.process.user, { uid: 65535, gid: 0, additionalGids: [3] });
  assert.equal(hostNs.spec.linux.seccomp?.defaultAction, 'SCMP_ACT_ERRNO');
  await assert.rejects(sandboxSpec(sandboxInput(fx, {}, { image: { config: { env: [], entrypoint: [], cmd: [] } } })), { code: 'ERR_SPEC_NO_COMMAND' });
});
