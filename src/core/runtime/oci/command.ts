import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';

/** How one run of a helper binary (runc, conmon) went. */
export interface CommandResult {
  /** Exit code, or undefined when the process died of a signal. */
  code: number | undefined;
  signal: NodeJS.Signals | undefined;
  stdout: Buffer;
  stderr: Buffer;
  /** True when stdout/stderr went past `maxOutputBytes` and the rest was dropped. */
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  /** True when the timeout fired and the process group was SIGKILLed. */
  timedOut: boolean;
}

export interface CommandOptions {
  /** Written to the child's stdin, which is then closed. Without it stdin is /dev/null. */
  stdin?: string | Uint8Array;
  /** SIGKILL the child's whole process group after this long (0 or unset: no limit). */
  timeoutMs?: number;
  /** Cap on each of stdout and stderr; bytes past it are read and dropped. */
  maxOutputBytes?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /**
   * How long to wait, once the child has exited, for stdout/stderr to reach EOF
   * (a background process it left may hold them open). Default 200 ms.
   */
  drainMs?: number;
}

const DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024;

/**
 * Variables that would make runc or conmon hand berthd's systemd sockets or
 * notify socket to a container (runc passes NOTIFY_SOCKET through; conmon
 * rewrites LISTEN_PID for its child): never passed on.
 */
const PRIVATE_ENV = ['NOTIFY_SOCKET', 'LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES'];

/** berthd's environment without the variables above, plus `extra`. */
export function helperEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of PRIVATE_ENV) delete env[name];
  return { ...env, ...extra };
}

/** Collects a stream up to `cap` bytes, reading and dropping the rest so the writer never blocks. */
function collect(stream: Readable, cap: number): { chunks: Buffer[]; size: () => number; truncated: () => boolean } {
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  stream.on('data', (chunk: Buffer) => {
    if (size >= cap) {
      truncated = true;
      return;
    }
    const room = cap - size;
    if (chunk.length > room) {
      chunks.push(chunk.subarray(0, room));
      size = cap;
      truncated = true;
    } else {
      chunks.push(chunk);
      size += chunk.length;
    }
  });
  return { chunks, size: () => size, truncated: () => truncated };
}

/**
 * Runs `argv` in its own process group (so a timeout can kill it and whatever
 * it started in the same group), capturing stdout and stderr. Rejects only when
 * the binary cannot be started; exit codes are the caller's to judge.
 */
export function runCommand(argv: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error('empty command line'));
  const cap = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
  return new Promise<CommandResult>((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: [options.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      detached: true,
      env: options.env ?? helperEnv(),
      cwd: options.cwd,
    });
    const out = collect(child.stdout!, cap);
    const err = collect(child.stderr!, cap);
    let timedOut = false;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let drainTimer: NodeJS.Timeout | undefined;
    let settled = false;

    const killGroup = (): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // The group is already gone.
      }
    };
    const timer =
      options.timeoutMs === undefined || options.timeoutMs <= 0
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            killGroup();
          }, options.timeoutMs);

    const finish = (): void => {
      if (settled || exit === undefined) return;
      settled = true;
      if (timer !== undefined) clearTimeout(timer);
      if (drainTimer !== undefined) clearTimeout(drainTimer);
      child.stdout!.destroy();
      child.stderr!.destroy();
      resolve({
        code: exit.code ?? undefined,
        signal: exit.signal ?? undefined,
        stdout: Buffer.concat(out.chunks, out.size()),
        stderr: Buffer.concat(err.chunks, err.size()),
        stdoutTruncated: out.truncated(),
        stderrTruncated: err.truncated(),
        timedOut,
      });
    };

    child.once('error', (e) => {
      if (settled) return;
      settled = true;
      if (timer !== undefined) clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      drainTimer = setTimeout(finish, options.drainMs ?? 200);
    });
    child.once('close', () => finish());

    if (options.stdin !== undefined && child.stdin) {
      child.stdin.on('error', () => {
        // The child may exit without reading its stdin (EPIPE): its exit status tells.
      });
      child.stdin.end(options.stdin);
    }
  });
}
