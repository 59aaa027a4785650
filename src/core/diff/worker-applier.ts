import { Worker } from 'node:worker_threads';
import { BerthError, isBerthError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Mount } from '../snapshotter/index.js';
import type { Applier, ApplyOptions, ApplyResult } from './types.js';
import type { FromWorker, SerializedError, ToWorker } from './worker-protocol.js';
import { SLOT_BYTES, SLOTS } from './worker-protocol.js';

const WORKER_URL = new URL('./apply-worker.js', import.meta.url);

const LEVELS: Record<number, 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};

/** One worker thread and its ring; runs one apply at a time. */
class ApplyWorker {
  readonly worker: Worker;
  readonly ring = new SharedArrayBuffer(SLOTS * SLOT_BYTES);
  private handler: ((m: FromWorker) => void) | undefined;
  private onExit: ((err: Error) => void) | undefined;
  dead = false;

  constructor(log: Logger) {
    this.worker = new Worker(WORKER_URL);
    this.worker.unref();
    this.worker.on('message', (m: FromWorker) => {
      if (m.type === 'log') relayLog(log, m.line);
      else this.handler?.(m);
    });
    const died = (err: Error): void => {
      this.dead = true;
      this.onExit?.(err);
    };
    this.worker.on('error', died);
    this.worker.on('exit', (code) => died(new Error(`apply worker exited with code ${code}`)));
  }

  post(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  /** Runs one apply: feeds `layer` through the ring and settles with the worker's answer. */
  async run(mounts: Mount[], layer: AsyncIterable<Uint8Array>, opts: ApplyOptions): Promise<ApplyResult> {
    const free: number[] = Array.from({ length: SLOTS }, (_, i) => i);
    let slotWaiter: (() => void) | undefined;
    let settle!: { resolve: (r: ApplyResult) => void; reject: (e: unknown) => void };
    const answer = new Promise<ApplyResult>((resolve, reject) => (settle = { resolve, reject }));
    let finished = false;
    let sourceError: unknown;
    const wakeFeeder = (): void => {
      const w = slotWaiter;
      slotWaiter = undefined;
      w?.();
    };
    this.handler = (m) => {
      if (m.type === 'free') {
        free.push(m.slot);
        wakeFeeder();
      } else if (m.type === 'done') {
        finished = true;
        wakeFeeder();
        settle.resolve(m.result);
      } else if (m.type === 'error') {
        finished = true;
        wakeFeeder();
        settle.reject(rebuild(m.error, sourceError));
      }
    };
    this.onExit = (err) => {
      finished = true;
      wakeFeeder();
      settle.reject(new BerthError('internal', 'ERR_DIFF_WORKER', `layer apply worker failed: ${err.message}`, { cause: err }));
    };
    const signal = opts.signal;
    const onAbort = (): void => this.post({ type: 'abort' });
    signal?.addEventListener('abort', onAbort, { once: true });
    this.worker.ref();
    try {
      this.post({ type: 'start', ring: this.ring, mounts, mediaType: opts.mediaType, expectedDiffId: opts.expectedDiffId });
      if (signal?.aborted === true) onAbort();
      const feeding = (async () => {
        try {
          for await (const chunk of layer) {
            for (let off = 0; off < chunk.byteLength; ) {
              while (free.length === 0 && !finished) await new Promise<void>((resolve) => (slotWaiter = resolve));
              if (finished) return;
              const slot = free.pop()!;
              const n = Math.min(SLOT_BYTES, chunk.byteLength - off);
              new Uint8Array(this.ring, slot * SLOT_BYTES, n).set(chunk.subarray(off, off + n));
              this.post({ type: 'chunk', slot, length: n });
              off += n;
            }
            if (finished) return;
          }
          if (!finished) this.post({ type: 'end' });
        } catch (err) {
          sourceError = err;
          if (!finished) this.post({ type: 'fail', error: serialize(err) });
        }
      })();
      // The feeder stops once the worker has answered (closing the source), so nothing reads it after this returns.
      const [result] = await Promise.allSettled([answer, feeding]);
      if (result.status === 'rejected') throw result.reason;
      return result.value;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.handler = undefined;
      this.onExit = undefined;
      if (!this.dead) this.worker.unref();
    }
  }
}

function serialize(err: unknown): SerializedError {
  if (isBerthError(err)) return { kind: err.kind, code: err.code, message: err.message, context: err.context };
  return { kind: 'internal', code: 'ERR_DIFF_SOURCE', message: err instanceof Error ? err.message : String(err), context: {} };
}

/** The worker's error as a BerthError; the source's own error object when that is what stopped the apply. */
function rebuild(e: SerializedError, sourceError: unknown): unknown {
  if (sourceError !== undefined && isBerthError(sourceError) && sourceError.code === e.code) return sourceError;
  return new BerthError(e.kind, e.code, e.message, { context: e.context, cause: sourceError });
}

function relayLog(log: Logger, line: string): void {
  try {
    const { level, msg, ...fields } = JSON.parse(line) as { level: number; msg?: string } & Record<string, unknown>;
    log[LEVELS[level] ?? 'info'](fields, msg ?? '');
  } catch {
    log.warn({ line }, 'unreadable log line from an apply worker');
  }
}

/**
 * An Applier that runs each apply in a worker thread (decompression, diff ID
 * hash, tar parsing and writes off the daemon's event loop). Up to `workers`
 * applies run at once; idle workers are kept for the next apply, and a worker
 * that died is replaced.
 */
export class WorkerApplier implements Applier {
  private readonly idle: ApplyWorker[] = [];
  private busy = 0;
  private readonly waiting: (() => void)[] = [];
  private closed = false;

  constructor(
    private readonly workers: number,
    private readonly log: Logger,
  ) {}

  async apply(mounts: Mount[], layer: AsyncIterable<Uint8Array>, opts: ApplyOptions): Promise<ApplyResult> {
    opts.signal?.throwIfAborted();
    const w = await this.acquire();
    try {
      return await w.run(mounts, layer, opts);
    } finally {
      this.release(w);
    }
  }

  private async acquire(): Promise<ApplyWorker> {
    while (this.busy >= this.workers) await new Promise<void>((resolve) => this.waiting.push(resolve));
    if (this.closed) throw new BerthError('unavailable', 'ERR_DIFF_CLOSED', 'the layer applier is closed');
    this.busy++;
    return this.idle.pop() ?? new ApplyWorker(this.log);
  }

  private release(w: ApplyWorker): void {
    this.busy--;
    if (!w.dead && !this.closed) this.idle.push(w);
    else void w.worker.terminate();
    this.waiting.shift()?.();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const resolve of this.waiting.splice(0)) resolve();
    await Promise.all(this.idle.splice(0).map((w) => w.worker.terminate()));
  }
}
