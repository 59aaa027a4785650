import type { ErrorContext, ErrorKind } from '../errors.js';
import type { Mount } from '../snapshotter/index.js';
import type { ApplyResult } from './types.js';

/**
 * Messages between the daemon's thread and an apply worker (apply-worker.ts).
 * Layer bytes go through a SharedArrayBuffer of `SLOTS` slots of
 * `SLOT_BYTES` each: the daemon copies a chunk into a free slot and posts its
 * number; the worker posts the slot back once the applier is done with it.
 */
export const SLOTS = 8;
export const SLOT_BYTES = 256 << 10;

export type ToWorker =
  | { type: 'start'; ring: SharedArrayBuffer; mounts: Mount[]; mediaType: string; expectedDiffId: string | undefined }
  | { type: 'chunk'; slot: number; length: number }
  | { type: 'end' }
  /** The daemon's source failed: the apply stops with an error of this code. */
  | { type: 'fail'; error: SerializedError }
  /** The caller's signal fired. */
  | { type: 'abort' };

export type FromWorker =
  | { type: 'free'; slot: number }
  | { type: 'done'; result: ApplyResult }
  | { type: 'error'; error: SerializedError }
  /** One pino line of the worker's logger, to be logged by the daemon's. */
  | { type: 'log'; line: string };

export interface SerializedError {
  kind: ErrorKind;
  code: string;
  message: string;
  context: ErrorContext;
}
