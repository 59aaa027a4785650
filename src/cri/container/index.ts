/**
 * CRI containers: the ContainerService (create/start/stop/remove, status,
 * list, exec, stats, events) and its grpc-js handlers.
 */
export { ContainerService, EXEC_SYNC_MAX_OUTPUT, START_ERROR_EXIT_CODE, START_ERROR_REASON } from './service.js';
export { containerRpcs, EVENT_STREAM_MAX_BACKLOG } from './rpcs.js';
export type { ContainerRuntime, ContainerServiceDeps } from './deps.js';
export { ContainerEventTopic, CONTAINER_EVENT_TOPICS, publishContainerEvent } from './events.js';
export { toCriContainer, toCriStatus } from './status.js';
