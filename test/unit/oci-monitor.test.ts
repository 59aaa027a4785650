import assert from 'node:assert/strict';
import { readFile, rename } from 'node:fs/promises';
import { after, afterEach, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isBerthError } from '../../src/core/errors.js';
import { join } from 'node:path';
import { ConmonMonitor, Runc, splitCriLog } from '../../src/core/runtime/oci/index.js';
import { DirWatch } from '../../src/core/runtime/oci/exit-watch.js';
import { processStartTime } from '../../src/core/runtime/oci/proc.js';
import { code, CONMON, log, ociFixture, type OciFixture, parseCriLog, processesMentioning, RFC3339_NANO, waitFor } from './oci-helpers.js';

test('splitCriLog rebuilds both streams byte for byte and caps each', () => {
  const log = Buffer.from(
    [
      '2026-01-01T00:00:00.000000001+00:00 stdout P abc',
      '2026-01-01T00:00:00.000000002+00:00 stderr F e1',
      '2026-01-01T00:00:00.000000003+00:00 stdout F def',
      '2026-01-01T00:00:00.000000004+00:00 stdout F ',
      '2026-01-01T00:00:00.000000005+00:00 stderr P tail',
      '',
    ].join('\n'),
  );
  const all = splitCriLog(log, 1024);
  assert.equal(all.stdout.toString(), 'abcdef\n\n');
  assert.equal(all.stderr.toString(), 'e1\ntail');
  assert.equal(all.stdoutTruncated || all.stderrTruncated, false);
  const capped = splitCriLog(log, 4);
  assert.equal(capped.stdout.toString(), 'abcd');
  assert.equal(capped.stderr.toString(), 'e1\nt');
  assert.equal(capped.stdoutTruncated && capped.stderrTruncated, true);
});

test('DirWatch falls back to polling when the directory cannot be watched', async () => {
  const w = new DirWatch('/nonexistent/dir/for/dirwatch', 20);
  let ticks = 0;
  const remove = w.add((name) => {
    if (name === undefined) ticks++;
  });
  await sleep(150);
  remove();
  const seen = ticks;
  assert.ok(seen >= 3, `${seen} poll ticks`);
  await sleep(100);
  assert.equal(ticks, seen, 'no ticks once the last listener left');
});

describe('conmon monitor', () => {
  let fx: OciFixture;

  before(async () => {
    fx = await ociFixture();
  });
  afterEach(async () => {
    for (const id of fx.ids) await fx.monitor.cleanup(id);
  });
  after(async () => {
    await fx.close();
    assert.deepEqual(await processesMentioning(fx.dir), [], 'no conmon/runc left running');
  });

  async function run(id: string, args: string[], edit?: (spec: Record<string, any>) => void) {
    const b = await fx.bundle(id, args, edit);
    const created = await fx.monitor.createContainer({ id, ...b, runtime: fx.runtime });
    return { ...b, ...created };
  }

  test('CRI log lines: streams, F/P tags, RFC3339Nano; exit code recorded', async () => {
    const c = await run('logs', [
      'sh',
      '-c',
      'echo out-line; echo err-line >&2; printf no-newline; sleep 0.1; printf err-partial >&2; sleep 0.1; exit 3',
    ]);
    assert.ok(c.pid > 0 && c.monitorPid > 0);
    const state = await fx.monitor.state('logs');
    assert.equal(state.status, 'created');
    assert.equal(state.pid, c.pid);
    assert.equal(await fx.monitor.exitStatus('logs'), undefined);
    await fx.monitor.start('logs');
    const exit = await fx.monitor.waitExit('logs', { timeoutMs: 10_000 });
    assert.equal(exit.exitCode, 3);
    assert.equal(exit.oomKilled, false);
    assert.ok(Math.abs(exit.exitedAt.getTime() - Date.now()) < 10_000);
    const recs = parseCriLog(await readFile(c.logPath, 'utf8'));
    for (const r of recs) assert.match(r.time, RFC3339_NANO);
    const byStream = (s: string) => recs.filter((r) => r.stream === s).map((r) => `${r.tag} ${r.line}`);
    assert.deepEqual(byStream('stdout'), ['F out-line', 'P no-newline']);
    assert.deepEqual(byStream('stderr'), ['F err-line', 'P err-partial']);
    // Timestamps never go backwards.
    const times = recs.map((r) => Date.parse(r.time));
    assert.deepEqual([...times].sort((a, b) => a - b), times);
    assert.deepEqual(await fx.monitor.exitStatus('logs'), exit);
  });

  test('a create that runc refuses fails with runc\'s message and leaves nothing behind', async () => {
    const b = await fx.bundle('bad', ['/bin/nonexistent-binary'], (spec) => {
      spec.root.path = 'no-such-rootfs';
    });
    await assert.rejects(fx.monitor.createContainer({ id: 'bad', ...b, runtime: fx.runtime }), (err) => {
      assert.equal(code(err), 'ERR_RUNC_CREATE');
      assert.match((err as Error).message, /no-such-rootfs|no such file/i);
      return true;
    });
    await assert.rejects(new Runc(fx.runtime).state('bad'), (err) => code(err) === 'ERR_RUNC_NOT_FOUND');
    await assert.rejects(fx.monitor.record('bad'), (err) => code(err) === 'ERR_MONITOR_NOT_FOUND');
    assert.deepEqual(await processesMentioning(fx.dir), []);
  });

  test('conmon refusing to start (bad runtime path) is reported with its message', async () => {
    const b = await fx.bundle('norunc', ['true']);
    await assert.rejects(
      fx.monitor.createContainer({ id: 'norunc', ...b, runtime: { ...fx.runtime, binary: '/no/such/runc' } }),
      (err) => {
        assert.equal(code(err), 'ERR_MONITOR_START');
        assert.match((err as Error).message, /Runtime path \/no\/such\/runc is not valid/);
        return true;
      },
    );
    await assert.rejects(fx.monitor.record('norunc'), (err) => code(err) === 'ERR_MONITOR_NOT_FOUND');
  });

  test('a second create with the same id is refused', async () => {
    await run('dup', ['sleep', '10']);
    const b = await fx.bundle('dup', ['sleep', '10']);
    await assert.rejects(fx.monitor.createContainer({ id: 'dup', ...b, runtime: fx.runtime }), (err) => code(err) === 'ERR_MONITOR_EXISTS');
    assert.equal((await new Runc(fx.runtime).state('dup')).status, 'created');
  });

  test('stdin: with it the container gets an open pipe, without it /dev/null', async () => {
    const script = ['sh', '-c', 'if read x; then echo read-$x; else echo eof; fi'];
    const b = await fx.bundle('nostdin', script);
    await fx.monitor.createContainer({ id: 'nostdin', ...b, runtime: fx.runtime });
    await fx.monitor.start('nostdin');
    assert.equal((await fx.monitor.waitExit('nostdin', { timeoutMs: 10_000 })).exitCode, 0);
    assert.deepEqual(parseCriLog(await readFile(b.logPath, 'utf8')).map((r) => r.line), ['eof']);

    const s = await fx.bundle('stdin', script);
    await fx.monitor.createContainer({ id: 'stdin', ...s, runtime: fx.runtime, stdin: true, stdinOnce: true });
    await fx.monitor.start('stdin');
    await sleep(300);
    assert.equal(await fx.monitor.exitStatus('stdin'), undefined, 'still waiting on its stdin');
    assert.equal((await new Runc(fx.runtime).state('stdin')).status, 'running');
  });

  test('tty: output arrives on stdout through the terminal', async () => {
    const b = await fx.bundle('tty', ['sh', '-c', 'echo out; echo err >&2; [ -t 1 ] && echo is-a-tty'], (spec) => {
      spec.process.terminal = true;
    });
    await fx.monitor.createContainer({ id: 'tty', ...b, runtime: fx.runtime, tty: true });
    await fx.monitor.start('tty');
    assert.equal((await fx.monitor.waitExit('tty', { timeoutMs: 10_000 })).exitCode, 0);
    const recs = parseCriLog(await readFile(b.logPath, 'utf8'));
    assert.deepEqual(
      recs.map((r) => [r.stream, r.line.replace(/\r$/, '')]),
      [
        ['stdout', 'out'],
        ['stdout', 'err'],
        ['stdout', 'is-a-tty'],
      ],
    );
  });

  test('resize: a tty container sees its new terminal size', async () => {
    const b = await fx.bundle('resize', ['sh', '-c', 'while :; do echo size-$(stty size | tr " " x); sleep 0.05; done'], (spec) => {
      spec.process.terminal = true;
    });
    await fx.monitor.createContainer({ id: 'resize', ...b, runtime: fx.runtime, tty: true });
    await fx.monitor.start('resize');
    await fx.monitor.resize('resize', { width: 123, height: 45 });
    await waitFor('the new size in the log', async () => ((await readFile(b.logPath, 'utf8')).includes('size-45x123') ? true : undefined));
    await assert.rejects(fx.monitor.resize('resize', { width: 0, height: 10 }), (err) => code(err) === 'ERR_MONITOR_BAD_SIZE');
    await run('notty', ['sleep', '10']);
    await assert.rejects(fx.monitor.resize('notty', { width: 80, height: 24 }), (err) => code(err) === 'ERR_MONITOR_NO_TTY');
  });

  test("berthd's NOTIFY_SOCKET/LISTEN_* never reach runc or the container", async () => {
    const saved = { ...process.env };
    process.env.NOTIFY_SOCKET = join(fx.dir, 'notify.sock');
    process.env.LISTEN_PID = String(process.pid);
    process.env.LISTEN_FDS = '1';
    try {
      const b = await fx.bundle('env', ['sh', '-c', 'echo notify=${NOTIFY_SOCKET:-none} fds=${LISTEN_FDS:-none}']);
      await fx.monitor.createContainer({ id: 'env', ...b, runtime: fx.runtime });
      await fx.monitor.start('env');
      assert.equal((await fx.monitor.waitExit('env', { timeoutMs: 10_000 })).exitCode, 0);
      assert.deepEqual(parseCriLog(await readFile(b.logPath, 'utf8')).map((r) => r.line), ['notify=none fds=none']);
    } finally {
      for (const k of ['NOTIFY_SOCKET', 'LISTEN_PID', 'LISTEN_FDS']) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
  });

  test('waitExit hears the exit file through inotify, not the poll', async () => {
    const slowPoll = new ConmonMonitor({ conmonPath: CONMON, stateDir: join(fx.dir, 'state'), log, exitPollMs: 60_000 });
    await run('inotify', ['sleep', '0.3']);
    await fx.monitor.start('inotify');
    const t0 = Date.now();
    const st = await slowPoll.waitExit('inotify', { timeoutMs: 10_000 });
    assert.equal(st.exitCode, 0);
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
  });

  test('update: new limits reach the cgroup', async () => {
    await run('upd', ['sleep', '60']);
    await fx.monitor.start('upd');
    await fx.monitor.update('upd', { memory: { limit: 96 * 1024 * 1024 } });
    const limit = await readFile(`/sys/fs/cgroup/memory${fx.cgroupParent}/upd/memory.limit_in_bytes`, 'utf8');
    assert.equal(limit.trim(), String(96 * 1024 * 1024));
  });

  test('onExit reports each exit once, and again for an id that comes back', async () => {
    const events: [string, number][] = [];
    const off = fx.monitor.onExit((id, st) => events.push([id, st.exitCode]));
    try {
      await run('ev1', ['sh', '-c', 'exit 1']);
      await run('ev2', ['sh', '-c', 'sleep 0.2; exit 2']);
      await fx.monitor.start('ev1');
      await fx.monitor.start('ev2');
      await waitFor('two exits', async () => (events.length >= 2 ? true : undefined));
      await sleep(1200); // a poll tick passes: nothing is reported twice
      assert.deepEqual([...events].sort(), [['ev1', 1], ['ev2', 2]]);
      await fx.monitor.cleanup('ev1');
      await run('ev1', ['sh', '-c', 'exit 5']);
      await fx.monitor.start('ev1');
      await waitFor('the second ev1', async () => (events.length >= 3 ? true : undefined));
      assert.deepEqual(events[2], ['ev1', 5]);
    } finally {
      off();
    }
  });

  test('stop: SIGTERM is enough for a process that handles it', async () => {
    await run('term', ['sh', '-c', 'trap "exit 7" TERM; while :; do sleep 0.05; done']);
    await fx.monitor.start('term');
    await sleep(200);
    const t0 = Date.now();
    const st = await fx.monitor.stop('term', 10);
    assert.equal(st.exitCode, 7);
    assert.ok(Date.now() - t0 < 5000);
  });

  test('stop: a container that was created but never started', async () => {
    await run('unstarted', ['sleep', '60']);
    const st = await fx.monitor.stop('unstarted', 5);
    // runc init (still waiting for `runc start`) ends on the SIGTERM; its status is runc's (2 here), not 143.
    assert.ok(st.exitCode > 0, `exit ${st.exitCode}`);
    assert.equal((await fx.monitor.state('unstarted')).status, 'stopped');
  });

  test('stop: SIGKILL after the timeout when SIGTERM is ignored', async () => {
    await run('kill', ['sh', '-c', 'trap "" TERM; while :; do sleep 0.05; done']);
    await fx.monitor.start('kill');
    await sleep(200);
    const t0 = Date.now();
    const st = await fx.monitor.stop('kill', 1);
    const took = Date.now() - t0;
    assert.equal(st.exitCode, 137);
    assert.ok(took >= 1000 && took < 6000, `took ${took} ms`);
    // Stopping again just reports the same status.
    assert.equal((await fx.monitor.stop('kill', 1)).exitCode, 137);
  });

  test('exec (conmon exec mode): output capture, exit code, timeout, background children, errors', async () => {
    const c = await run('exec', ['sleep', '60']);
    await fx.monitor.start('exec');
    const proc = (args: string[]) => ({ ...(c.spec as any).process, args });
    const r = await fx.monitor.exec('exec', proc(['sh', '-c', 'echo hi; echo there >&2; exit 5']), { timeoutMs: 10_000 });
    assert.equal(r.exitCode, 5);
    assert.equal(r.stdout.toString(), 'hi\n');
    assert.equal(r.stderr.toString(), 'there\n');
    assert.equal(r.timedOut, false);

    const t0 = Date.now();
    const slow = await fx.monitor.exec('exec', proc(['sh', '-c', 'echo before; sleep 30']), { timeoutMs: 500 });
    assert.equal(slow.timedOut, true);
    assert.equal(slow.exitCode, -1);
    assert.equal(slow.stdout.toString(), 'before\n');
    const took = Date.now() - t0;
    assert.ok(took >= 500 && took < 2000, `timed out after ${took} ms`);
    // The exec'd sleep is gone (at most a zombie, since the container's init does not reap):
    // the only live sleep is the container's own.
    const ps = await fx.monitor.exec('exec', proc(['sh', '-c', 'cat /proc/[0-9]*/stat | grep -v ") Z " | grep -c "(sleep)"']), {
      timeoutMs: 10_000,
    });
    assert.equal(ps.stdout.toString().trim(), '1', 'only the init sleep is alive');

    const line = 'y'.repeat(99);
    const big = await fx.monitor.exec('exec', proc(['sh', '-c', `yes ${line} | head -c 100000`]), { timeoutMs: 10_000, maxOutputBytes: 1000 });
    assert.equal(big.stdout.toString(), `${line}\n`.repeat(10));
    assert.equal(big.stdoutTruncated, true);
    assert.equal(big.stderrTruncated, true, 'conmon stopped logging at its limit');

    // Output comes back byte for byte, lines without a newline included.
    const exact = await fx.monitor.exec('exec', proc(['sh', '-c', 'printf "a\\r\\n\\nb"; printf "x\\ty" >&2']), { timeoutMs: 10_000 });
    assert.equal(exact.stdout.toString(), 'a\r\n\nb');
    assert.equal(exact.stderr.toString(), 'x\ty');
    assert.equal(exact.stdoutTruncated || exact.stderrTruncated, false);

    await assert.rejects(fx.monitor.exec('exec', proc(['/no/such/binary']), { timeoutMs: 10_000 }), (err) => {
      assert.equal(code(err), 'ERR_RUNC_EXEC');
      assert.match((err as Error).message, /no such file|not found/i);
      return true;
    });

    // Aborting (a cancelled ExecSync call) kills the process at once.
    const ac = new AbortController();
    const t2 = Date.now();
    const aborted = fx.monitor.exec('exec', proc(['sh', '-c', 'sleep 30; echo never']), { timeoutMs: 20_000, signal: ac.signal });
    setTimeout(() => ac.abort(), 300);
    await assert.rejects(aborted, (err) => code(err) === 'ERR_RUNC_EXEC_CANCELLED');
    assert.ok(Date.now() - t2 < 3000);
    const live = await fx.monitor.exec('exec', proc(['sh', '-c', 'cat /proc/[0-9]*/stat | grep -v ") Z " | grep -c "(sleep)"']));
    assert.equal(live.stdout.toString().trim(), '1', 'the aborted sleep is gone');
    await assert.rejects(
      fx.monitor.exec('exec', proc(['true']), { signal: AbortSignal.abort() }),
      (err) => code(err) === 'ERR_RUNC_EXEC_CANCELLED',
    );

    // A background process that keeps stdout open does not hold the exec past its own exit.
    const t1 = Date.now();
    const bg = await fx.monitor.exec('exec', proc(['sh', '-c', 'sleep 3 & echo started']), { timeoutMs: 0 });
    assert.equal(bg.exitCode, 0);
    assert.equal(bg.stdout.toString(), 'started\n');
    assert.ok(Date.now() - t1 < 2000, 'returned before the background sleep ended');

    await fx.monitor.stop('exec', 0);
    await assert.rejects(fx.monitor.exec('exec', proc(['true'])), (err) => {
      assert.equal(code(err), 'ERR_RUNC_NOT_RUNNING');
      assert.equal(isBerthError(err) && err.context.container, 'exec');
      return true;
    });
  });

  test('reopenLog: after the log is renamed, new lines go to a new file at the path', async () => {
    const c = await run('reopen', ['sh', '-c', 'i=0; while :; do echo line-$i; i=$((i+1)); sleep 0.05; done']);
    await fx.monitor.start('reopen');
    await waitFor('first lines', async () => ((await readFile(c.logPath, 'utf8')).includes('line-2') ? true : undefined));
    await rename(c.logPath, `${c.logPath}.1`);
    const t0 = performance.now();
    await fx.monitor.reopenLog('reopen');
    const ms = performance.now() - t0;
    await waitFor('lines in the new file', async () => ((await readFile(c.logPath, 'utf8')).split('\n').length > 3 ? true : undefined));
    const oldLines = parseCriLog(await readFile(`${c.logPath}.1`, 'utf8')).map((r) => r.line);
    const newLines = parseCriLog(await readFile(c.logPath, 'utf8')).map((r) => r.line);
    const num = (l: string) => Number(l.slice('line-'.length));
    assert.ok(num(newLines[0]!) > num(oldLines.at(-1)!), 'new file continues after the old one');
    assert.ok(ms < 1000, `reopen took ${ms} ms`);
  });

  test('reopenLog on a container whose monitor is gone fails cleanly', async () => {
    await run('noreopen', ['true']);
    await fx.monitor.start('noreopen');
    await fx.monitor.waitExit('noreopen', { timeoutMs: 10_000 });
    await waitFor('conmon gone', async () => ((await fx.monitor.monitorAlive('noreopen')) ? undefined : true));
    await assert.rejects(fx.monitor.reopenLog('noreopen'), (err) => code(err) === 'ERR_MONITOR_GONE');
  });

  test('OOM: a container past its memory limit is reported oomKilled', async () => {
    await run('oom', ['sh', '-c', 'x=0123456789abcdef; while :; do x=$x$x; done'], (spec) => {
      spec.linux.resources = { ...spec.linux.resources, memory: { limit: 8 * 1024 * 1024 } };
    });
    await fx.monitor.start('oom');
    const st = await fx.monitor.waitExit('oom', { timeoutMs: 30_000 });
    assert.equal(st.exitCode, 137);
    assert.equal(st.oomKilled, true);
  });

  test('cleanup is idempotent and kills a monitor whose container is still running', async () => {
    const c = await run('gone', ['sleep', '60']);
    await fx.monitor.start('gone');
    await fx.monitor.cleanup('gone');
    await fx.monitor.cleanup('gone');
    await assert.rejects(new Runc(fx.runtime).state('gone'), (err) => code(err) === 'ERR_RUNC_NOT_FOUND');
    assert.equal(await processStartTime(c.monitorPid), undefined, 'conmon is gone');
    assert.equal(await processStartTime(c.pid), undefined, 'the container process is gone');
  });

  test('waitExit rejects when conmon is gone without an exit file; cleanup still removes the container', async () => {
    const c = await run('orphan', ['sleep', '60']);
    await fx.monitor.start('orphan');
    const waiting = fx.monitor.waitExit('orphan', { timeoutMs: 10_000 });
    process.kill(c.monitorPid, 'SIGKILL');
    await assert.rejects(waiting, (err) => code(err) === 'ERR_MONITOR_GONE');
    assert.equal((await new Runc(fx.runtime).state('orphan')).status, 'running');
    await fx.monitor.cleanup('orphan');
    await assert.rejects(new Runc(fx.runtime).state('orphan'), (err) => code(err) === 'ERR_RUNC_NOT_FOUND');
    assert.equal(await processStartTime(c.pid), undefined);
  });

  test('a create that hangs past the timeout is undone', async () => {
    const marker = `hook-${fx.cgroupParent.slice(1)}`;
    const monitor = new ConmonMonitor({ conmonPath: CONMON, stateDir: join(fx.dir, 'state'), log, createTimeoutMs: 500 });
    const b = await fx.bundle('hang', ['true'], (spec) => {
      // A createRuntime hook that outlasts the timeout keeps `runc create` busy.
      spec.hooks = { createRuntime: [{ path: '/bin/sh', args: ['sh', '-c', 'sleep 5; true', marker] }] };
    });
    const t0 = Date.now();
    await assert.rejects(monitor.createContainer({ id: 'hang', ...b, runtime: fx.runtime }), (err) => code(err) === 'ERR_MONITOR_CREATE_TIMEOUT');
    assert.ok(Date.now() - t0 < 4000);
    await assert.rejects(new Runc(fx.runtime).state('hang'), (err) => code(err) === 'ERR_RUNC_NOT_FOUND');
    await assert.rejects(monitor.record('hang'), (err) => code(err) === 'ERR_MONITOR_NOT_FOUND');
    assert.deepEqual(await processesMentioning(fx.dir), [], 'conmon and runc create are gone');
    // The hook itself is runc's business once runc is gone; end it here so it does not outlive the test.
    for (const p of await processesMentioning(marker)) {
      const kids = await readFile(`/proc/${p.pid}/task/${p.pid}/children`, 'utf8').catch(() => '');
      for (const k of kids.split(' ').filter((x) => x !== '')) process.kill(Number(k), 'SIGKILL');
      process.kill(p.pid, 'SIGKILL');
    }
  });

  test('create+start latency', async (t) => {
    const createMs: number[] = [];
    const startMs: number[] = [];
    for (let i = 0; i < 20; i++) {
      const id = `lat${i}`;
      const b = await fx.bundle(id, ['true']);
      const t0 = performance.now();
      await fx.monitor.createContainer({ id, ...b, runtime: fx.runtime });
      const t1 = performance.now();
      await fx.monitor.start(id);
      const t2 = performance.now();
      createMs.push(t1 - t0);
      startMs.push(t2 - t1);
      assert.equal((await fx.monitor.waitExit(id, { timeoutMs: 10_000 })).exitCode, 0);
      await fx.monitor.cleanup(id);
      fx.ids.delete(id);
    }
    const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const total = createMs.map((c, i) => c + startMs[i]!);
    t.diagnostic(
      `create p50 ${p50(createMs).toFixed(1)} ms, start p50 ${p50(startMs).toFixed(1)} ms, create+start p50 ${p50(total).toFixed(1)} ms (min ${Math.min(...total).toFixed(1)}, max ${Math.max(...total).toFixed(1)})`,
    );
  });

  test('exec latency', async (t) => {
    const c = await run('execlat', ['sleep', '60']);
    await fx.monitor.start('execlat');
    const ms: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      const r = await fx.monitor.exec('execlat', { ...(c.spec as any).process, args: ['true'] }, { timeoutMs: 10_000 });
      ms.push(performance.now() - t0);
      assert.equal(r.exitCode, 0);
    }
    ms.sort((a, b) => a - b);
    t.diagnostic(`exec p50 ${ms[10]!.toFixed(1)} ms (min ${ms[0]!.toFixed(1)}, max ${ms[19]!.toFixed(1)})`);
  });

  test('conmon memory per container (RSS/PSS)', async (t) => {
    const ids = ['mem0', 'mem1', 'mem2', 'mem3'];
    for (const id of ids) {
      await run(id, ['sleep', '60']);
      await fx.monitor.start(id);
    }
    await sleep(200);
    const mems = [];
    for (const id of ids) mems.push((await fx.monitor.monitorMemory(id))!);
    const kib = (n: number) => Math.round(n / 1024);
    t.diagnostic(`conmon per container: rss ${mems.map((m) => kib(m.rss)).join('/')} KiB, pss ${mems.map((m) => kib(m.pss)).join('/')} KiB`);
    for (const m of mems) {
      assert.ok(m.rss > 0 && m.pss > 0 && m.pss <= m.rss);
      assert.ok(m.pss < 4 * 1024 * 1024, 'conmon stays small');
    }
  });
});
