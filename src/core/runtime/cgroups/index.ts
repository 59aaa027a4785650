/** Public surface of the cgroup stats reader (CRI ContainerStats / PodSandboxStats). */
export { detectCgroupVersion, DEFAULT_CGROUP_ROOT, CGROUP2_SUPER_MAGIC, type CgroupVersion } from './version.js';
export {
  readStats,
  cpuNanoCores,
  type CgroupStats,
  type CpuStats,
  type MemoryStats,
  type SwapStats,
  type PidsStats,
  type Psi,
  type PsiData,
  type ReadStatsOptions,
} from './stats.js';
