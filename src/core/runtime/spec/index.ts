/**
 * OCI runtime spec generation for CRI sandboxes and containers. Pure
 * functions of their inputs plus reads of the host (device nodes, mount
 * sources, seccomp files) and of the image's user database.
 */
export { containerSpec, cgroupsPath, ANNOTATIONS, DEFAULT_CGROUP_PARENT, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS } from './container.js';
export { sandboxSpec, SANDBOX_CPU_SHARES, SANDBOX_OOM_SCORE_ADJ } from './sandbox.js';
export { hostFacts } from './host.js';
export { rootfsPasswd, parsePasswd, parseGroup, readRootfsFile } from './passwd.js';
export { CAPABILITY_NAMES, DEFAULT_CAPABILITIES, capabilitiesFromMask } from './capabilities.js';
export { defaultSeccompProfile } from './seccomp.js';
export type {
  ContainerSpecInput,
  GroupEntry,
  HostFacts,
  ImageRunConfig,
  OciCapabilities,
  OciDevice,
  OciDeviceRule,
  OciLinux,
  OciMount,
  OciNamespace,
  OciProcess,
  OciResources,
  OciRlimit,
  OciSeccomp,
  OciSpec,
  OciUser,
  PasswdEntry,
  PasswdLookup,
  SandboxRef,
  SandboxSpecInput,
  SpecNote,
  SpecResult,
} from './types.js';
