import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, errorMessage } from '../../errors.js';
import { Runc, runcErrorKind, type RuntimeHandler } from './runc.js';
import { ShellSpawner } from './spawner.js';

export interface ExecOptions {
  /** Kill the exec'd process (its whole process group) after this long. 0 or unset: no limit. */
  timeoutMs?: number;
  /** Cap on each of stdout and stderr (default 16 MiB); the rest is dropped. */
  maxOutputBytes?: number;
  /** Aborting SIGKILLs the exec'd process group and rejects with ERR_RUNC_EXEC_CANCELLED (a cancelled ExecSync call). */
  signal?: AbortSignal;
}

export interface ExecResult {
  /** The process's exit code (128+signal when it died of a signal); -1 when it timed out. */
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
  timedOut: boolean;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

export interface ExecRequest {
  conmonPath: string;
  runtime: RuntimeHandler;
  id: string;
  /** The OCI `process` object to run. */
  process: object;
  /** A directory for the process spec, pid file and output log of this one exec (removed afterwards). */
  scratchDir: string;
}

const EXEC_MAX_OUTPUT = 16 * 1024 * 1024;
/** conmon's message when `-T` fired (it then reports -1). */
const TIMED_OUT = 'command timed out';

/**
 * Splits conmon's CRI-format output log back into the two streams, byte for
 * byte: a `P` record is a piece without its newline (conmon adds one to end
 * the record), an `F` record a whole line whose newline is kept.
 */
export function splitCriLog(log: Buffer, cap: number): Pick<ExecResult, 'stdout' | 'stderr' | 'stdoutTruncated' | 'stderrTruncated'> {
  const parts = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  const size = { stdout: 0, stderr: 0 };
  const truncated = { stdout: false, stderr: false };
  let pos = 0;
  while (pos < log.length) {
    let end = log.indexOf(0x0a, pos);
    if (end < 0) end = log.length;
    const rec = log.subarray(pos, end);
    pos = end + 1;
    // <timestamp> <stream> <tag> <content>
    const s1 = rec.indexOf(0x20);
    const s2 = s1 < 0 ? -1 : rec.indexOf(0x20, s1 + 1);
    const s3 = s2 < 0 ? -1 : rec.indexOf(0x20, s2 + 1);
    if (s3 < 0) continue;
    const stream = rec.subarray(s1 + 1, s2).toString();
    if (stream !== 'stdout' && stream !== 'stderr') continue;
    const full = rec.subarray(s2 + 1, s3).toString() === 'F';
    const content = rec.subarray(s3 + 1);
    const piece = full ? Buffer.concat([content, Buffer.from('\n')]) : content;
    const room = cap - size[stream];
    if (piece.length > room) {
      truncated[stream] = true;
      if (room > 0) parts[stream].push(piece.subarray(0, room));
      size[stream] = cap;
    } else {
      parts[stream].push(piece);
      size[stream] += piece.length;
    }
  }
  return {
    stdout: Buffer.concat(parts.stdout),
    stderr: Buffer.concat(parts.stderr),
    stdoutTruncated: truncated.stdout,
    stderrTruncated: truncated.stderr,
  };
}

/**
 * ExecSync through conmon's exec mode (`conmon -e --sync`, as CRI-O does):
 * conmon runs `runc exec --detach`, becomes the process's subreaper, reports
 * its exit code on the sync pipe as soon as it exits (a background child that
 * keeps stdout open does not hold the call, which plain `runc exec` does), and
 * on `-T` kills its process group and reports "command timed out". Output is
 * collected from the CRI log conmon writes. conmon is started by the
 * long-lived ShellSpawner, not forked from berthd (which costs 5-20 ms a call
 * at berthd's size), its sync pipe and stderr on files in the exec's dir.
 */
export async function conmonExec(req: ExecRequest, options: ExecOptions = {}): Promise<ExecResult> {
  const { id } = req;
  const cap = options.maxOutputBytes ?? EXEC_MAX_OUTPUT;
  await mkdir(req.scratchDir, { recursive: true });
  const dir = await mkdtemp(join(req.scratchDir, 'exec-'));
  try {
    // The limit is on conmon's log, where each line carries ~45 bytes of
    // timestamp and tags: output in very short lines keeps less than `cap`.
    const logMax = 4 * cap;
    const specPath = join(dir, 'process.json');
    const logPath = join(dir, 'output.log');
    await writeFile(specPath, JSON.stringify(req.process));
    const args = [
      '--api-version', '1',
      '--sync',
      '-e',
      '--exec-process-spec', specPath,
      '-c', id,
      '-u', id,
      '-n', id,
      '-r', req.runtime.binary,
      '-p', join(dir, 'pid'),
      '-l', `k8s-file:${logPath}`,
      '--log-global-size-max', String(logMax),
      '--log-level', 'info',
    ];
    for (const a of new Runc(req.runtime).globalArgs()) args.push('--runtime-arg', a);
    const timeoutMs = options.timeoutMs !== undefined && options.timeoutMs > 0 ? options.timeoutMs : 0;
    if (timeoutMs > 0) {
      // conmon's own -T (glib whole seconds, which may fire up to a second early) is only a
      // backstop for when berthd is gone; the timer below keeps the limit to the millisecond.
      args.push('-T', String(Math.ceil(timeoutMs / 1000) + 1));
    }
    const cancelled = (): BerthError =>
      new BerthError('cancelled', 'ERR_RUNC_EXEC_CANCELLED', `exec in ${id} cancelled`, { context: { container: id }, cause: options.signal?.reason });
    if (options.signal?.aborted) throw cancelled();
    // conmon ends once the exec'd process does: killing its group is how an exec is cut short
    // (on abort and on timeout).
    let settled = false;
    const cutShort = async (): Promise<void> => {
      // The pid file may not be written yet when the abort comes.
      for (let i = 0; i < 200 && !settled; i++) {
        if (await killExecGroup(join(dir, 'pid'))) return;
        await sleep(10);
      }
    };
    const abortListener = (): void => void cutShort();
    options.signal?.addEventListener('abort', abortListener, { once: true });
    let timerFired = false;
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            timerFired = true;
            void cutShort();
          }, timeoutMs)
        : undefined;
    let messages: SyncMessage[];
    try {
      messages = await runConmonSync(req.conmonPath, args, dir, id);
    } finally {
      settled = true;
      if (timer !== undefined) clearTimeout(timer);
      options.signal?.removeEventListener('abort', abortListener);
    }
    if (options.signal?.aborted) throw cancelled();
    // First message: the exec'd pid (or <= 0 with runc's error); second: its exit code.
    const first = messages[0];
    if (first === undefined || first.data <= 0) {
      throw execError(id, first?.message?.trim() || 'conmon reported no process');
    }
    const last = messages[1];
    if (last === undefined) throw execError(id, 'conmon exited without reporting an exit code');
    const timedOut = timerFired || (last.data === -1 && last.message === TIMED_OUT);
    if (last.data < 0 && !timedOut) throw execError(id, last.message?.trim() || `exit ${last.data}`);
    let log: Buffer;
    const fh = await open(logPath, 'r').catch(() => undefined);
    if (fh) {
      try {
        log = await fh.readFile();
      } finally {
        await fh.close();
      }
    } else {
      log = Buffer.alloc(0);
    }
    const out = splitCriLog(log, cap);
    if (log.length >= logMax) {
      // conmon stopped writing at its limit: whatever stream was still going lost its tail.
      out.stdoutTruncated = true;
      out.stderrTruncated = true;
    }
    return { exitCode: timedOut ? -1 : last.data, timedOut, ...out };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** SIGKILLs the exec'd process's group (runc makes it a session leader); false while conmon has not written its pid file. */
async function killExecGroup(pidFile: string): Promise<boolean> {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!(pid > 1)) return false;
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
  return true;
}

function execError(id: string, why: string): BerthError {
  const { kind, code } = runcErrorKind(why);
  return new BerthError(kind, code === 'ERR_RUNC_FAILED' ? 'ERR_RUNC_EXEC' : code, `exec in ${id}: ${why}`, {
    context: { container: id, op: 'exec', runcMessage: why },
  });
}

interface SyncMessage {
  data: number;
  message?: string;
}

/** Starts every exec's conmon (see ShellSpawner: forking berthd per exec is what costs). */
const spawner = new ShellSpawner();

/**
 * Runs conmon in --sync mode through the spawner, its sync pipe (fd 3) and
 * stderr on files in `cwd`, and parses the JSON lines it wrote there.
 */
async function runConmonSync(conmonPath: string, args: string[], cwd: string, id: string): Promise<SyncMessage[]> {
  const syncPath = join(cwd, 'sync');
  const stderrPath = join(cwd, 'conmon.err');
  let status: number;
  try {
    status = await spawner.run({ argv: [conmonPath, ...args], cwd, env: { _OCI_SYNCPIPE: '3' }, fd3: syncPath, stderr: stderrPath });
  } catch (err) {
    throw new BerthError('unavailable', 'ERR_MONITOR_SPAWN', `cannot run ${conmonPath}: ${errorMessage(err)}`, { context: { container: id }, cause: err });
  }
  const [text, stderr] = await Promise.all([readFile(syncPath, 'utf8').catch(() => ''), readFile(stderrPath, 'utf8').catch(() => '')]);
  const messages: SyncMessage[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const m = JSON.parse(line) as { data?: number; message?: string };
      if (typeof m.data === 'number') messages.push({ data: m.data, message: m.message });
    } catch {
      // Not a sync message.
    }
  }
  if (messages.length === 0 && (status === 126 || status === 127)) {
    // The shell could not run conmon (missing, not executable).
    throw new BerthError('unavailable', 'ERR_MONITOR_SPAWN', `cannot run ${conmonPath}: ${stderr.trim() || `exit ${status}`}`, { context: { container: id } });
  }
  if (messages.length === 0 && stderr.trim() !== '') messages.push({ data: -1, message: stderr.trim().slice(-64 * 1024) });
  return messages;
}
