/**
 * Errors with a stable code and the context they happened in (which pod,
 * container, file, plugin). The `kind` says what went wrong in terms a client
 * can act on; src/cri/grpc-status.ts maps kinds to gRPC status codes, the one
 * place that does.
 */
export type ErrorKind =
  | 'invalid-argument'
  | 'not-found'
  | 'already-exists'
  | 'failed-precondition'
  | 'unimplemented'
  | 'unavailable'
  | 'deadline-exceeded'
  | 'cancelled'
  | 'permission-denied'
  | 'unauthenticated'
  | 'resource-exhausted'
  | 'internal';

export type ErrorContext = Record<string, string | number | boolean | undefined>;

export interface BerthErrorOptions {
  context?: ErrorContext;
  cause?: unknown;
}

export class BerthError extends Error {
  override readonly name = 'BerthError';
  /** Stable, greppable identifier, e.g. `ERR_PLUGIN_CYCLE`. */
  readonly code: string;
  readonly kind: ErrorKind;
  readonly context: ErrorContext;

  constructor(kind: ErrorKind, code: string, message: string, options: BerthErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.code = code;
    this.context = options.context ?? {};
  }
}

export function isBerthError(err: unknown): err is BerthError {
  return err instanceof BerthError;
}

/** The message of any thrown value, for logs and wrapped errors. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Node system errors carry `code` (ENOENT, EEXIST, ...). */
export function isErrnoCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}
