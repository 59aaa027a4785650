import type { Registration } from '../core/plugin/index.js';
import { cniNetworkRegistration } from '../cni/index.js';
import { criGrpcRegistration } from '../cri/grpc-plugin.js';
import { criServiceRegistration } from '../cri/plugin.js';

/** Every plugin compiled into berthd. The registry orders them by their dependencies. */
export function builtinRegistrations(effectiveConfig: unknown): Registration[] {
  return [cniNetworkRegistration, criServiceRegistration(effectiveConfig), criGrpcRegistration] as Registration[];
}
