/**
 * The subset of the OCI runtime spec (config.md, config-linux.md, v1.0.x as
 * runc 1.1 reads it) that Berth writes, plus the inputs and outputs of spec
 * generation. Numbers are plain JS numbers: every value written here fits in
 * 2^53 (inputs that do not are refused by `safeNumber`).
 */
import type { ContainerConfig, PodSandboxConfig } from '../../../generated/api.js';

export const OCI_VERSION = '1.0.2';

export interface OciUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
  umask?: number;
}

export interface OciCapabilities {
  bounding: string[];
  effective: string[];
  inheritable: string[];
  permitted: string[];
  ambient: string[];
}

export interface OciRlimit {
  type: string;
  hard: number;
  soft: number;
}

export interface OciProcess {
  terminal: boolean;
  user: OciUser;
  args: string[];
  env: string[];
  cwd: string;
  capabilities: OciCapabilities;
  rlimits?: OciRlimit[];
  noNewPrivileges: boolean;
  oomScoreAdj?: number;
  apparmorProfile?: string;
}

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

export type OciNamespaceType = 'pid' | 'network' | 'mount' | 'ipc' | 'uts' | 'user' | 'cgroup';

export interface OciNamespace {
  type: OciNamespaceType;
  path?: string;
}

export interface OciDevice {
  type: 'c' | 'b' | 'p' | 'u';
  path: string;
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
}

export interface OciDeviceRule {
  allow: boolean;
  type?: 'a' | 'c' | 'b';
  major?: number;
  minor?: number;
  access: string;
}

export interface OciResources {
  devices: OciDeviceRule[];
  memory?: { limit?: number; swap?: number };
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string; mems?: string };
  pids?: { limit: number };
  hugepageLimits?: { pageSize: string; limit: number }[];
  unified?: Record<string, string>;
}

export type SeccompAction = 'SCMP_ACT_ALLOW' | 'SCMP_ACT_ERRNO' | 'SCMP_ACT_KILL' | 'SCMP_ACT_KILL_PROCESS' | 'SCMP_ACT_KILL_THREAD' | 'SCMP_ACT_TRAP' | 'SCMP_ACT_TRACE' | 'SCMP_ACT_LOG' | 'SCMP_ACT_NOTIFY';

export type SeccompOp =
  | 'SCMP_CMP_NE'
  | 'SCMP_CMP_LT'
  | 'SCMP_CMP_LE'
  | 'SCMP_CMP_EQ'
  | 'SCMP_CMP_GE'
  | 'SCMP_CMP_GT'
  | 'SCMP_CMP_MASKED_EQ';

export interface OciSeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: SeccompOp;
}

export interface OciSyscallRule {
  names: string[];
  action: SeccompAction;
  errnoRet?: number;
  args?: OciSeccompArg[];
}

export interface OciSeccomp {
  defaultAction: SeccompAction;
  defaultErrnoRet?: number;
  architectures?: string[];
  flags?: string[];
  syscalls?: OciSyscallRule[];
  // A Localhost profile may carry more fields (listenerPath, ...); they pass through.
  [extra: string]: unknown;
}

export interface OciLinux {
  namespaces: OciNamespace[];
  devices: OciDevice[];
  cgroupsPath: string;
  resources: OciResources;
  rootfsPropagation?: 'rprivate' | 'rslave' | 'rshared';
  seccomp?: OciSeccomp;
  sysctl?: Record<string, string>;
  maskedPaths: string[];
  readonlyPaths: string[];
}

export interface OciSpec {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly: boolean };
  hostname?: string;
  mounts: OciMount[];
  annotations: Record<string, string>;
  linux: OciLinux;
}

/** What spec generation needs to know about this host (see `hostFacts()`). */
export interface HostFacts {
  /** Capability names (CAP_...) in berthd's bounding set: no spec may name another. */
  capabilities: string[];
  /** berthd's own oom_score_adj: a child cannot go below it without CAP_SYS_RESOURCE. */
  oomScoreAdjFloor: number;
  cgroupVersion: 1 | 2;
  /** cgroup v1 memory.memsw.* (or v2 memory.swap.max) exists: a swap limit may be set. */
  swapAccounting: boolean;
  /** The hugetlb cgroup controller is there. */
  hugetlb: boolean;
  /** The kernel has AppArmor enabled. */
  apparmor: boolean;
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/**
 * The user database of a container image. `null` means the file is not there
 * (fine for numeric ids); a file that exists but cannot be read safely throws.
 */
export interface PasswdLookup {
  users(): Promise<PasswdEntry[] | null>;
  groups(): Promise<GroupEntry[] | null>;
}

/** The runtime part of an image config (images' ImageConfigSummary fits). */
export interface ImageRunConfig {
  user?: string | undefined;
  env: string[];
  entrypoint: string[];
  cmd: string[];
  workingDir?: string | undefined;
}

/** Files and namespaces the sandbox provides to its containers. */
export interface SandboxRef {
  id: string;
  config: PodSandboxConfig;
  /** The sandbox's pause process: containers join its ipc/uts/pid (and net) namespaces via /proc/<pid>/ns. */
  pid: number;
  /** The pod's pinned network namespace; preferred over /proc/<pid>/ns/net when given. */
  netnsPath?: string | undefined;
  /** The pod's hostname (HOSTNAME env); defaults to config.hostname, then this host's name. */
  hostname?: string | undefined;
  /** Host files bind-mounted at /etc/resolv.conf, /etc/hosts, /etc/hostname and /dev/shm; '' leaves that mount out. */
  resolvConfPath: string;
  hostsPath: string;
  hostnamePath: string;
  shmPath: string;
}

export interface ContainerSpecInput {
  id: string;
  sandbox: SandboxRef;
  config: ContainerConfig;
  image: { config: ImageRunConfig };
  /** Image name for the io.kubernetes.cri.image-name annotation; defaults to config.image.image. */
  imageName?: string;
  /** Absolute path of the container's mounted root filesystem (spec root.path). */
  rootfs: string;
  host: HostFacts;
  passwd: PasswdLookup;
  /** PID of the container named by NamespaceOption.target_id (pid mode TARGET). */
  targetPid?: number;
  /** Process rlimits; none by default (as containerd's CRI: inherited from the runtime). */
  rlimits?: OciRlimit[];
}

export interface SandboxSpecInput {
  id: string;
  config: PodSandboxConfig;
  /** The pause image's config (entrypoint/cmd, env, user, working dir). */
  image: { config: ImageRunConfig };
  imageName: string;
  rootfs: string;
  host: HostFacts;
  passwd: PasswdLookup;
  /** Pinned network namespace to join; absent (and network not NODE): a new one. */
  netnsPath?: string | undefined;
  /** Host files bind-mounted read-only at /etc/resolv.conf and /dev/shm; '' leaves that mount out. */
  resolvConfPath: string;
  shmPath: string;
  rlimits?: OciRlimit[];
}

/**
 * Things the caller must know or do: spec generation changes nothing on the
 * host, so a requirement it cannot check itself is handed back here.
 */
export type SpecNote =
  | { kind: 'oom-score-adj-clamped'; requested: number; applied: number }
  /** A CRI mount with rshared/rslave propagation: its host source must sit on a shared (or, for rslave, a shared or slave) mount. */
  | { kind: 'mount-propagation'; hostPath: string; containerPath: string; needs: 'shared' | 'shared-or-slave' }
  /** A setting that does not apply on this host and was left out. */
  | { kind: 'ignored'; setting: string; reason: string };

export interface SpecResult {
  spec: OciSpec;
  notes: SpecNote[];
}
