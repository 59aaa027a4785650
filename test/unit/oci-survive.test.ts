import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ConmonMonitor, Runc } from '../../src/core/runtime/oci/index.js';
import { processStartTime } from '../../src/core/runtime/oci/proc.js';
import { CONMON, log, ociFixture, parseCriLog, processesMentioning, type OciFixture } from './oci-helpers.js';

const childScript = join(dirname(fileURLToPath(import.meta.url)), 'oci-survive-child.js');

async function ticks(path: string): Promise<number> {
  return parseCriLog(await readFile(path, 'utf8')).filter((r) => r.line.startsWith('tick-')).length;
}

describe('a container outlives the process that created it', () => {
  let fx: OciFixture;
  before(async () => {
    fx = await ociFixture({ exitPollMs: 200 });
  });
  after(async () => {
    await fx.close();
    assert.deepEqual(await processesMentioning(fx.dir), [], 'no conmon/runc left running');
  });

  test('SIGKILL of the creator: the container keeps running and logging, and its exit is recorded', async () => {
    const id = 'survivor';
    const b = await fx.bundle(id, ['sh', '-c', 'i=0; while [ ! -e /tmp/stop ]; do echo tick-$i; i=$((i+1)); sleep 0.05; done; exit 4'], (spec) => {
      spec.root.readonly = false;
    });
    const stateDir = join(fx.dir, 'state');
    const child = spawn(process.execPath, [childScript, stateDir, JSON.stringify({ id, ...b, runtime: fx.runtime })], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let text = '';
        child.stdout!.on('data', (d: Buffer) => {
          text += d.toString();
          if (text.includes('\n')) resolve(text.slice(0, text.indexOf('\n')));
        });
        child.once('exit', (code) => reject(new Error(`child exited (${code}) before reporting`)));
      });
      const created = JSON.parse(line) as { pid: number; monitorPid: number };
      child.kill('SIGKILL');
      await exited;

      // The creator is gone; conmon and the container are not.
      await sleep(300);
      assert.notEqual(await processStartTime(created.monitorPid), undefined, 'conmon is alive');
      assert.equal((await new Runc(fx.runtime).state(id)).status, 'running');
      const n1 = await ticks(b.logPath);
      await sleep(400);
      const n2 = await ticks(b.logPath);
      assert.ok(n2 > n1, `still logging (${n1} -> ${n2})`);

      // A new monitor instance (a restarted berthd) finds it from disk.
      const fresh = new ConmonMonitor({ conmonPath: CONMON, stateDir, log, exitPollMs: 200 });
      const records = await fresh.list();
      assert.deepEqual(
        records.map((r) => [r.id, r.pid, r.monitorPid]),
        [[id, created.pid, created.monitorPid]],
      );
      assert.equal(await fresh.monitorAlive(id), true);
      assert.equal(await fresh.exitStatus(id), undefined);
      const waiting = fresh.waitExit(id, { timeoutMs: 10_000 });
      await writeFile(join(b.bundle, 'rootfs', 'tmp', 'stop'), '');
      const st = await waiting;
      assert.equal(st.exitCode, 4);
      assert.equal(st.oomKilled, false);
      await fresh.cleanup(id);
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
  });

  test('SIGKILL of the creator mid-create: the half-made container is found and cleaned up', async () => {
    const id = 'halfway';
    const marker = `hook-${fx.cgroupParent.slice(1)}`;
    const b = await fx.bundle(id, ['true'], (spec) => {
      // A createRuntime hook that keeps `runc create` busy for longer than this test.
      spec.hooks = { createRuntime: [{ path: '/bin/sh', args: ['sh', '-c', 'sleep 20; true', marker] }] };
    });
    const stateDir = join(fx.dir, 'state');
    const child = spawn(process.execPath, [childScript, stateDir, JSON.stringify({ id, ...b, runtime: fx.runtime })], {
      stdio: ['ignore', 'ignore', 'ignore'],
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      const fresh = new ConmonMonitor({ conmonPath: CONMON, stateDir, log });
      const conmonPidFile = join(fresh.persistDir(id), 'conmon.pid');
      for (let i = 0; i < 200 && (await readFile(conmonPidFile, 'utf8').catch(() => '')) === ''; i++) await sleep(20);
      await sleep(200);
      child.kill('SIGKILL');
      await exited;
      const records = await fresh.list();
      assert.deepEqual(
        records.map((r) => [r.id, r.pid, r.monitorPid]),
        [[id, 0, 0]],
        'a record of an unfinished create',
      );
      assert.equal((await processesMentioning(fresh.persistDir(id))).length > 0, true, 'conmon is still at it');
      await fresh.cleanup(id);
      assert.deepEqual(await processesMentioning(fx.dir), [], 'conmon and runc create are gone');
      await assert.rejects(new Runc(fx.runtime).state(id), /does not exist/);
      assert.deepEqual(await fresh.list(), []);
    } finally {
      child.kill('SIGKILL');
      await exited;
      for (const p of await processesMentioning(marker)) {
        const kids = await readFile(`/proc/${p.pid}/task/${p.pid}/children`, 'utf8').catch(() => '');
        for (const k of kids.split(' ').filter((x) => x !== '')) process.kill(Number(k), 'SIGKILL');
        process.kill(p.pid, 'SIGKILL');
      }
    }
  });
});
