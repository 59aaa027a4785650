/**
 * OCI runtime layer: a runc command-line wrapper (one per runtime handler) and
 * a conmon-based per-container monitor that owns the container's stdio, writes
 * its CRI log and exit status, and outlives berthd.
 */
export { Runc, checkContainerId, runcMessage, runcErrorKind } from './runc.js';
export type { RuntimeHandler, RuncState } from './runc.js';
export { conmonExec, splitCriLog } from './exec-sync.js';
export type { ExecOptions, ExecResult, ExecRequest } from './exec-sync.js';
export { ConmonMonitor } from './monitor.js';
export type { MonitorOptions, CreateContainerRequest, CreatedContainer, MonitorRecord, ExitStatus } from './monitor.js';
export { processMemory } from './proc.js';
