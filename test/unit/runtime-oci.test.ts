import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isBerthError } from '../../src/core/errors.js';
import type { TaskExitEvent } from '../../src/core/events/index.js';
import { OciRuntime, UNKNOWN_EXIT_CODE } from '../../src/core/runtime/index.js';
import { Runc } from '../../src/core/runtime/oci/index.js';
import { processStartTime } from '../../src/core/runtime/oci/proc.js';
import { code, parseCriLog, processesMentioning, RUNC, waitFor } from './oci-helpers.js';
import { runtimeWorld, type RuntimeWorld } from './runtime-helpers.js';

describe('runtime.oci with runc + conmon', () => {
  let w: RuntimeWorld;
  let rt: OciRuntime;
  const made = new Set<string>();

  before(async () => {
    w = await runtimeWorld();
    rt = await w.open();
  });
  afterEach(async () => {
    for (const id of made) await rt.delete(id);
    made.clear();
  });
  after(async () => {
    await w.close();
    assert.deepEqual(await processesMentioning(w.fx.dir), [], 'no conmon/runc left running');
  });

  async function create(id: string, args: string[], opts: { handler?: string; edit?: (spec: Record<string, any>) => void } = {}) {
    made.add(id);
    const b = await w.bundle(id, args, opts.edit);
    const { pid } = await rt.create({ id, handler: opts.handler ?? '', ...b, tty: false, stdin: false, stdinOnce: false });
    return { ...b, pid };
  }

  test('create, start, state, and one /tasks/exit with the exit code', async () => {
    const c = await create('life', ['sh', '-c', 'sleep 0.3; exit 3']);
    assert.ok(c.pid > 0);
    assert.equal(await rt.state('life'), 'created');
    assert.equal(await rt.exitStatus('life'), undefined);
    await rt.start('life');
    assert.equal(await rt.state('life'), 'running');
    const ev = await w.waitExit('life');
    assert.equal(ev.exitCode, 3);
    assert.equal(ev.pid, c.pid);
    assert.equal(ev.oomKilled, false);
    assert.ok(ev.exitedAt instanceof Date && Math.abs(ev.exitedAt.getTime() - Date.now()) < 10_000);
    assert.equal(await rt.state('life'), 'stopped');
    assert.deepEqual(await rt.exitStatus('life'), { exitCode: 3, exitedAt: ev.exitedAt, oomKilled: false });
    // Stopping a stopped container is a no-op and publishes nothing more.
    await rt.stop('life', 5);
    await sleep(300);
    assert.equal(w.exits('life').length, 1);
  });

  test('stop: SIGTERM ignored, SIGKILL after the timeout; the exit is published before stop returns', async () => {
    await create('stubborn', ['sh', '-c', 'trap "" TERM; while :; do sleep 0.05; done']);
    await rt.start('stubborn');
    await sleep(200);
    const t0 = Date.now();
    await rt.stop('stubborn', 1);
    const took = Date.now() - t0;
    assert.ok(took >= 1000 && took < 6000, `took ${took} ms`);
    assert.equal(w.exits('stubborn').length, 1);
    assert.equal(w.exits('stubborn')[0]!.exitCode, 137);
    assert.equal(await rt.state('stubborn'), 'stopped');
    await rt.stop('stubborn', 1);
    assert.equal(w.exits('stubborn').length, 1);
  });

  test('stop with timeout 0 kills at once; stop with another signal uses it', async () => {
    await create('now', ['sleep', '60']);
    await rt.start('now');
    const t0 = Date.now();
    await rt.stop('now', 0);
    assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
    assert.equal(w.exits('now')[0]?.exitCode, 137);

    await create('usr1', ['sh', '-c', 'trap "exit 9" USR1; while :; do sleep 0.05; done']);
    await rt.start('usr1');
    await sleep(200);
    await rt.stop('usr1', 10, 'SIGUSR1');
    assert.equal(w.exits('usr1')[0]?.exitCode, 9);
    await assert.rejects(rt.stop('usr1', 1, 'SIGNOPE'), (err) => code(err) === 'ERR_RUNTIME_BAD_SIGNAL');
  });

  test('kill signals the init process; a stopped container is left alone', async () => {
    await create('killme', ['sh', '-c', 'trap "exit 4" TERM; while :; do sleep 0.05; done']);
    await rt.start('killme');
    await sleep(200);
    await rt.kill('killme', 'TERM');
    assert.equal((await w.waitExit('killme')).exitCode, 4);
    await rt.kill('killme', 'SIGKILL');
    await assert.rejects(rt.kill('killme', 'bogus'), (err) => code(err) === 'ERR_RUNTIME_BAD_SIGNAL');
  });

  test('delete removes a running container and its monitor, and is idempotent', async () => {
    const c = await create('del', ['sleep', '60']);
    await rt.start('del');
    await rt.delete('del');
    await rt.delete('del');
    made.delete('del');
    await assert.rejects(new Runc({ binary: RUNC, root: join(w.stateDir, 'runc') }).state('del'), (err) => code(err) === 'ERR_RUNC_NOT_FOUND');
    assert.equal(await processStartTime(c.pid), undefined);
    assert.deepEqual(await processesMentioning(c.bundle), [], 'its conmon is gone');
    assert.equal(await rt.state('del'), 'unknown');
    for (const op of [() => rt.start('del'), () => rt.reopenLog('del'), () => rt.update('del', { devices: [] }), () => rt.kill('del', 'KILL')]) {
      await assert.rejects(op(), (err) => isBerthError(err) && err.kind === 'not-found' && err.code === 'ERR_RUNTIME_NOT_FOUND');
    }
    await assert.rejects(rt.exec('del', { cmd: ['true'], timeoutSec: 1 }), (err) => code(err) === 'ERR_RUNTIME_NOT_FOUND');
    assert.equal(await rt.exitStatus('del'), undefined);
    await assert.rejects(rt.stop('del', 1), (err) => code(err) === 'ERR_RUNTIME_NOT_FOUND');
    await rt.delete('never-existed');
  });

  test('exec: output, exit code, env/cwd overrides, timeout', async () => {
    await create('exec', ['sleep', '60'], { edit: (s) => (s.process.env = ['PATH=/bin', 'A=container', 'B=kept']) });
    await rt.start('exec');
    const r = await rt.exec('exec', { cmd: ['sh', '-c', 'echo out $A $B; pwd; echo err >&2; exit 5'], timeoutSec: 10, env: ['A=exec'], cwd: '/tmp' });
    assert.equal(r.exitCode, 5);
    assert.equal(r.stdout.toString(), 'out exec kept\n/tmp\n');
    assert.equal(r.stderr.toString(), 'err\n');
    assert.equal(r.timedOut, false);

    const t0 = Date.now();
    const slow = await rt.exec('exec', { cmd: ['sh', '-c', 'echo before; sleep 30'], timeoutSec: 1 });
    assert.equal(slow.timedOut, true);
    assert.equal(slow.stdout.toString(), 'before\n');
    assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);

    const big = await rt.exec('exec', { cmd: ['sh', '-c', 'i=0; while [ $i -lt 2000 ]; do echo 0123456789abcdefghijklmnopqrstuvwxy; i=$((i+1)); done'], timeoutSec: 10, maxOutputBytes: 1000 });
    assert.equal(big.stdout.length, 1000);

    await assert.rejects(rt.exec('exec', { cmd: [], timeoutSec: 1 }), (err) => code(err) === 'ERR_RUNTIME_EXEC_NO_CMD');
    const ac = new AbortController();
    const pending = rt.exec('exec', { cmd: ['sh', '-c', 'exec sleep 7'], timeoutSec: 20 }, ac.signal);
    const sleeping = async () => (await processesMentioning('sleep 7')).filter((p) => p.cmdline.startsWith('sleep 7'));
    await waitFor('the exec to run', async () => (await sleeping()).length === 1);
    const t1 = Date.now();
    ac.abort();
    await assert.rejects(pending, (err) => code(err) === 'ERR_RUNC_EXEC_CANCELLED');
    assert.ok(Date.now() - t1 < 2000, `cancel took ${Date.now() - t1} ms`);
    assert.deepEqual(await sleeping(), [], 'the cancelled exec is killed');
    await assert.rejects(rt.exec('exec', { cmd: ['true'], timeoutSec: 5 }, ac.signal), (err) => code(err) === 'ERR_RUNC_EXEC_CANCELLED');
  });

  test('update: a new memory limit reaches the live cgroup', async () => {
    await create('upd', ['sleep', '60'], {
      edit: (s) => (s.linux.resources = { ...s.linux.resources, memory: { limit: 64 * 1024 * 1024 } }),
    });
    await rt.start('upd');
    const limitFile = `/sys/fs/cgroup/memory${w.fx.cgroupParent}/upd/memory.limit_in_bytes`;
    assert.equal((await readFile(limitFile, 'utf8')).trim(), String(64 * 1024 * 1024));
    await rt.update('upd', { devices: [], memory: { limit: 32 * 1024 * 1024 } });
    assert.equal((await readFile(limitFile, 'utf8')).trim(), String(32 * 1024 * 1024));
  });

  test('reopenLog: after a rename new lines go to a new file at the log path', async () => {
    const c = await create('reopen', ['sh', '-c', 'i=0; while :; do echo line-$i; i=$((i+1)); sleep 0.05; done']);
    await rt.start('reopen');
    await waitFor('first lines', async () => (await readFile(c.logPath, 'utf8')).includes('line-2'));
    await rename(c.logPath, `${c.logPath}.1`);
    await rt.reopenLog('reopen');
    await waitFor('lines in the new file', async () => (await readFile(c.logPath, 'utf8')).split('\n').length > 3);
    const last = parseCriLog(await readFile(`${c.logPath}.1`, 'utf8')).at(-1)!.line;
    const first = parseCriLog(await readFile(c.logPath, 'utf8'))[0]!.line;
    assert.ok(Number(first.slice(5)) > Number(last.slice(5)));
  });

  test('OOM: /tasks/oom then /tasks/exit with oomKilled', async () => {
    await create('oom', ['sh', '-c', 'x=0123456789abcdef; while :; do x=$x$x; done'], {
      edit: (s) => (s.linux.resources = { ...s.linux.resources, memory: { limit: 8 * 1024 * 1024 } }),
    });
    await rt.start('oom');
    const ev = await w.waitExit('oom', 30_000);
    assert.equal(ev.exitCode, 137);
    assert.equal(ev.oomKilled, true);
    const topics = w.seen.filter((e) => (e.event as { id?: string }).id === 'oom').map((e) => e.topic);
    assert.deepEqual(topics, ['/tasks/oom', '/tasks/exit']);
  });

  test('a monitor killed under a running container: its exit is still published, as unknown (255)', async () => {
    await create('lost', ['sleep', '60']);
    await rt.start('lost');
    const monitorPid = Number(await readFile(join(w.stateDir, '_monitors', 'containers', 'lost', 'conmon.pid'), 'utf8'));
    process.kill(monitorPid, 'SIGKILL');
    await sleep(500);
    assert.equal(w.exits('lost').length, 0, 'still running');
    execFileSync(RUNC, ['--root', join(w.stateDir, 'runc'), 'kill', 'lost', 'KILL']);
    const ev = await w.waitExit('lost');
    assert.equal(ev.exitCode, UNKNOWN_EXIT_CODE);
    assert.equal((await rt.exitStatus('lost'))?.exitCode, UNKNOWN_EXIT_CODE);
  });

  test('handlers: default first, two roots kept apart, unknown names rejected naming the known ones', async () => {
    assert.deepEqual(rt.handlers().map((h) => h.name), ['runc', 'runc-alt']);
    assert.equal(rt.handler('').name, 'runc');
    assert.equal(rt.handler('').root, join(w.stateDir, 'runc'));
    const alt = rt.handler('runc-alt');
    assert.equal(alt.root, w.altRoot);
    assert.equal(alt.binary, RUNC, 'found in PATH');
    assert.deepEqual(alt.options, { note: 'runc with its own root' });
    assert.equal(typeof alt.features.recursiveReadOnlyMounts, 'boolean');
    assert.equal(alt.features.userNamespaces, false, 'runc 1.1 has no id-mapped mounts');

    await create('in-default', ['sleep', '60']);
    await create('in-alt', ['sleep', '60'], { handler: 'runc-alt' });
    const ids = (root: string) =>
      ((JSON.parse(execFileSync(RUNC, ['--root', root, 'list', '--format', 'json']).toString()) as { id: string }[] | null) ?? []).map((c) => c.id);
    assert.deepEqual(ids(join(w.stateDir, 'runc')), ['in-default']);
    assert.deepEqual(ids(w.altRoot), ['in-alt']);
    await rt.start('in-alt');
    assert.equal(await rt.state('in-alt'), 'running');
    await rt.stop('in-alt', 0);
    assert.equal(w.exits('in-alt')[0]?.exitCode, 137);

    assert.throws(() => rt.handler('nope'), (err) => {
      assert.ok(isBerthError(err));
      assert.equal(err.kind, 'invalid-argument');
      assert.equal(err.code, 'ERR_RUNTIME_HANDLER_UNKNOWN');
      assert.match(err.message, /"nope".*runc, runc-alt/);
      return true;
    });
    const b = await w.bundle('bad-handler', ['true']);
    await assert.rejects(rt.create({ id: 'bad-handler', handler: 'nope', ...b, tty: false, stdin: false, stdinOnce: false }), (err) => code(err) === 'ERR_RUNTIME_HANDLER_UNKNOWN');
  });

  test('recovery: a new instance over the same state finds a running container and one that exited while down', async () => {
    const first = await w.open();
    const start = async (id: string, args: string[]) => {
      made.add(id);
      const b = await w.bundle(id, args);
      await first.create({ id, handler: 'runc-alt', ...b, tty: false, stdin: false, stdinOnce: false });
      await first.start(id);
    };
    await start('survivor', ['sleep', '60']);
    await start('died-while-down', ['sh', '-c', 'sleep 0.3; exit 2']);
    await first.close();
    // "Down": the exit happens with nobody watching; close() killed nothing.
    await waitFor('exit file', async () => (await first.exitStatus('died-while-down')) !== undefined);
    await sleep(400);
    assert.equal(w.exits('died-while-down').length, 0, 'a closed runtime publishes nothing');
    assert.equal(await first.state('survivor'), 'running');
    await assert.rejects(first.recover('survivor', 'runc-alt'), (err) => code(err) === 'ERR_RUNTIME_CLOSED');

    const second = await w.open();
    await second.recover('died-while-down', 'runc-alt');
    assert.equal(w.exits('died-while-down').length, 1, 'published at recover');
    assert.equal(w.exits('died-while-down')[0]!.exitCode, 2);
    await second.recover('survivor', 'runc-alt');
    assert.equal(await second.state('survivor'), 'running');
    const r = await second.exec('survivor', { cmd: ['echo', 'still here'], timeoutSec: 10 });
    assert.equal(r.stdout.toString(), 'still here\n');
    execFileSync(RUNC, ['--root', w.altRoot, 'kill', 'survivor', 'KILL']);
    const ev: TaskExitEvent = await w.waitExit('survivor');
    assert.equal(ev.exitCode, 137);
    await assert.rejects(second.recover('no-such', ''), (err) => code(err) === 'ERR_RUNTIME_NOT_FOUND');
    assert.deepEqual((await second.containerIds()).filter((id) => id === 'survivor' || id === 'died-while-down').sort(), ['died-while-down', 'survivor']);
    for (const id of ['survivor', 'died-while-down']) {
      await second.delete(id);
      made.delete(id);
    }
    await second.close();
  });

  test('recover refuses a container whose create has not finished (what a crash mid-create leaves)', async () => {
    made.add('half');
    const b = await w.bundle('half', ['true'], (s) => {
      // A createRuntime hook keeps `runc create` busy for a while.
      s.hooks = { createRuntime: [{ path: '/bin/sh', args: ['sh', '-c', 'sleep 1'] }] };
    });
    const creating = rt.create({ id: 'half', handler: '', ...b, tty: false, stdin: false, stdinOnce: false });
    const other = await w.open();
    await waitFor('the provisional record', async () => (await other.containerIds()).includes('half'));
    await assert.rejects(other.recover('half', ''), (err) => {
      assert.equal(code(err), 'ERR_RUNTIME_NOT_FOUND');
      assert.match((err as Error).message, /never fully created/);
      return true;
    });
    await other.close();
    await creating;
    assert.equal(await rt.state('half'), 'created');
  });

  test('close() leaves containers running', async () => {
    const other = await w.open();
    made.add('outlives');
    const b = await w.bundle('outlives', ['sleep', '60']);
    const { pid } = await other.create({ id: 'outlives', handler: '', ...b, tty: false, stdin: false, stdinOnce: false });
    await other.start('outlives');
    await other.close();
    await sleep(200);
    assert.ok((await processStartTime(pid)) !== undefined, 'container still running');
    assert.equal(await rt.state('outlives'), 'running');
  });
});
