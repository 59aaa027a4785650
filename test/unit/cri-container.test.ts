import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KeyedLock } from '../../src/cri/container/keyed-lock.js';
import { criSignalName, criSignalOf } from '../../src/cri/container/signals.js';
import { MAX_TERMINATION_MESSAGE_BYTES, readTerminationMessage, TERMINATION_MESSAGE_PATH_ANNOTATION } from '../../src/cri/container/termination.js';
import { Mount, Signal } from '../../src/generated/api.js';

describe('stop signals', () => {
  test('CRI Signal values become the names or numbers runc takes', () => {
    assert.equal(criSignalName(Signal.RUNTIME_DEFAULT), '');
    assert.equal(criSignalName(Signal.SIGTERM), 'SIGTERM');
    assert.equal(criSignalName(Signal.SIGQUIT), 'SIGQUIT');
    assert.equal(criSignalName(Signal.SIGRTMIN), '34');
    assert.equal(criSignalName(Signal.SIGRTMINPLUS2), '36');
    assert.equal(criSignalName(Signal.SIGRTMAXMINUS1), '63');
    assert.equal(criSignalName(Signal.SIGRTMAX), '64');
    assert.equal(criSignalName(Signal.UNRECOGNIZED), '');
  });

  test('image StopSignal strings become CRI Signal values', () => {
    assert.equal(criSignalOf(''), Signal.RUNTIME_DEFAULT);
    assert.equal(criSignalOf('SIGQUIT'), Signal.SIGQUIT);
    assert.equal(criSignalOf('quit'), Signal.SIGQUIT);
    assert.equal(criSignalOf('15'), Signal.SIGTERM);
    assert.equal(criSignalOf('9'), Signal.SIGKILL);
    assert.equal(criSignalOf('36'), Signal.SIGRTMINPLUS2);
    assert.equal(criSignalOf('SIGBOGUS'), Signal.RUNTIME_DEFAULT);
    assert.equal(criSignalOf('99'), Signal.RUNTIME_DEFAULT);
  });
});

describe('termination messages', () => {
  let dir: string;
  let rootfs: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-termination-'));
    rootfs = join(dir, 'rootfs');
    await mkdir(join(rootfs, 'tmp'), { recursive: true });
    await mkdir(join(rootfs, 'etc'), { recursive: true });
    await writeFile(join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const mount = (containerPath: string, hostPath: string) => Mount.fromPartial({ containerPath, hostPath });

  test('the host file mounted at the default path is read', async () => {
    const host = join(dir, 'term-default');
    await writeFile(host, 'bye');
    assert.equal(await readTerminationMessage({ annotations: {}, mounts: [mount('/dev/termination-log', host)], rootfs }), 'bye');
  });

  test('the annotation names the path; a path in the rootfs is read there, symlinks resolved inside it', async () => {
    await writeFile(join(rootfs, 'tmp', 'msg'), 'from rootfs');
    const annotations = { [TERMINATION_MESSAGE_PATH_ANNOTATION]: '/tmp/msg' };
    assert.equal(await readTerminationMessage({ annotations, mounts: [], rootfs }), 'from rootfs');
    // An absolute symlink points into the rootfs, never at the host's file.
    await symlink('/etc/passwd', join(rootfs, 'tmp', 'escape'));
    const escaped = await readTerminationMessage({ annotations: { [TERMINATION_MESSAGE_PATH_ANNOTATION]: '/tmp/escape' }, mounts: [], rootfs });
    assert.equal(escaped, 'root:x:0:0:root:/root:/bin/sh\n');
  });

  test('nothing to read gives an empty message', async () => {
    assert.equal(await readTerminationMessage({ annotations: {}, mounts: [], rootfs }), '', 'the default /dev path without a mount');
    const missing = { [TERMINATION_MESSAGE_PATH_ANNOTATION]: '/tmp/absent' };
    assert.equal(await readTerminationMessage({ annotations: missing, mounts: [], rootfs }), '');
    execFileSync('mkfifo', [join(rootfs, 'tmp', 'fifo')]);
    const fifo = { [TERMINATION_MESSAGE_PATH_ANNOTATION]: '/tmp/fifo' };
    assert.equal(await readTerminationMessage({ annotations: fifo, mounts: [], rootfs }), '', 'a FIFO is not read (and does not block)');
  });

  test('a long message is cut to what kubelet keeps', async () => {
    const host = join(dir, 'term-long');
    await writeFile(host, 'x'.repeat(MAX_TERMINATION_MESSAGE_BYTES * 3));
    const message = await readTerminationMessage({ annotations: {}, mounts: [mount('/dev/termination-log', host)], rootfs });
    assert.equal(message.length, MAX_TERMINATION_MESSAGE_BYTES);
  });
});

describe('KeyedLock', () => {
  test('runs work for one key in order and different keys at once, and goes on after a failure', async () => {
    const lock = new KeyedLock();
    const order: string[] = [];
    const gate = Promise.withResolvers<void>();
    const a1 = lock.run('a', async () => {
      order.push('a1 start');
      await gate.promise;
      order.push('a1 end');
      throw new Error('a1 failed');
    });
    const a2 = lock.run('a', async () => {
      order.push('a2');
      return 2;
    });
    const b = lock.run('b', async () => {
      order.push('b');
      return 'b';
    });
    assert.equal(await b, 'b');
    gate.resolve();
    await assert.rejects(a1, /a1 failed/);
    assert.equal(await a2, 2);
    assert.deepEqual(order, ['a1 start', 'b', 'a1 end', 'a2']);
  });
});
