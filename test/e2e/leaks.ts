/**
 * Checks that a berthd left nothing behind of the pods and containers it ran:
 * mounts under its dir, pinned network namespaces, veths on the test bridge,
 * iptables rules and host-local IPs of the test network, runc containers,
 * conmon processes and cgroups. Call it after a test removed its pods (berthd may still run: its
 * netns dir stays a mount point of its own while it runs, which is not a leak).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface LeakScope {
  /** berthd's private dir (the harness's `dir`); its root and state are under it. */
  dir: string;
  /** berthd's state dir (default `<dir>/state`). */
  state?: string;
  /** A CNI bridge the pods were attached to: no veth may be left on it. */
  bridge?: string;
  /** A CNI network name: no iptables rule may mention it (bridge ipMasq and portmap comment theirs with it). */
  network?: string;
  /** Sandbox and container ids the test made: no cgroup may be left of them. */
  ids?: readonly string[];
  /** A cgroup parent the test's pods used: no cgroup may be left below it. */
  cgroupParent?: string;
}

/** IPs host-local still holds for a network (its files other than the lock and last-reserved markers). */
async function heldIps(network: string): Promise<string[]> {
  const names = await readdir(join('/var/lib/cni/networks', network)).catch(() => [] as string[]);
  return names.filter((n) => n !== 'lock' && !n.startsWith('last_reserved_ip'));
}

async function cgroupChildren(parent: string): Promise<string[]> {
  const out: string[] = [];
  for (const controller of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    const dir = join('/sys/fs/cgroup', controller, parent);
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    out.push(...entries.filter((e) => e.isDirectory()).map((e) => join(dir, e.name)));
  }
  return out;
}

/** Mount points at or under `dir`, except berthd's netns dir itself. */
export async function mountsUnder(dir: string, state: string): Promise<string[]> {
  const netnsDir = join(state, 'cri.service', 'netns');
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)) && p !== netnsDir);
}

async function netnsFiles(state: string): Promise<string[]> {
  return readdir(join(state, 'cri.service', 'netns')).catch(() => []);
}

async function bridgePorts(bridge: string): Promise<string[]> {
  const { stdout } = await run('ip', ['-o', 'link', 'show', 'master', bridge]).catch(() => ({ stdout: '' }));
  return stdout.split('\n').filter((l) => l.trim() !== '');
}

async function iptablesLines(network: string): Promise<string[]> {
  const out: string[] = [];
  for (const bin of ['iptables-save', 'ip6tables-save']) {
    const { stdout } = await run(bin, []).catch(() => ({ stdout: '' }));
    out.push(...stdout.split('\n').filter((l) => l.includes(`name: \\"${network}\\"`) || l.includes(`name: "${network}"`)));
  }
  return out;
}

/** Containers in every runc root of runtime.oci (one per handler: <state>/runtime.oci/<handler>). */
async function runcContainers(state: string): Promise<string[]> {
  const base = join(state, 'runtime.oci');
  const handlers = (await readdir(base, { withFileTypes: true }).catch(() => [])).filter((e) => e.isDirectory() && !e.name.startsWith('_'));
  const out: string[] = [];
  for (const h of handlers) {
    const { stdout } = await run('runc', ['--root', join(base, h.name), 'list', '-q']);
    out.push(...stdout.split('\n').filter((l) => l.trim() !== '').map((id) => `${id} (${h.name})`));
  }
  return out;
}

async function conmons(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const args = cmd.split('\0');
    if (args[0]?.endsWith('conmon') && args.some((a) => a.startsWith(dir))) out.push(`${pid}: ${args.join(' ')}`);
  }
  return out;
}

/** Cgroups named by one of `ids` under the default parent (/berth) or `parent`, in every controller. */
async function cgroupsOf(ids: readonly string[], parent: string | undefined): Promise<string[]> {
  if (ids.length === 0) return [];
  const found: string[] = [];
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > 4) return;
    const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      if (ids.includes(e.name)) found.push(join(d, e.name));
      else await walk(join(d, e.name), depth + 1);
    }
  };
  const parents = ['berth', ...(parent === undefined ? [] : [parent])];
  for (const controller of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    for (const p of parents) await walk(join('/sys/fs/cgroup', controller, p), 0);
  }
  return found;
}

/** Everything left behind in `scope`, as readable lines (empty: clean). */
export async function findLeaks(scope: LeakScope): Promise<string[]> {
  const state = scope.state ?? join(scope.dir, 'state');
  const [mounts, netns, ports, rules, runc, monitors, cgroups, ips, children] = await Promise.all([
    mountsUnder(scope.dir, state),
    netnsFiles(state),
    scope.bridge === undefined ? Promise.resolve([]) : bridgePorts(scope.bridge),
    scope.network === undefined ? Promise.resolve([]) : iptablesLines(scope.network),
    runcContainers(state),
    conmons(scope.dir),
    cgroupsOf(scope.ids ?? [], scope.cgroupParent),
    scope.network === undefined ? Promise.resolve([]) : heldIps(scope.network),
    scope.cgroupParent === undefined ? Promise.resolve([]) : cgroupChildren(scope.cgroupParent),
  ]);
  return [
    ...mounts.map((m) => `mount ${m}`),
    ...netns.map((n) => `netns file ${n}`),
    ...ports.map((p) => `bridge port ${p}`),
    ...rules.map((r) => `iptables ${r}`),
    ...runc.map((c) => `runc container ${c}`),
    ...monitors.map((c) => `conmon ${c}`),
    ...cgroups.map((c) => `cgroup ${c}`),
    ...ips.map((ip) => `host-local IP ${ip} of ${scope.network}`),
    ...children.map((c) => `cgroup ${c}`),
  ];
}

/** Fails listing every leak in `scope`. */
export async function assertNoLeaks(scope: LeakScope): Promise<void> {
  assert.deepEqual(await findLeaks(scope), [], 'leaked resources');
}
