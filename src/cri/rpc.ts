import type { sendUnaryData, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { BerthError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { grpcCodeOf, toServiceError } from './grpc-status.js';

/** A gRPC service definition as ts-proto emits it: method name → path and codecs. */
export type ServiceDefinition = Record<string, MethodDefinition>;

export interface MethodDefinition {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  /** A method (not a property) so that ts-proto's typed serializers fit. */
  responseSerialize(value: unknown): Buffer;
}

export type UnaryImpl<Req, Res> = (request: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res> | Res;

/** The RPC's short name, e.g. `/runtime.v1.RuntimeService/Version` → `Version`. */
export function rpcName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/**
 * Wraps an async implementation as a grpc-js unary handler: one log line per
 * call with the rpc name and duration, errors mapped to status codes, and no
 * throw ever escapes into grpc-js.
 */
export function unary<Req, Res>(log: Logger, rpc: string, impl: UnaryImpl<Req, Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    const started = performance.now();
    let settled: Promise<Res>;
    try {
      settled = Promise.resolve(impl(call.request, call));
    } catch (err) {
      settled = Promise.reject(err);
    }
    settled.then(
      (response) => {
        log.debug({ rpc, ms: round(performance.now() - started) }, 'rpc ok');
        callback(null, response);
      },
      (err: unknown) => {
        const code = grpcCodeOf(err);
        const level = code === GrpcStatus.INTERNAL ? 'error' : 'info';
        log[level]({ rpc, ms: round(performance.now() - started), err, code: GrpcStatus[code] }, 'rpc failed');
        callback(toServiceError(err), null);
      },
    );
  };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/**
 * A full implementation of a service: every method of the definition gets the
 * given implementation, or an UNIMPLEMENTED answer naming the RPC.
 */
export function implementService(
  definition: ServiceDefinition,
  implemented: Record<string, (call: never, callback: never) => void>,
): UntypedServiceImplementation {
  const service: UntypedServiceImplementation = {};
  for (const [method, spec] of Object.entries(definition)) {
    const given = implemented[method];
    if (given !== undefined) {
      service[method] = given as UntypedServiceImplementation[string];
      continue;
    }
    const rpc = rpcName(spec.path);
    const details = `${rpc} is not implemented by berth yet`;
    service[method] = spec.responseStream
      ? (call: { emit(event: 'error', err: object): void }) => call.emit('error', { code: GrpcStatus.UNIMPLEMENTED, details })
      : (_call: unknown, callback: sendUnaryData<unknown>) => callback({ code: GrpcStatus.UNIMPLEMENTED, details }, null);
  }
  for (const method of Object.keys(implemented)) {
    if (!(method in definition)) throw new Error(`implementService: ${method} is not a method of this service`);
  }
  return service;
}

/**
 * Runs `work` with an AbortSignal that fires when the client cancels or the
 * call's deadline passes, so long work (a pull) stops with the RPC.
 */
export async function withCallSignal<T>(
  call: { on(event: 'cancelled', fn: () => void): unknown; getDeadline(): Date | number },
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  call.on('cancelled', () => controller.abort(new BerthError('cancelled', 'ERR_RPC_CANCELLED', 'the client cancelled the call')));
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  const timer = Number.isFinite(at)
    ? setTimeout(
        () => controller.abort(new BerthError('deadline-exceeded', 'ERR_RPC_DEADLINE', 'the call passed its deadline')),
        Math.max(0, at - Date.now()),
      )
    : undefined;
  try {
    return await work(controller.signal);
  } finally {
    clearTimeout(timer);
  }
}
