/**
 * Entry of an apply worker thread (see worker-applier.ts): runs applyLayer on
 * the layer bytes the daemon's thread passes through a shared ring, one apply
 * at a time, so decompression, the diff ID hash, tar parsing and the file
 * writes leave the daemon's event loop free for downloads and RPCs.
 */
import { parentPort } from 'node:worker_threads';
import { pino } from 'pino';
import { BerthError, errorMessage, isBerthError } from '../errors.js';
import { applyLayer } from './apply.js';
import type { FromWorker, SerializedError, ToWorker } from './worker-protocol.js';
import { SLOT_BYTES } from './worker-protocol.js';

const port = parentPort;
if (port === null) throw new Error('apply-worker.js must run in a worker thread');
const post = (m: FromWorker): void => port.postMessage(m);

// Every line goes to the daemon's logger, which filters by its level.
const log = pino({ level: 'trace', base: undefined, timestamp: false }, { write: (line: string) => post({ type: 'log', line }) });

function serialize(err: unknown): SerializedError {
  if (isBerthError(err)) return { kind: err.kind, code: err.code, message: err.message, context: err.context };
  return { kind: 'internal', code: 'ERR_DIFF_APPLY', message: `applying layer: ${errorMessage(err)}`, context: {} };
}

/** The current apply's source: chunks as views of ring slots, handed back when the next is asked for. */
class RingSource implements AsyncIterable<Uint8Array> {
  private readonly queue: { slot: number; length: number }[] = [];
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private held: number | undefined;

  constructor(private readonly ring: SharedArrayBuffer) {}

  push(slot: number, length: number): void {
    this.queue.push({ slot, length });
    this.notify();
  }

  end(): void {
    this.ended = true;
    this.notify();
  }

  fail(err: Error): void {
    this.failure ??= err;
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Gives the slot read last back to the daemon. */
  release(): void {
    if (this.held !== undefined) post({ type: 'free', slot: this.held });
    this.held = undefined;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (;;) {
      this.release();
      while (this.queue.length === 0 && !this.ended && this.failure === undefined) {
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
      if (this.failure !== undefined) throw this.failure;
      const next = this.queue.shift();
      if (next === undefined) return;
      this.held = next.slot;
      yield new Uint8Array(this.ring, next.slot * SLOT_BYTES, next.length);
    }
  }
}

let current: { source: RingSource; abort: AbortController } | undefined;

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'start': {
      const source = new RingSource(m.ring);
      const abort = new AbortController();
      current = { source, abort };
      applyLayer(m.mounts, source, { mediaType: m.mediaType, expectedDiffId: m.expectedDiffId, signal: abort.signal }, log).then(
        (result) => {
          source.release();
          current = undefined;
          post({ type: 'done', result });
        },
        (err: unknown) => {
          source.release();
          current = undefined;
          post({ type: 'error', error: serialize(err) });
        },
      );
      break;
    }
    case 'chunk':
      current?.source.push(m.slot, m.length);
      break;
    case 'end':
      current?.source.end();
      break;
    case 'fail':
      current?.source.fail(new BerthError(m.error.kind, m.error.code, m.error.message, { context: m.error.context }));
      break;
    case 'abort':
      if (current !== undefined) {
        current.abort.abort(new BerthError('cancelled', 'ERR_DIFF_CANCELLED', 'layer apply was cancelled'));
        current.source.fail(new Error('aborted'));
      }
      break;
  }
});
