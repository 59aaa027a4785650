// Helper for the kill -9 tests: runs one of the *-crash-child.js scripts next to this file and SIGKILLs it
// part way through its work.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

/**
 * Starts `node <child> ...args` (child: a script in this directory), waits until its stdout contains
 * `ready`, lets it run `ms` more and SIGKILLs it. Fails if the child exits on its own. Returns its stdout.
 */
export async function runAndKill(child: string, args: string[], ready: string, ms: number): Promise<string> {
  const script = join(dirname(fileURLToPath(import.meta.url)), child);
  const proc = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => proc.on('exit', (code, signal) => resolve(signal ?? code)));
  try {
    await new Promise<void>((resolve, reject) => {
      proc.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (stdout.includes(ready)) resolve();
      });
      proc.on('exit', () => reject(new Error(`child exited early: ${stderr}`)));
    });
    await sleep(ms);
  } finally {
    proc.kill('SIGKILL');
  }
  assert.equal(await exited, 'SIGKILL', stderr);
  return stdout;
}
