import { BerthError } from '../errors.js';

/** Stable codes of the errors the plugin registry throws. */
export const PluginErrorCode = {
  /** Two registrations share `<type>.<id>`. */
  Duplicate: 'ERR_PLUGIN_DUPLICATE',
  /** A registration requires a type no (other) registration provides. */
  Unsatisfied: 'ERR_PLUGIN_UNSATISFIED',
  /** Registrations require each other in a loop. */
  Cycle: 'ERR_PLUGIN_CYCLE',
  /** A key in `required` names no registration. */
  Unknown: 'ERR_PLUGIN_UNKNOWN',
  /** A plugin in `required` did not come up. */
  Required: 'ERR_PLUGIN_REQUIRED',
  /** A lookup found no ok plugin. */
  NotFound: 'ERR_PLUGIN_NOT_FOUND',
  /** `get(type)` found several ok plugins of the type. */
  Ambiguous: 'ERR_PLUGIN_AMBIGUOUS',
  /** A plugin looked up a type it does not declare in `requires`. */
  Undeclared: 'ERR_PLUGIN_UNDECLARED',
  /** A plugin's close() outlasted the registry's close timeout. */
  CloseTimeout: 'ERR_PLUGIN_CLOSE_TIMEOUT',
  /** A config schema has fields without a default. */
  ConfigSchema: 'ERR_PLUGIN_CONFIG_SCHEMA',
  /** `init()` called twice, or after `close()`. */
  RegistryState: 'ERR_PLUGIN_REGISTRY_STATE',
  /** Thrown by an init that cannot run here; the plugin is skipped. */
  Skip: 'ERR_PLUGIN_SKIP',
} as const;

/**
 * Thrown from a plugin's init when the plugin does not apply on this host
 * (e.g. overlayfs unsupported): the registry records it as skipped with
 * `reason` instead of failed.
 */
export class PluginSkipError extends BerthError {
  readonly reason: string;

  constructor(reason: string, options: { cause?: unknown } = {}) {
    super('failed-precondition', PluginErrorCode.Skip, reason, options);
    this.reason = reason;
  }
}

/** `skipPlugin('overlayfs is not supported')` inside an init. */
export function skipPlugin(reason: string, options: { cause?: unknown } = {}): never {
  throw new PluginSkipError(reason, options);
}
