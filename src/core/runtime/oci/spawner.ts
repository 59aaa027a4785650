import { spawn, type ChildProcess } from 'node:child_process';
import { helperEnv } from './command.js';

/** Where a command run by the spawner reads and writes: file paths (or /dev/null). */
export interface SpawnerRun {
  argv: readonly string[];
  cwd: string;
  /** Exported to the command on top of the spawner's environment (berthd's, see helperEnv). */
  env?: Record<string, string>;
  stdout?: string;
  stderr?: string;
  /** A file the command gets as fd 3 (opened for writing, truncated). */
  fd3?: string;
}

/** Quotes one word for the shell: single quotes, each `'` as `'\''`. */
export function shellQuote(word: string): string {
  if (word.includes('\0') || word.includes('\n')) throw new Error(`cannot pass ${JSON.stringify(word)} through the spawner`);
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The shell line that runs one command in the background and reports `d <token> <status>` when it ends. */
export function spawnerLine(token: number, run: SpawnerRun): string {
  if (run.argv.length === 0) throw new Error('empty command line');
  const exports = Object.entries(run.env ?? {}).map(([name, value]) => {
    if (!ENV_NAME.test(name)) throw new Error(`bad environment variable name ${JSON.stringify(name)}`);
    return `export ${name}=${shellQuote(value)} && `;
  });
  const redirects = [
    `<${shellQuote('/dev/null')}`,
    `>${shellQuote(run.stdout ?? '/dev/null')}`,
    `2>${shellQuote(run.stderr ?? '/dev/null')}`,
    ...(run.fd3 === undefined ? [] : [`3>${shellQuote(run.fd3)}`]),
  ];
  const command = `cd ${shellQuote(run.cwd)} && ${exports.join('')}exec ${run.argv.map(shellQuote).join(' ')} ${redirects.join(' ')}`;
  // `jobs` makes the shell reap the jobs that have ended since the last line (it has no SIGCHLD handler).
  return `jobs >/dev/null; ( ( ${command} ); echo "d ${token} $?" ) &\n`;
}

/**
 * A long-lived /bin/sh that starts helper commands (conmon) for berthd.
 *
 * Forking berthd itself costs in proportion to its memory (page tables copied,
 * then copy-on-write faults in berthd): from an ~100 MiB Node process a spawn
 * takes 5-20 ms, from a shell well under one. Each command runs in a background
 * subshell with its stdio on files, and the shell prints its exit status
 * (128+n for signal n, 126/127 when it could not be run) as one line.
 *
 * The shell is started on first use and again after it died; it exits at EOF
 * on its stdin, that is when berthd does (commands still running go on).
 */
export class ShellSpawner {
  private child: ChildProcess | undefined;
  private readonly pending = new Map<number, { shell: ChildProcess; resolve: (status: number) => void; reject: (err: Error) => void }>();
  private seq = 0;
  private stderrTail = '';

  constructor(private readonly shell = '/bin/sh') {}

  /** Runs `run.argv` and resolves with its exit status; rejects when the shell cannot be started or dies first. */
  run(run: SpawnerRun): Promise<number> {
    const token = ++this.seq;
    const line = spawnerLine(token, run);
    return new Promise<number>((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = this.ensure();
      } catch (err) {
        reject(err as Error);
        return;
      }
      this.pending.set(token, { shell: child, resolve, reject });
      this.hold();
      child.stdin!.write(line);
    });
  }

  /** Ends the shell (commands it started go on). */
  close(): void {
    this.child?.stdin?.end();
    this.child = undefined;
  }

  private ensure(): ChildProcess {
    if (this.child !== undefined) return this.child;
    const child = spawn(this.shell, [], { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: helperEnv() });
    this.child = child;
    this.stderrTail = '';
    let buf = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (text: string) => {
      buf += text;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const m = /^d (\d+) (\d+)$/.exec(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (!m) continue;
        const waiter = this.pending.get(Number(m[1]));
        if (waiter === undefined) continue;
        this.pending.delete(Number(m[1]));
        waiter.resolve(Number(m[2]));
      }
      this.hold();
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => {
      this.stderrTail = (this.stderrTail + text).slice(-4096);
    });
    child.stdin!.on('error', () => {
      // The shell is gone: its exit rejects what is pending.
    });
    let why = 'exited';
    // New commands go to a new shell at once; those this one started still report on its
    // stdout (they hold it open), so what is pending is only given up when that closes.
    const retire = (): void => {
      if (this.child === child) this.child = undefined;
    };
    const gone = (): void => {
      retire();
      const err = new Error(`${this.shell} (command spawner) ${why}${this.stderrTail.trim() === '' ? '' : `: ${this.stderrTail.trim()}`}`);
      for (const [token, waiter] of this.pending) {
        if (waiter.shell !== child) continue;
        this.pending.delete(token);
        waiter.reject(err);
      }
    };
    child.once('error', (err) => {
      why = `failed: ${err.message}`;
      gone();
    });
    child.once('exit', (code, signal) => {
      why = `exited (${code ?? signal})`;
      retire();
    });
    child.once('close', gone);
    return child;
  }

  /** Keeps the event loop alive only while commands are pending, so an idle spawner never holds a process open. */
  private hold(): void {
    const child = this.child;
    if (child === undefined) return;
    const streams = [child.stdin, child.stdout, child.stderr] as unknown as ({ ref?: () => void; unref?: () => void } | null)[];
    if (this.pending.size > 0) {
      child.ref();
      for (const s of streams) s?.ref?.();
    } else {
      child.unref();
      for (const s of streams) s?.unref?.();
    }
  }
}
