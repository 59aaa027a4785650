/**
 * Resource usage of a container's or pod's cgroup, for CRI ContainerStats
 * and PodSandboxStats, from cgroup v1 (one hierarchy per controller:
 * `<root>/<controller>/<path>`) or v2 (`<root>/<path>`), computed the way
 * kubelet/cadvisor do:
 *
 * - cpu usage: v1 `cpuacct.usage` (ns); v2 `cpu.stat` usage_usec × 1000.
 * - memory usage: v1 `memory.usage_in_bytes`; v2 `memory.current`.
 * - working set: usage − inactive file pages (v1 `total_inactive_file`,
 *   v2 `inactive_file` of memory.stat), never below 0: what eviction uses.
 * - rss: v1 `total_rss`; v2 `anon`. Page faults: (total_)pgfault/pgmajfault.
 * - OOM kills: v1 `memory.oom_control` oom_kill; v2 `memory.events`
 *   oom_kill (v2 also counts OOM events, `oom`).
 * - pids: `pids.current` and `pids.max`.
 *
 * Counters are bigints (CRI's UInt64Value). A section is missing when its
 * controller is not there for the cgroup; a cgroup missing from every
 * controller is ERR_CGROUP_NOT_FOUND (the container is gone).
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { BerthError, errorMessage, isErrnoCode } from '../../errors.js';
import { DEFAULT_CGROUP_ROOT, detectCgroupVersion, type CgroupVersion } from './version.js';

/** One line of a pressure file: stall time share over 10/60/300 s (percent) and the total stall (µs). */
export interface PsiData {
  avg10: number;
  avg60: number;
  avg300: number;
  totalUs: bigint;
}

export interface Psi {
  some: PsiData;
  full?: PsiData;
}

export interface CpuStats {
  /** Cumulative CPU time over all cores, ns. */
  usageNs: bigint;
  userNs?: bigint;
  systemNs?: bigint;
  periods?: bigint;
  throttledPeriods?: bigint;
  throttledNs?: bigint;
  /** v2 `cpu.pressure`. */
  psi?: Psi;
}

export interface MemoryStats {
  /** All memory charged, page cache included. */
  usageBytes: bigint;
  /** usage − inactive file pages, at least 0. */
  workingSetBytes: bigint;
  /** Anonymous memory (v1 total_rss, v2 anon). */
  rssBytes?: bigint;
  /** Page cache (v1 total_cache, v2 file). */
  cacheBytes?: bigint;
  inactiveFileBytes?: bigint;
  /** The limit; undefined when unlimited. */
  limitBytes?: bigint;
  /** limit − working set (at least 0); undefined when unlimited. */
  availableBytes?: bigint;
  pageFaults?: bigint;
  majorPageFaults?: bigint;
  /** Times the cgroup hit its limit and the OOM killer ran (v2 only). */
  oomEvents?: bigint;
  /** Processes the OOM killer killed in the cgroup. */
  oomKills?: bigint;
  /** v2 `memory.pressure`. */
  psi?: Psi;
}

export interface SwapStats {
  usageBytes: bigint;
  /** Swap limit; undefined when unlimited. */
  limitBytes?: bigint;
  /** limit − usage (at least 0); undefined when unlimited. */
  availableBytes?: bigint;
}

export interface PidsStats {
  /** Tasks (threads included) in the cgroup and below. */
  current: bigint;
  /** undefined when unlimited. */
  limit?: bigint;
}

export interface CgroupStats {
  version: CgroupVersion;
  /** Wall-clock time of the read, ns since the epoch. */
  timestampNs: bigint;
  cpu?: CpuStats;
  memory?: MemoryStats;
  swap?: SwapStats;
  pids?: PidsStats;
}

export interface ReadStatsOptions {
  /** Where the cgroup filesystems are mounted. */
  root?: string;
  /** Skips detection when known. */
  version?: CgroupVersion;
}

/** v1 limits at or above this (PAGE_COUNTER_MAX in bytes, rounded to pages) mean unlimited. */
const V1_UNLIMITED = 1n << 62n;
/** cpuacct.stat counts USER_HZ (100 Hz) ticks. */
const NS_PER_TICK = 10_000_000n;

type Flat = Map<string, bigint>;

function nowNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
}

/** The cgroup path made absolute and free of `..` (it cannot leave the root). */
function normalizeCgroupPath(cgroupsPath: string): string {
  if (cgroupsPath.includes('\0') || cgroupsPath.includes(':')) {
    throw new BerthError('invalid-argument', 'ERR_CGROUP_PATH', `unsupported cgroups path ${JSON.stringify(cgroupsPath)} (cgroupfs paths only)`, {
      context: { cgroupsPath },
    });
  }
  return path.posix.normalize(`/${cgroupsPath}`);
}

/** A file's text, or undefined when the file (or its cgroup) is not there. */
async function readOptional(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR') || isErrnoCode(err, 'ENODEV')) return undefined;
    throw new BerthError('internal', 'ERR_CGROUP_READ', `cannot read ${file}: ${errorMessage(err)}`, { context: { file }, cause: err });
  }
}

function parseUint(text: string, file: string): bigint {
  const t = text.trim();
  if (!/^\d+$/.test(t)) throw new BerthError('internal', 'ERR_CGROUP_PARSE', `unexpected value ${JSON.stringify(t)} in ${file}`, { context: { file } });
  return BigInt(t);
}

/** A single-number file; `max` (v2 unlimited) is undefined, as is a missing file. */
async function readValue(file: string): Promise<bigint | 'max' | undefined> {
  const text = await readOptional(file);
  if (text === undefined) return undefined;
  if (text.trim() === 'max') return 'max';
  return parseUint(text, file);
}

async function readNumber(file: string): Promise<bigint | undefined> {
  const v = await readValue(file);
  return v === 'max' ? undefined : v;
}

/** A flat-keyed file (`key value` lines: memory.stat, cpu.stat, memory.events...). */
async function readFlat(file: string): Promise<Flat | undefined> {
  const text = await readOptional(file);
  if (text === undefined) return undefined;
  const out: Flat = new Map();
  for (const line of text.split('\n')) {
    const [key, value, extra] = line.trim().split(/\s+/);
    if (key && value !== undefined && extra === undefined && /^\d+$/.test(value)) out.set(key, BigInt(value));
  }
  return out;
}

function parsePsiLine(fields: string[]): PsiData | undefined {
  const kv = new Map(fields.map((f) => f.split('=') as [string, string]));
  const avg10 = Number(kv.get('avg10'));
  const avg60 = Number(kv.get('avg60'));
  const avg300 = Number(kv.get('avg300'));
  const total = kv.get('total');
  if (![avg10, avg60, avg300].every(Number.isFinite) || total === undefined || !/^\d+$/.test(total)) return undefined;
  return { avg10, avg60, avg300, totalUs: BigInt(total) };
}

/** A pressure file (`some avg10=… avg60=… avg300=… total=…`, and a `full` line). */
async function readPsi(file: string): Promise<Psi | undefined> {
  const text = await readOptional(file);
  if (text === undefined) return undefined;
  let some: PsiData | undefined;
  let full: PsiData | undefined;
  for (const line of text.split('\n')) {
    const [kind, ...fields] = line.trim().split(/\s+/);
    if (kind === 'some') some = parsePsiLine(fields);
    else if (kind === 'full') full = parsePsiLine(fields);
  }
  return some ? { some, ...(full ? { full } : {}) } : undefined;
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

function notFound(cgroupsPath: string, root: string, version: CgroupVersion): BerthError {
  return new BerthError('not-found', 'ERR_CGROUP_NOT_FOUND', `cgroup ${cgroupsPath} not found under ${root} (cgroup v${version})`, {
    context: { cgroupsPath, root, version },
  });
}

function workingSet(usage: bigint, inactiveFile: bigint | undefined): bigint {
  const inactive = inactiveFile ?? 0n;
  return usage > inactive ? usage - inactive : 0n;
}

function minus(a: bigint, b: bigint): bigint {
  return a > b ? a - b : 0n;
}

/** Drop undefined fields so records compare and serialise cleanly. */
function compact<T extends object>(obj: T): T {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as T;
}

async function readV1(root: string, cg: string): Promise<Omit<CgroupStats, 'version' | 'timestampNs'>> {
  const dir = (controller: string) => path.join(root, controller, cg);
  const present = await Promise.all(['cpuacct', 'cpu', 'memory', 'pids'].map((c) => isDir(dir(c))));
  if (!present.some(Boolean)) throw notFound(cg, root, 1);
  const out: Omit<CgroupStats, 'version' | 'timestampNs'> = {};

  const cpuacct = dir('cpuacct');
  const usage = await readNumber(path.join(cpuacct, 'cpuacct.usage'));
  if (usage !== undefined) {
    let userNs = await readNumber(path.join(cpuacct, 'cpuacct.usage_user'));
    let systemNs = await readNumber(path.join(cpuacct, 'cpuacct.usage_sys'));
    if (userNs === undefined || systemNs === undefined) {
      const ticks = await readFlat(path.join(cpuacct, 'cpuacct.stat'));
      const user = ticks?.get('user');
      const system = ticks?.get('system');
      userNs = user === undefined ? undefined : user * NS_PER_TICK;
      systemNs = system === undefined ? undefined : system * NS_PER_TICK;
    }
    const throttling = await readFlat(path.join(dir('cpu'), 'cpu.stat'));
    out.cpu = compact({
      usageNs: usage,
      userNs,
      systemNs,
      periods: throttling?.get('nr_periods'),
      throttledPeriods: throttling?.get('nr_throttled'),
      throttledNs: throttling?.get('throttled_time'),
    });
  }

  const memory = dir('memory');
  const memUsage = await readNumber(path.join(memory, 'memory.usage_in_bytes'));
  if (memUsage !== undefined) {
    const st = (await readFlat(path.join(memory, 'memory.stat'))) ?? new Map<string, bigint>();
    // Hierarchical totals (this cgroup and below) when use_hierarchy is on, as cadvisor reads them.
    const pick = (key: string) => st.get(`total_${key}`) ?? st.get(key);
    const inactiveFile = pick('inactive_file');
    const ws = workingSet(memUsage, inactiveFile);
    const rawLimit = await readNumber(path.join(memory, 'memory.limit_in_bytes'));
    const limit = rawLimit !== undefined && rawLimit < V1_UNLIMITED ? rawLimit : undefined;
    const oom = await readFlat(path.join(memory, 'memory.oom_control'));
    out.memory = compact({
      usageBytes: memUsage,
      workingSetBytes: ws,
      rssBytes: pick('rss'),
      cacheBytes: pick('cache'),
      inactiveFileBytes: inactiveFile,
      limitBytes: limit,
      availableBytes: limit === undefined ? undefined : minus(limit, ws),
      pageFaults: pick('pgfault'),
      majorPageFaults: pick('pgmajfault'),
      oomKills: oom?.get('oom_kill'),
    });
    // memsw counts memory plus swap; there only with swap accounting on.
    const memsw = await readNumber(path.join(memory, 'memory.memsw.usage_in_bytes'));
    if (memsw !== undefined) {
      const swapUsage = minus(memsw, memUsage);
      const rawMemswLimit = await readNumber(path.join(memory, 'memory.memsw.limit_in_bytes'));
      const swapLimit =
        rawMemswLimit !== undefined && rawMemswLimit < V1_UNLIMITED && limit !== undefined ? minus(rawMemswLimit, limit) : undefined;
      out.swap = compact({
        usageBytes: swapUsage,
        limitBytes: swapLimit,
        availableBytes: swapLimit === undefined ? undefined : minus(swapLimit, swapUsage),
      });
    }
  }

  const pids = dir('pids');
  const current = await readNumber(path.join(pids, 'pids.current'));
  if (current !== undefined) out.pids = compact({ current, limit: await readNumber(path.join(pids, 'pids.max')) });
  return out;
}

async function readV2(root: string, cg: string): Promise<Omit<CgroupStats, 'version' | 'timestampNs'>> {
  const dir = path.join(root, cg);
  if (!(await isDir(dir))) throw notFound(cg, root, 2);
  const out: Omit<CgroupStats, 'version' | 'timestampNs'> = {};

  const cpu = await readFlat(path.join(dir, 'cpu.stat'));
  const usageUs = cpu?.get('usage_usec');
  if (cpu && usageUs !== undefined) {
    const ns = (key: string) => {
      const us = cpu.get(key);
      return us === undefined ? undefined : us * 1000n;
    };
    out.cpu = compact({
      usageNs: usageUs * 1000n,
      userNs: ns('user_usec'),
      systemNs: ns('system_usec'),
      periods: cpu.get('nr_periods'),
      throttledPeriods: cpu.get('nr_throttled'),
      throttledNs: ns('throttled_usec'),
      psi: await readPsi(path.join(dir, 'cpu.pressure')),
    });
  }

  const memUsage = await readNumber(path.join(dir, 'memory.current'));
  if (memUsage !== undefined) {
    const st = (await readFlat(path.join(dir, 'memory.stat'))) ?? new Map<string, bigint>();
    const inactiveFile = st.get('inactive_file');
    const ws = workingSet(memUsage, inactiveFile);
    const limit = await readNumber(path.join(dir, 'memory.max'));
    const events = await readFlat(path.join(dir, 'memory.events'));
    out.memory = compact({
      usageBytes: memUsage,
      workingSetBytes: ws,
      rssBytes: st.get('anon'),
      cacheBytes: st.get('file'),
      inactiveFileBytes: inactiveFile,
      limitBytes: limit,
      availableBytes: limit === undefined ? undefined : minus(limit, ws),
      pageFaults: st.get('pgfault'),
      majorPageFaults: st.get('pgmajfault'),
      oomEvents: events?.get('oom'),
      oomKills: events?.get('oom_kill'),
      psi: await readPsi(path.join(dir, 'memory.pressure')),
    });
    const swapUsage = await readNumber(path.join(dir, 'memory.swap.current'));
    if (swapUsage !== undefined) {
      const swapLimit = await readNumber(path.join(dir, 'memory.swap.max'));
      out.swap = compact({
        usageBytes: swapUsage,
        limitBytes: swapLimit,
        availableBytes: swapLimit === undefined ? undefined : minus(swapLimit, swapUsage),
      });
    }
  }

  const current = await readNumber(path.join(dir, 'pids.current'));
  if (current !== undefined) out.pids = compact({ current, limit: await readNumber(path.join(dir, 'pids.max')) });
  return out;
}

/**
 * Read the stats of the cgroup at `cgroupsPath` (the OCI
 * `linux.cgroupsPath` of the cgroupfs driver, e.g. `/kubepods/pod<uid>/<id>`;
 * a pod's is its parent cgroup).
 */
export async function readStats(cgroupsPath: string, opts: ReadStatsOptions = {}): Promise<CgroupStats> {
  const root = opts.root ?? DEFAULT_CGROUP_ROOT;
  const version = opts.version ?? (await detectCgroupVersion(root));
  const cg = normalizeCgroupPath(cgroupsPath);
  const timestampNs = nowNs();
  const sections = version === 2 ? await readV2(root, cg) : await readV1(root, cg);
  return { version, timestampNs, ...sections };
}

/**
 * CRI's usage_nano_cores: CPU ns used per wall-clock second between two
 * reads of one cgroup (1e9 is one full core); undefined without CPU stats or
 * when time did not advance or the counter went back (a new cgroup).
 */
export function cpuNanoCores(prev: Pick<CgroupStats, 'timestampNs' | 'cpu'>, cur: Pick<CgroupStats, 'timestampNs' | 'cpu'>): bigint | undefined {
  if (!prev.cpu || !cur.cpu) return undefined;
  const dt = cur.timestampNs - prev.timestampNs;
  const used = cur.cpu.usageNs - prev.cpu.usageNs;
  if (dt <= 0n || used < 0n) return undefined;
  return (used * 1_000_000_000n) / dt;
}
