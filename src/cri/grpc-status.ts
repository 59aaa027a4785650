import { status as GrpcStatus, Metadata, type ServiceError } from '@grpc/grpc-js';
import { type ErrorKind, isBerthError, errorMessage } from '../core/errors.js';

/** The one place where error kinds become gRPC status codes. */
const CODES: Record<ErrorKind, GrpcStatus> = {
  'invalid-argument': GrpcStatus.INVALID_ARGUMENT,
  'not-found': GrpcStatus.NOT_FOUND,
  'already-exists': GrpcStatus.ALREADY_EXISTS,
  'failed-precondition': GrpcStatus.FAILED_PRECONDITION,
  unimplemented: GrpcStatus.UNIMPLEMENTED,
  unavailable: GrpcStatus.UNAVAILABLE,
  'deadline-exceeded': GrpcStatus.DEADLINE_EXCEEDED,
  cancelled: GrpcStatus.CANCELLED,
  'permission-denied': GrpcStatus.PERMISSION_DENIED,
  unauthenticated: GrpcStatus.UNAUTHENTICATED,
  'resource-exhausted': GrpcStatus.RESOURCE_EXHAUSTED,
  internal: GrpcStatus.INTERNAL,
};

export function grpcCodeOf(err: unknown): GrpcStatus {
  return isBerthError(err) ? CODES[err.kind] : GrpcStatus.INTERNAL;
}

/** A ServiceError for grpc-js callbacks; the stable error code travels in metadata. */
export function toServiceError(err: unknown): Partial<ServiceError> {
  const metadata = new Metadata();
  if (isBerthError(err)) metadata.set('berth-error-code', err.code);
  return { code: grpcCodeOf(err), details: errorMessage(err), metadata };
}
