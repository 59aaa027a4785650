import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseNetDev, resolvConfOf } from '../../src/cri/sandbox/index.js';
import { UndoStack } from '../../src/cri/sandbox/undo.js';

test('resolv.conf from a DNSConfig: search, one nameserver line each, options; empty config gives nothing', () => {
  assert.equal(
    resolvConfOf({ servers: ['10.0.0.10', 'fd00::a'], searches: ['ns.svc.cluster.local', 'svc.cluster.local'], options: ['ndots:5', 'edns0'] }),
    'search ns.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.10\nnameserver fd00::a\noptions ndots:5 edns0\n',
  );
  assert.equal(resolvConfOf({ servers: [], searches: [], options: [] }), '');
  assert.equal(resolvConfOf(undefined), '');
});

test('/proc/net/dev counters by interface', () => {
  const text = [
    'Inter-|   Receive                                                |  Transmit',
    ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
    '    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0',
    '  eth0: 18446744073709551615      12    3    0    0     0          0         0     1234      10    7    0    0     0       0          0',
    '',
  ].join('\n');
  const all = parseNetDev(text);
  assert.deepEqual([...all.keys()], ['lo', 'eth0']);
  assert.deepEqual(all.get('eth0'), {
    name: 'eth0',
    rxBytes: { value: 18446744073709551615n },
    rxErrors: { value: 3n },
    txBytes: { value: 1234n },
    txErrors: { value: 7n },
  });
});

test('UndoStack undoes newest first, tries every step and reports failing ones', async () => {
  const undo = new UndoStack();
  const done: string[] = [];
  undo.push('one', () => {
    done.push('one');
  });
  undo.push('two', async () => {
    done.push('two');
    throw new Error('two failed');
  });
  undo.push('three', () => {
    done.push('three');
  });
  const errors: string[] = [];
  await undo.unwind((what) => errors.push(what));
  assert.deepEqual(done, ['three', 'two', 'one']);
  assert.deepEqual(errors, ['two']);
  await undo.unwind(() => assert.fail('steps run once'));
});
