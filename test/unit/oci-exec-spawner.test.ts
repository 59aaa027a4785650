import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ShellSpawner, shellQuote, spawnerLine } from '../../src/core/runtime/oci/spawner.js';

test('shellQuote keeps every byte of a word, quotes included; refuses NUL and newline', () => {
  assert.equal(shellQuote("it's"), `'it'\\''s'`);
  assert.equal(shellQuote('$(x) `y` "z" \\'), `'$(x) \`y\` "z" \\'`);
  assert.throws(() => shellQuote('a\nb'));
  assert.throws(() => shellQuote('a\0b'));
  assert.throws(() => spawnerLine(1, { argv: ['x'], cwd: '/', env: { 'A;B': '1' } }));
  assert.throws(() => spawnerLine(1, { argv: [], cwd: '/' }));
});

describe('ShellSpawner', () => {
  let dir: string;
  let spawner: ShellSpawner;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-spawner-'));
    spawner = new ShellSpawner();
  });
  after(async () => {
    spawner.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('runs argv word for word in cwd with the extra env, stdio and fd 3 on files, and reports the exit status', async () => {
    const out = join(dir, 'out');
    const err = join(dir, 'err');
    const fd3 = join(dir, 'fd3');
    const status = await spawner.run({
      argv: ['/bin/sh', '-c', 'printf "%s|" "$@"; pwd; echo "$BERTH_X" >&2; echo three >&3; exit 7', 'sh', "a 'b'", '$HOME', ''],
      cwd: dir,
      env: { BERTH_X: "v'1 $y" },
      stdout: out,
      stderr: err,
      fd3,
    });
    assert.equal(status, 7);
    assert.equal(await readFile(out, 'utf8'), `a 'b'|$HOME||${dir}\n`);
    assert.equal(await readFile(err, 'utf8'), "v'1 $y\n");
    assert.equal(await readFile(fd3, 'utf8'), 'three\n');
  });

  test('commands run side by side; a signal death is 128+n; a missing binary is 127', async () => {
    const started = Date.now();
    const slow = spawner.run({ argv: ['/bin/sh', '-c', 'sleep 0.5'], cwd: dir });
    const fast = await spawner.run({ argv: ['/bin/true'], cwd: dir });
    assert.equal(fast, 0);
    assert.ok(Date.now() - started < 400, 'a quick command is not held behind a slow one');
    assert.equal(await slow, 0);
    assert.equal(await spawner.run({ argv: ['/bin/sh', '-c', 'kill -9 $$'], cwd: dir }), 137);
    assert.equal(await spawner.run({ argv: ['/no/such/binary'], cwd: dir, stderr: join(dir, 'nf') }), 127);
    assert.equal(await spawner.run({ argv: ['/bin/true'], cwd: join(dir, 'missing-dir'), stderr: join(dir, 'nf') }) !== 0, true);
  });

  test('a command outlives its shell being killed and still reports; the next run starts a new shell', async () => {
    const inner = (spawner as unknown as { child?: { pid?: number } }).child;
    assert.ok(inner?.pid);
    const mark = join(dir, 'started');
    const pending = spawner.run({ argv: ['/bin/sh', '-c', 'echo up >&3; sleep 0.3'], cwd: dir, fd3: mark });
    while ((await readFile(mark, 'utf8').catch(() => '')) !== 'up\n') await sleep(5);
    process.kill(inner.pid, 'SIGKILL');
    // The command outlives the shell and still reports on the shell's stdout.
    assert.equal(await pending, 0);
    assert.equal(await spawner.run({ argv: ['/bin/true'], cwd: dir }), 0);
    const again = (spawner as unknown as { child?: { pid?: number } }).child;
    assert.notEqual(again?.pid, inner.pid);
  });

  test('a shell that cannot be started rejects', async () => {
    const broken = new ShellSpawner(join(dir, 'no-shell'));
    await assert.rejects(broken.run({ argv: ['/bin/true'], cwd: dir }), /no-shell/);
  });
});
