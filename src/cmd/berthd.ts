#!/usr/bin/env node
/**
 * berthd's entry point: makes sure node runs with BERTHD_V8_FLAGS (by
 * replacing this process with node started with them, before anything else
 * is loaded), then runs the command line (cli.ts).
 */
import { accessSync, constants } from 'node:fs';
import { missingV8Flags } from './node-flags.js';

const flags = missingV8Flags(process.execArgv, process.env['NODE_OPTIONS']);
if (flags.length > 0 && process.execve !== undefined && canExec(process.execPath)) {
  process.execve(process.execPath, [process.execPath, ...flags, ...process.execArgv, ...process.argv.slice(1)]);
}
await import('./cli.js');

/** execve failing aborts node, so only try it on a binary that is there to run. */
function canExec(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
