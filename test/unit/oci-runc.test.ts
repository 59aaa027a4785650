import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, afterEach, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isBerthError } from '../../src/core/errors.js';
import { Runc, runcMessage } from '../../src/core/runtime/oci/index.js';
import { code, ociFixture, type OciFixture, processesMentioning, RUNC } from './oci-helpers.js';

test('runcMessage takes the last stderr line, without logrus decoration', () => {
  assert.equal(runcMessage('container does not exist\n'), 'container does not exist');
  assert.equal(runcMessage('time="2026-01-01T00:00:00Z" level=error msg="exec failed: \\"x\\" not found"\n'), 'exec failed: "x" not found');
  assert.equal(runcMessage(''), '');
});

describe('runc wrapper', () => {
  let fx: OciFixture;
  let runc: Runc;
  before(async () => {
    fx = await ociFixture();
    runc = new Runc(fx.runtime);
  });
  afterEach(async () => {
    for (const id of fx.ids) await fx.monitor.cleanup(id);
  });
  after(async () => {
    await fx.close();
    assert.deepEqual(await processesMentioning(fx.dir), [], 'no conmon/runc left running');
  });

  test('errors carry a stable code, runc\'s message and the container id', async () => {
    await assert.rejects(runc.state('missing'), (err) => {
      assert.equal(code(err), 'ERR_RUNC_NOT_FOUND');
      assert.ok(isBerthError(err));
      assert.equal(err.kind, 'not-found');
      assert.equal(err.context.container, 'missing');
      assert.equal(err.context.runcMessage, 'container does not exist');
      return true;
    });
    await assert.rejects(runc.state('../escape'), (err) => code(err) === 'ERR_RUNC_BAD_ID');
    await assert.rejects(new Runc({ binary: '/no/such/runc', root: fx.runtime.root }).list(), (err) => code(err) === 'ERR_RUNC_SPAWN');
    assert.deepEqual(await new Runc({ binary: RUNC, root: `${fx.dir}/empty-root` }).list(), []);
  });

  test('state, list, update, kill, delete on a real container', async () => {
    const b = await fx.bundle('plain', ['sleep', '60']);
    const { pid } = await fx.monitor.createContainer({ id: 'plain', ...b, runtime: fx.runtime });
    const listed = await runc.list();
    assert.deepEqual(
      listed.map((s) => [s.id, s.status, s.pid]),
      [['plain', 'created', pid]],
    );
    await runc.start('plain');
    assert.equal((await runc.state('plain')).status, 'running');
    await assert.rejects(runc.start('plain'), (err) => isBerthError(err) && err.context.container === 'plain');

    await runc.update('plain', { memory: { limit: 64 * 1024 * 1024 }, pids: { limit: 100 } });
    const cg = `/sys/fs/cgroup/memory${fx.cgroupParent}/plain`;
    assert.equal((await readFile(`${cg}/memory.limit_in_bytes`, 'utf8')).trim(), String(64 * 1024 * 1024));
    assert.equal((await readFile(`/sys/fs/cgroup/pids${fx.cgroupParent}/plain/pids.max`, 'utf8')).trim(), '100');

    await assert.rejects(runc.delete('plain'), (err) => {
      assert.equal(code(err), 'ERR_RUNC_FAILED');
      assert.match((err as Error).message, /not stopped|running/);
      return true;
    });
    await runc.kill('plain', 'SIGKILL');
    for (let i = 0; i < 100 && (await runc.state('plain')).status !== 'stopped'; i++) await sleep(20);
    assert.equal((await runc.state('plain')).status, 'stopped');
    await assert.rejects(runc.kill('plain', 'SIGTERM'), (err) => code(err) === 'ERR_RUNC_NOT_RUNNING');
    await runc.delete('plain');
    assert.deepEqual(await runc.list(), []);
  });

  test('kill --all reaches every process of a container, plain kill only its init', async () => {
    // The init handles USR1 (and lives on); its children die of it.
    const b = await fx.bundle('all', ['sh', '-c', 'trap "echo usr1" USR1; sleep 60 & while :; do sleep 0.05; done']);
    const { pid } = await fx.monitor.createContainer({ id: 'all', ...b, runtime: fx.runtime });
    await runc.start('all');
    await sleep(200);
    const procs = async () =>
      (await readFile(`/sys/fs/cgroup/pids${fx.cgroupParent}/all/cgroup.procs`, 'utf8')).split('\n').filter((l) => l !== '').map(Number);
    const cmdline = (p: number) => readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    let bg: number | undefined;
    for (const p of await procs()) if ((await cmdline(p)) === 'sleep\x0060\x00') bg = p;
    assert.ok(bg !== undefined, 'found the background sleep');
    await runc.kill('all', 'SIGUSR1');
    await sleep(200);
    assert.ok((await procs()).includes(bg), 'the background sleep survived a plain kill');
    await runc.kill('all', 'SIGUSR1', { all: true });
    await sleep(200);
    const left = await procs();
    assert.ok(left.includes(pid), 'init handled USR1');
    assert.ok(!left.includes(bg), 'the background sleep got USR1');
});
});
