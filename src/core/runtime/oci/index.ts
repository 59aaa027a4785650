/**
 * OCI runtime layer: a runc command-line wrapper (one per runtime handler) and
 * a conmon-based per-container monitor that owns the container's stdio, writes
 * its CRI log and exit status, and outlives berthd.
 */
export { Runc, checkContainerId, runcMessage } from './runc.js';
export type { RuntimeHandler, RuncState, ExecOptions, ExecResult } from './runc.js';
export { ConmonMonitor } from './monitor.js';
export type { MonitorOptions, CreateContainerRequest, CreatedContainer, MonitorRecord, ExitStatus } from './monitor.js';
export { processMemory } from './proc.js';
