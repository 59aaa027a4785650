import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BerthError } from '../../src/core/errors.js';
import { cpuNanoCores, detectCgroupVersion, readStats } from '../../src/core/runtime/cgroups/index.js';

const MiB = 1024n * 1024n;

function isCode(code: string): (err: unknown) => boolean {
  return (err) => err instanceof BerthError && err.code === code;
}

/** Write fixture files: `{ 'a/b/file': 'contents' }` under root. */
async function tree(root: string, files: Record<string, string>): Promise<void> {
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await writeFile(path.join(root, rel), text);
  }
}

async function waitFor(file: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      await access(file);
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${file} did not appear in ${ms} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

describe('cgroup stats from fixture trees', () => {
  let tmp: string;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'berth-cgroups-'));
  });

  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('reads a cgroup v2 container the way cadvisor computes it', async () => {
    const root = path.join(tmp, 'v2');
    const cg = 'kubepods/burstable/pod1234/ctr1';
    await tree(root, {
      'cgroup.controllers': 'cpuset cpu io memory hugetlb pids rdma misc\n',
      [`${cg}/cpu.stat`]:
        'usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\ncore_sched.force_idle_usec 0\nnr_periods 40\nnr_throttled 3\nthrottled_usec 120000\nnr_bursts 0\nburst_usec 0\n',
      [`${cg}/cpu.pressure`]: 'some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=789\n',
      [`${cg}/memory.current`]: '52428800\n',
      [`${cg}/memory.max`]: '104857600\n',
      [`${cg}/memory.stat`]: [
        'anon 31457280',
        'file 20971520',
        'kernel 1048576',
        'shmem 0',
        'file_mapped 4194304',
        'active_anon 31457280',
        'inactive_anon 0',
        'active_file 8388608',
        'inactive_file 12582912',
        'pgfault 9876',
        'pgmajfault 12',
        '',
      ].join('\n'),
      [`${cg}/memory.events`]: 'low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n',
      [`${cg}/memory.pressure`]: 'some avg10=0.00 avg60=0.00 avg300=0.00 total=42\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=40\n',
      [`${cg}/memory.swap.current`]: '4194304\n',
      [`${cg}/memory.swap.max`]: 'max\n',
      [`${cg}/pids.current`]: '7\n',
      [`${cg}/pids.max`]: '1024\n',
    });
    assert.equal(await detectCgroupVersion(root), 2);
    const stats = await readStats(`/${cg}`, { root });
    assert.equal(stats.version, 2);
    assert.ok(stats.timestampNs > BigInt(Date.now() - 60_000) * 1_000_000n);
    assert.deepEqual(stats.cpu, {
      usageNs: 2_500_000_000n,
      userNs: 2_000_000_000n,
      systemNs: 500_000_000n,
      periods: 40n,
      throttledPeriods: 3n,
      throttledNs: 120_000_000n,
      psi: {
        some: { avg10: 1.5, avg60: 0.25, avg300: 0, totalUs: 123456n },
        full: { avg10: 0, avg60: 0, avg300: 0, totalUs: 789n },
      },
    });
    assert.deepEqual(stats.memory, {
      usageBytes: 50n * MiB,
      workingSetBytes: 38n * MiB,
      rssBytes: 30n * MiB,
      cacheBytes: 20n * MiB,
      inactiveFileBytes: 12n * MiB,
      limitBytes: 100n * MiB,
      availableBytes: 62n * MiB,
      pageFaults: 9876n,
      majorPageFaults: 12n,
      oomEvents: 2n,
      oomKills: 1n,
      psi: {
        some: { avg10: 0, avg60: 0, avg300: 0, totalUs: 42n },
        full: { avg10: 0, avg60: 0, avg300: 0, totalUs: 40n },
      },
    });
    assert.deepEqual(stats.swap, { usageBytes: 4n * MiB });
    assert.deepEqual(stats.pids, { current: 7n, limit: 1024n });
  });

  it('reads a v2 pod cgroup with unlimited memory and no pids controller', async () => {
    const root = path.join(tmp, 'v2b');
    await tree(root, {
      'cgroup.controllers': 'cpu memory\n',
      'pod/cpu.stat': 'usage_usec 10\nuser_usec 6\nsystem_usec 4\n',
      'pod/memory.current': '4096\n',
      'pod/memory.max': 'max\n',
      'pod/memory.stat': 'anon 0\nfile 8192\ninactive_file 8192\npgfault 1\npgmajfault 0\n',
    });
    const stats = await readStats('pod', { root, version: 2 });
    assert.deepEqual(stats.cpu, { usageNs: 10_000n, userNs: 6_000n, systemNs: 4_000n });
    // Inactive file larger than usage (stat and current are read at different times): never negative.
    assert.equal(stats.memory?.workingSetBytes, 0n);
    assert.equal(stats.memory?.limitBytes, undefined);
    assert.equal(stats.memory?.availableBytes, undefined);
    assert.equal(stats.pids, undefined);
    assert.equal(stats.swap, undefined);
  });

  it('reads a v1 tree without hierarchical totals or usage_user/usage_sys', async () => {
    const root = path.join(tmp, 'v1');
    await tree(root, {
      'cpuacct/k/c/cpuacct.usage': '3000000000\n',
      'cpuacct/k/c/cpuacct.stat': 'user 200\nsystem 50\n',
      'cpu/k/c/cpu.stat': 'nr_periods 10\nnr_throttled 2\nthrottled_time 5000000\n',
      'memory/k/c/memory.usage_in_bytes': '10485760\n',
      'memory/k/c/memory.limit_in_bytes': '9223372036854771712\n',
      'memory/k/c/memory.stat': 'cache 4194304\nrss 6291456\ninactive_file 1048576\npgfault 55\npgmajfault 2\n',
      'memory/k/c/memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 3\n',
    });
    assert.equal(await detectCgroupVersion(root), 1);
    const stats = await readStats('/k/c', { root });
    assert.deepEqual(stats.cpu, {
      usageNs: 3_000_000_000n,
      userNs: 2_000_000_000n,
      systemNs: 500_000_000n,
      periods: 10n,
      throttledPeriods: 2n,
      throttledNs: 5_000_000n,
    });
    assert.deepEqual(stats.memory, {
      usageBytes: 10n * MiB,
      workingSetBytes: 9n * MiB,
      rssBytes: 6n * MiB,
      cacheBytes: 4n * MiB,
      inactiveFileBytes: 1n * MiB,
      pageFaults: 55n,
      majorPageFaults: 2n,
      oomKills: 3n,
    });
    assert.equal(stats.pids, undefined);
    assert.equal(stats.swap, undefined);
  });

  it('reports a missing cgroup as not found and keeps paths inside the root', async () => {
    const root = path.join(tmp, 'v2c');
    await tree(root, { 'cgroup.controllers': 'cpu\n', 'inside/cpu.stat': 'usage_usec 1\n' });
    await assert.rejects(readStats('/gone', { root }), isCode('ERR_CGROUP_NOT_FOUND'));
    // `..` cannot climb out of the root.
    assert.equal((await readStats('/../../inside', { root })).cpu?.usageNs, 1000n);
    await assert.rejects(readStats('system.slice:berth:abc', { root }), isCode('ERR_CGROUP_PATH'));
    await assert.rejects(readStats('/x', { root: path.join(tmp, 'no-such-root') }), isCode('ERR_CGROUP_ROOT'));
  });

  it('computes usage_nano_cores from two reads', () => {
    const prev = { timestampNs: 1_000_000_000n, cpu: { usageNs: 5_000_000_000n } };
    assert.equal(cpuNanoCores(prev, { timestampNs: 3_000_000_000n, cpu: { usageNs: 6_000_000_000n } }), 500_000_000n);
    assert.equal(cpuNanoCores(prev, { timestampNs: 1_000_000_000n, cpu: { usageNs: 6_000_000_000n } }), undefined);
    assert.equal(cpuNanoCores(prev, { timestampNs: 2_000_000_000n, cpu: { usageNs: 1n } }), undefined);
    assert.equal(cpuNanoCores(prev, { timestampNs: 2_000_000_000n }), undefined);
  });
});

describe('cgroup v1 stats on this host', async () => {
  const root = '/sys/fs/cgroup';
  const v1 = (await detectCgroupVersion(root).catch(() => 2)) === 1;
  const name = `berth-test-${randomBytes(4).toString('hex')}`;
  const controllers = ['cpu', 'cpuacct', 'memory', 'pids'];
  const children: ChildProcess[] = [];
  let tmp: string;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'berth-cgroups-v1-'));
    if (!v1) return;
    for (const c of controllers) await mkdir(path.join(root, c, name));
  });

  after(async () => {
    for (const child of children) {
      child.kill('SIGKILL');
      await exited(child);
    }
    if (v1) {
      for (const c of controllers) {
        const dir = path.join(root, c, name);
        for (let i = 0; i < 50; i++) {
          try {
            await rmdir(dir);
            break;
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
            await new Promise((r) => setTimeout(r, 20));
          }
        }
        await assert.rejects(access(dir), `cgroup ${dir} removed`);
      }
    }
    await rm(tmp, { recursive: true, force: true });
  });

  /** Run a shell script that first moves itself into the test cgroup of the given controllers. */
  function inCgroup(script: string, ctrls = controllers): ChildProcess {
    const join = ctrls.map((c) => `echo $$ > ${path.join(root, c, name, 'cgroup.procs')}`).join(' && ');
    const child = spawn('sh', ['-c', `${join} && ${script}`], { stdio: 'ignore' });
    children.push(child);
    return child;
  }

  it('reads cpu, memory, page cache, pids and OOM kills of a real cgroup', { skip: v1 ? false : 'host is not cgroup v1' }, async () => {
    const ready = path.join(tmp, 'ready');
    // Page cache (a 16 MiB file), some CPU, then one sleeping task.
    inCgroup(
      `dd if=/dev/zero of=${path.join(tmp, 'cache')} bs=1M count=16 2>/dev/null && i=0 && while [ $i -lt 30000 ]; do i=$((i+1)); done && touch ${ready} && exec sleep 60`,
    );
    await waitFor(ready, 10_000);

    const stats = await readStats(`/${name}`, { root });
    assert.equal(stats.version, 1);
    const cpu = stats.cpu;
    const mem = stats.memory;
    assert.ok(cpu && mem && stats.pids, JSON.stringify(stats, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
    assert.ok(cpu.usageNs > 1_000_000n, `cpu usage ${cpu.usageNs}`);
    assert.ok(cpu.userNs !== undefined && cpu.systemNs !== undefined);
    assert.ok(mem.usageBytes >= 16n * MiB, `usage ${mem.usageBytes}`);
    assert.ok((mem.cacheBytes ?? 0n) >= 15n * MiB, `cache ${mem.cacheBytes}`);
    assert.ok(mem.inactiveFileBytes !== undefined && mem.rssBytes !== undefined);
    assert.equal(mem.workingSetBytes, mem.usageBytes - (mem.inactiveFileBytes ?? 0n));
    assert.ok(mem.workingSetBytes < mem.usageBytes, 'fresh page cache is inactive and not in the working set');
    assert.ok((mem.pageFaults ?? 0n) > 0n);
    assert.equal(mem.oomKills, 0n);
    assert.equal(mem.limitBytes, undefined, 'no limit set');
    assert.equal(mem.availableBytes, undefined);
    assert.deepEqual(stats.pids, { current: 1n });

    await writeFile(path.join(root, 'memory', name, 'memory.limit_in_bytes'), String(64n * MiB));
    await writeFile(path.join(root, 'pids', name, 'pids.max'), '10');
    const limited = await readStats(`/${name}`, { root, version: 1 });
    assert.equal(limited.memory?.limitBytes, 64n * MiB);
    assert.equal(limited.memory?.availableBytes, 64n * MiB - (limited.memory?.workingSetBytes ?? 0n));
    assert.deepEqual(limited.pids, { current: 1n, limit: 10n });
    assert.ok((limited.cpu?.usageNs ?? 0n) >= cpu.usageNs);

    // dd with a 256 MiB buffer cannot fit under 64 MiB: the OOM killer takes it.
    const hog = inCgroup('exec dd if=/dev/zero of=/dev/null bs=256M count=1', ['memory']);
    assert.equal((await exited(hog)).signal, 'SIGKILL');
    const after = await readStats(`/${name}`, { root, version: 1 });
    assert.ok((after.memory?.oomKills ?? 0n) >= 1n, `oom kills ${after.memory?.oomKills}`);
    const oomControl = await readFile(path.join(root, 'memory', name, 'memory.oom_control'), 'utf8');
    assert.match(oomControl, new RegExp(`oom_kill ${after.memory?.oomKills}\\b`));
  });
});
