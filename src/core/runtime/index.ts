/**
 * `runtime.oci`: runtime handlers (runc and runc-compatible runtimes, each
 * with its own root and optional base spec) and a conmon monitor per
 * container; publishes task exits on the events exchange. Building blocks:
 * ./oci (runc wrapper, conmon monitor), ./spec (OCI spec generation),
 * ./cgroups (stats).
 */
import type { EventExchange } from '../events/index.js';
import { PluginType, type Registration } from '../plugin/types.js';
import { runtimeConfigSchema, type RuntimeConfig } from './config.js';
import { OciRuntime } from './runtime.js';

export { runtimeConfigSchema, type RuntimeConfig, type RuntimeHandlerConfig } from './config.js';
export { applyBaseSpec, loadBaseSpec } from './base-spec.js';
export type { RuntimeHandlerInfo } from './handlers.js';
export {
  OciRuntime,
  parseSignal,
  UNKNOWN_EXIT_CODE,
  type ContainerState,
  type CreateRequest,
  type EventPublisher,
  type ExecOutcome,
  type ExecRequest,
  type OciRuntimeOptions,
} from './runtime.js';
export type { ExitStatus } from './oci/index.js';

export const runtimeOciRegistration: Registration<RuntimeConfig, OciRuntime> = {
  type: PluginType.Runtime,
  id: 'oci',
  requires: [PluginType.Events],
  config: runtimeConfigSchema,
  async init(ctx) {
    const runtime = await OciRuntime.open({
      config: ctx.config,
      stateDir: ctx.stateDir,
      events: ctx.get<EventExchange>(PluginType.Events),
      log: ctx.log,
    });
    const handlers = runtime.handlers();
    ctx.meta({
      exports: {
        default_runtime: handlers[0]!.name,
        handlers: handlers.map((h) => `${h.name}=${h.binary} (root ${h.root})`).join(', '),
      },
    });
    return runtime;
  },
};
