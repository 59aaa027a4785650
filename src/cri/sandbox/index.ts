/** Pod sandboxes of the CRI RuntimeService (see service.ts). */
export { SandboxService, type PodContainerOps, type SandboxServiceOptions } from './service.js';
export { processUsageOf, networkUsageOf, parseNetDev } from './stats.js';
export { resolvConfOf, SHM_SIZE_BYTES } from './files.js';
export { toCriSandbox, toCriStatus } from './status.js';
