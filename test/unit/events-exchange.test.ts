import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { EventExchange, eventsExchangeRegistration, Topic, type Envelope } from '../../src/core/events/index.js';
import { PluginRegistry, PluginType } from '../../src/core/plugin/index.js';

function capturingLog(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

describe('events exchange', () => {
  test('delivers synchronously to subscribers whose filter matches, with topic and timestamp', () => {
    const ex = new EventExchange(capturingLog().log);
    const exits: Envelope[] = [];
    const images: string[] = [];
    const all: string[] = [];
    ex.subscribe({ topics: [Topic.TaskExit] }, (e) => exits.push(e));
    ex.subscribe({ topics: ['/images/*'] }, (e) => images.push(e.topic));
    ex.subscribe({}, (e) => all.push(e.topic));
    const before = Date.now();
    ex.publish(Topic.TaskExit, { id: 'a', pid: 1, exitCode: 0, exitedAt: new Date(), oomKilled: false });
    ex.publish(Topic.TaskOom, { id: 'a' });
    ex.publish(Topic.ImageCreate, { name: 'x' });
    ex.publish(Topic.ImageDelete, { name: 'x' });
    ex.publish('/imagesque', {});
    // Synchronous: everything is there as soon as publish returns.
    assert.equal(exits.length, 1);
    assert.equal(exits[0]!.topic, '/tasks/exit');
    assert.equal((exits[0]!.event as { id: string }).id, 'a');
    assert.ok(exits[0]!.timestamp.getTime() >= before && exits[0]!.timestamp.getTime() <= Date.now());
    assert.deepEqual(images, ['/images/create', '/images/delete']);
    assert.deepEqual(all, ['/tasks/exit', '/tasks/oom', '/images/create', '/images/delete', '/imagesque']);
  });

  test('a throwing subscriber is logged and neither the publisher nor later subscribers notice', () => {
    const { log, lines } = capturingLog();
    const ex = new EventExchange(log);
    const got: number[] = [];
    ex.subscribe({ topics: ['/t'] }, () => {
      throw new Error('boom');
    });
    ex.subscribe({ topics: ['/t'] }, (e) => got.push((e.event as { n: number }).n));
    assert.doesNotThrow(() => ex.publish('/t', { n: 1 }));
    ex.publish('/t', { n: 2 });
    assert.deepEqual(got, [1, 2]);
    const errs = lines.filter((l) => l.msg === 'event subscriber threw');
    assert.equal(errs.length, 2);
    assert.equal(errs[0]!.topic, '/t');
    assert.equal(errs[0]!.err, 'boom');
  });

  test('unsubscribe stops delivery, also when done from inside a handler', () => {
    const ex = new EventExchange(capturingLog().log);
    const a: number[] = [];
    const b: number[] = [];
    const offA = ex.subscribe({}, () => {
      a.push(1);
      offB(); // b must not get this event either: it was removed before its turn.
    });
    const offB = ex.subscribe({}, () => b.push(1));
    ex.publish('/x', {});
    assert.deepEqual(a, [1]);
    assert.deepEqual(b, []);
    offA();
    ex.publish('/x', {});
    assert.deepEqual(a, [1]);
    assert.equal(ex.subscriberCount, 0);
    offA(); // idempotent
  });

  test('plugin registration: events.exchange comes up as a required plugin of type events', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'events-plugin-'));
    try {
      const reg = new PluginRegistry({
        registrations: [eventsExchangeRegistration],
        root: join(dir, 'root'),
        state: join(dir, 'state'),
        log: capturingLog().log,
        required: ['events.exchange'],
      });
      await reg.init();
      try {
        const rec = reg.records().find((r) => r.key === 'events.exchange');
        assert.deepEqual(rec?.status, { state: 'ok' });
        assert.equal(rec?.type, PluginType.Events);
      } finally {
        await reg.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
