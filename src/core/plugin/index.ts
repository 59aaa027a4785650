export * from './types.js';
export { PluginErrorCode, PluginSkipError, skipPlugin } from './errors.js';
export { orderRegistrations, type GraphNode } from './graph.js';
export { PluginRegistry, DEFAULT_CLOSE_TIMEOUT_MS, type PluginRegistryOptions } from './registry.js';
export { describeConfig, describeSchema, type ConfigDescription, type ConfigField } from './describe.js';
