/**
 * The OCI runtime spec of a CRI container, following containerd's CRI plugin
 * (internal/cri/server/container_create*.go, internal/cri/opts) where the CRI
 * leaves things open. Reads only: the image's user database, device nodes,
 * mount sources and a Localhost seccomp profile; it changes nothing.
 */
import os from 'node:os';
import path from 'node:path';
import { BerthError } from '../../errors.js';
import { NamespaceMode, SupplementalGroupsPolicy } from '../../../generated/api.js';
import { chooseApparmor } from './apparmor.js';
import { chooseCapabilities } from './capabilities.js';
import { criDevices, hostDevices } from './devices.js';
import { defaultMounts, planMounts, podFileMounts } from './mounts.js';
import { containerNamespaces, namespaceModes } from './namespaces.js';
import { processArgs, processCwd, processEnv } from './process.js';
import { clampOomScoreAdj, containerResources, safeNumber } from './resources.js';
import { chooseSeccomp } from './seccomp.js';
import { OCI_VERSION, type ContainerSpecInput, type OciDevice, type OciProcess, type OciResources, type OciSpec, type SpecNote, type SpecResult } from './types.js';
import { resolveUser } from './user.js';

/** Paths hidden from unprivileged containers unless the request names its own list. */
export const DEFAULT_MASKED_PATHS: readonly string[] = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

/** Paths read-only in unprivileged containers unless the request names its own list. */
export const DEFAULT_READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Cgroup parent of containers whose pod names none. */
export const DEFAULT_CGROUP_PARENT = '/berth';

/** Spec annotations (containerd's names, which tools such as crictl and NRI plugins read). */
export const ANNOTATIONS = {
  containerType: 'io.kubernetes.cri.container-type',
  sandboxId: 'io.kubernetes.cri.sandbox-id',
  sandboxNamespace: 'io.kubernetes.cri.sandbox-namespace',
  sandboxUid: 'io.kubernetes.cri.sandbox-uid',
  sandboxName: 'io.kubernetes.cri.sandbox-name',
  sandboxLogDir: 'io.kubernetes.cri.sandbox-log-directory',
  sandboxImageName: 'io.kubernetes.cri.podsandbox.image-name',
  containerName: 'io.kubernetes.cri.container-name',
  imageName: 'io.kubernetes.cri.image-name',
  sandboxCpuPeriod: 'io.kubernetes.cri.sandbox-cpu-period',
  sandboxCpuQuota: 'io.kubernetes.cri.sandbox-cpu-quota',
  sandboxCpuShares: 'io.kubernetes.cri.sandbox-cpu-shares',
  sandboxMemory: 'io.kubernetes.cri.sandbox-memory',
} as const;

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** `<parent>/<id>` in cgroupfs syntax; the parent is made absolute and may not climb with "..". */
export function cgroupsPath(parent: string, id: string): string {
  if (!ID.test(id)) throw new BerthError('invalid-argument', 'ERR_SPEC_ID', `invalid container id ${JSON.stringify(id)}`, { context: { id } });
  const p = parent === '' ? DEFAULT_CGROUP_PARENT : parent;
  if (p.split('/').includes('..')) {
    throw new BerthError('invalid-argument', 'ERR_SPEC_CGROUP_PARENT', `cgroup parent ${JSON.stringify(parent)} contains ".."`, { context: { parent } });
  }
  return path.posix.join('/', p, id);
}

/** Devices of privileged containers: the host's, plus the requested ones (which win on the same path). */
function mergeDevices(first: OciDevice[], second: OciDevice[]): OciDevice[] {
  const seen = new Set<string>();
  const out: OciDevice[] = [];
  for (const d of [...first, ...second]) {
    if (seen.has(d.path)) continue;
    seen.add(d.path);
    out.push(d);
  }
  return out;
}

export async function containerSpec(input: ContainerSpecInput): Promise<SpecResult> {
  const { config, sandbox, host } = input;
  const notes: SpecNote[] = [];
  const sc = config.linux?.securityContext;
  const privileged = sc?.privileged ?? false;
  if (privileged && !(sandbox.config.linux?.securityContext?.privileged ?? false)) {
    throw new BerthError('failed-precondition', 'ERR_SPEC_PRIVILEGED_NOT_ALLOWED', 'a privileged container needs a privileged sandbox (pod)', {
      context: { container: input.id, sandbox: sandbox.id },
    });
  }
  if (!path.isAbsolute(input.rootfs)) {
    throw new BerthError('invalid-argument', 'ERR_SPEC_ROOTFS', `rootfs ${JSON.stringify(input.rootfs)} is not absolute`, { context: { container: input.id } });
  }

  const hostname = sandbox.hostname ?? (sandbox.config.hostname || os.hostname());
  const user = await resolveUser(
    {
      runAsUser: sc?.runAsUser,
      runAsUsername: sc?.runAsUsername,
      runAsGroup: sc?.runAsGroup,
      supplementalGroups: sc?.supplementalGroups ?? [],
      supplementalGroupsPolicy: sc?.supplementalGroupsPolicy ?? SupplementalGroupsPolicy.Merge,
      imageUser: input.image.config.user,
    },
    input.passwd,
  );
  const { caps, unavailable } = chooseCapabilities(sc?.capabilities, privileged, host.capabilities);
  for (const c of unavailable) notes.push({ kind: 'ignored', setting: `capability ${c}`, reason: 'not in the host\'s bounding set' });

  const apparmor = chooseApparmor(sc?.apparmor, sc?.apparmorProfile ?? '', privileged, host.apparmor);
  if (apparmor.ignored !== undefined) notes.push({ kind: 'ignored', setting: 'apparmor RuntimeDefault', reason: apparmor.ignored });
  const seccomp = await chooseSeccomp(sc?.seccomp, sc?.seccompProfilePath ?? '', privileged, caps.bounding);

  const proc: OciProcess = {
    terminal: config.tty,
    user,
    args: processArgs(config.command, config.args, input.image.config),
    env: processEnv({ hostname, tty: config.tty, image: input.image.config, envs: config.envs }),
    cwd: processCwd(config.workingDir, input.image.config),
    capabilities: caps,
    noNewPrivileges: sc?.noNewPrivs ?? false,
    oomScoreAdj: clampOomScoreAdj(safeNumber(config.linux?.resources?.oomScoreAdj ?? 0n, 'oom_score_adj'), host, notes),
  };
  if (input.rlimits !== undefined) proc.rlimits = input.rlimits.map((r) => ({ ...r }));
  if (apparmor.profile !== undefined) proc.apparmorProfile = apparmor.profile;

  const modes = namespaceModes(sc?.namespaceOptions);
  const readonlyRootfs = sc?.readonlyRootfs ?? false;
  const shmPath = modes.ipc === NamespaceMode.NODE ? '/dev/shm' : sandbox.shmPath;
  const mountPlan = await planMounts(
    defaultMounts({ privileged, cgroupMount: true }),
    podFileMounts({ resolvConfPath: sandbox.resolvConfPath, hostsPath: sandbox.hostsPath, hostnamePath: sandbox.hostnamePath, shmPath }, readonlyRootfs),
    config.mounts,
  );
  notes.push(...mountPlan.notes);

  const requested = await criDevices(config.devices);
  let devices = requested.devices;
  const resources: OciResources = { devices: [{ allow: false, access: 'rwm' }, ...requested.rules], ...containerResources(config.linux?.resources, host, notes) };
  if (privileged) {
    devices = mergeDevices(requested.devices, await hostDevices());
    resources.devices = [{ allow: true, access: 'rwm' }];
  }

  const meta = sandbox.config.metadata;
  const spec: OciSpec = {
    ociVersion: OCI_VERSION,
    process: proc,
    root: { path: input.rootfs, readonly: readonlyRootfs },
    mounts: mountPlan.mounts,
    annotations: {
      [ANNOTATIONS.sandboxId]: sandbox.id,
      [ANNOTATIONS.sandboxNamespace]: meta?.namespace ?? '',
      [ANNOTATIONS.sandboxUid]: meta?.uid ?? '',
      [ANNOTATIONS.sandboxName]: meta?.name ?? '',
      [ANNOTATIONS.containerName]: config.metadata?.name ?? '',
      [ANNOTATIONS.imageName]: input.imageName ?? config.image?.image ?? '',
      [ANNOTATIONS.containerType]: 'container',
    },
    linux: {
      namespaces: containerNamespaces({
        options: sc?.namespaceOptions,
        sandboxPid: sandbox.pid,
        netnsPath: sandbox.netnsPath,
        targetPid: input.targetPid,
        cgroupNamespace: host.cgroupVersion === 2 && !privileged,
      }),
      devices,
      cgroupsPath: cgroupsPath(sandbox.config.linux?.cgroupParent ?? '', input.id),
      resources,
      maskedPaths: privileged ? [] : sc?.maskedPaths.length ? [...sc.maskedPaths] : [...DEFAULT_MASKED_PATHS],
      readonlyPaths: privileged ? [] : sc?.readonlyPaths.length ? [...sc.readonlyPaths] : [...DEFAULT_READONLY_PATHS],
    },
  };
  if (mountPlan.rootfsPropagation !== undefined) spec.linux.rootfsPropagation = mountPlan.rootfsPropagation;
  if (seccomp !== undefined) spec.linux.seccomp = seccomp;
  return { spec, notes };
}
