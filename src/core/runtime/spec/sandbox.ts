/**
 * The OCI runtime spec of a pod's sandbox (pause) container, which holds the
 * pod's namespaces, following containerd's podsandbox controller
 * (sandbox_run_linux.go): read-only rootfs, default capabilities, no new
 * privileges, the pod's sysctls, minimal CPU shares and an OOM score that
 * keeps it alive longer than its containers.
 */
import path from 'node:path';
import { BerthError } from '../../errors.js';
import { NamespaceMode, SupplementalGroupsPolicy } from '../../../generated/api.js';
import { chooseCapabilities } from './capabilities.js';
import { ANNOTATIONS, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, cgroupsPath } from './container.js';
import { defaultMounts } from './mounts.js';
import { namespaceModes, sandboxNamespaces } from './namespaces.js';
import { mergeEnv } from './process.js';
import { clampOomScoreAdj } from './resources.js';
import { chooseSeccomp } from './seccomp.js';
import { OCI_VERSION, type OciMount, type OciProcess, type OciSpec, type SandboxSpecInput, type SpecNote, type SpecResult } from './types.js';
import { resolveUser } from './user.js';

/** cpu.shares of the pause process (it does nothing). */
export const SANDBOX_CPU_SHARES = 2;
/** oom_score_adj of the pause process: killed only after everything else. */
export const SANDBOX_OOM_SCORE_ADJ = -998;

export async function sandboxSpec(input: SandboxSpecInput): Promise<SpecResult> {
  const { config, host } = input;
  const notes: SpecNote[] = [];
  const sc = config.linux?.securityContext;
  if (!path.isAbsolute(input.rootfs)) {
    throw new BerthError('invalid-argument', 'ERR_SPEC_ROOTFS', `rootfs ${JSON.stringify(input.rootfs)} is not absolute`, { context: { sandbox: input.id } });
  }
  const image = input.image.config;
  const args = [...image.entrypoint, ...image.cmd];
  if (args.length === 0) {
    throw new BerthError('failed-precondition', 'ERR_SPEC_NO_COMMAND', `sandbox image ${input.imageName} has neither entrypoint nor cmd`, {
      context: { sandbox: input.id, image: input.imageName },
    });
  }
  const modes = namespaceModes(sc?.namespaceOptions);
  const user = await resolveUser(
    {
      runAsUser: sc?.runAsUser,
      runAsGroup: sc?.runAsGroup,
      supplementalGroups: sc?.supplementalGroups ?? [],
      supplementalGroupsPolicy: SupplementalGroupsPolicy.Strict,
      imageUser: image.user,
    },
    input.passwd,
  );
  const { caps } = chooseCapabilities(undefined, false, host.capabilities);
  const privileged = sc?.privileged ?? false;
  const seccomp = await chooseSeccomp(sc?.seccomp, sc?.seccompProfilePath ?? '', privileged, caps.bounding);

  const proc: OciProcess = {
    terminal: false,
    user,
    args,
    env: mergeEnv([], image.env),
    cwd: image.workingDir ? path.posix.join('/', image.workingDir) : '/',
    capabilities: caps,
    noNewPrivileges: true,
    oomScoreAdj: clampOomScoreAdj(SANDBOX_OOM_SCORE_ADJ, host, notes),
  };
  if (input.rlimits !== undefined) proc.rlimits = input.rlimits.map((r) => ({ ...r }));

  const shmSource = modes.ipc === NamespaceMode.NODE ? '/dev/shm' : input.shmPath;
  const fileOptions = ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'];
  const mounts: OciMount[] = defaultMounts({ privileged: false, cgroupMount: false }).filter((m) => m.destination !== '/dev/shm');
  if (shmSource !== '') mounts.push({ destination: '/dev/shm', type: 'bind', source: shmSource, options: [...fileOptions] });
  if (input.resolvConfPath !== '') mounts.push({ destination: '/etc/resolv.conf', type: 'bind', source: input.resolvConfPath, options: [...fileOptions] });

  const meta = config.metadata;
  const annotations: Record<string, string> = {
    [ANNOTATIONS.sandboxId]: input.id,
    [ANNOTATIONS.sandboxNamespace]: meta?.namespace ?? '',
    [ANNOTATIONS.sandboxUid]: meta?.uid ?? '',
    [ANNOTATIONS.sandboxName]: meta?.name ?? '',
    [ANNOTATIONS.sandboxLogDir]: config.logDirectory,
    [ANNOTATIONS.sandboxImageName]: input.imageName,
    [ANNOTATIONS.containerType]: 'sandbox',
  };
  const res = config.linux?.resources;
  if (res !== undefined) {
    annotations[ANNOTATIONS.sandboxCpuPeriod] = String(res.cpuPeriod);
    annotations[ANNOTATIONS.sandboxCpuQuota] = String(res.cpuQuota);
    annotations[ANNOTATIONS.sandboxCpuShares] = String(res.cpuShares);
    annotations[ANNOTATIONS.sandboxMemory] = String(res.memoryLimitInBytes);
  }

  const spec: OciSpec = {
    ociVersion: OCI_VERSION,
    process: proc,
    root: { path: input.rootfs, readonly: true },
    mounts,
    annotations,
    linux: {
      namespaces: sandboxNamespaces(sc?.namespaceOptions, input.netnsPath),
      devices: [],
      cgroupsPath: cgroupsPath(config.linux?.cgroupParent ?? '', input.id),
      resources: { devices: [{ allow: false, access: 'rwm' }], cpu: { shares: SANDBOX_CPU_SHARES } },
      maskedPaths: [...DEFAULT_MASKED_PATHS],
      readonlyPaths: [...DEFAULT_READONLY_PATHS],
    },
  };
  // A hostname needs a private UTS namespace, which host-network pods do not have.
  if (modes.network !== NamespaceMode.NODE && config.hostname !== '') spec.hostname = config.hostname;
  const sysctls = config.linux?.sysctls ?? {};
  if (Object.keys(sysctls).length > 0) spec.linux.sysctl = { ...sysctls };
  if (seccomp !== undefined) spec.linux.seccomp = seccomp;
  return { spec, notes };
}
