import { BerthError, errorMessage, type ErrorKind } from '../../errors.js';
import { runCommand, type CommandResult } from './command.js';

/** Where one runtime handler's runc keeps its state, and which binary it is. */
export interface RuntimeHandler {
  /** Path of the runc (or runc-compatible) binary. */
  binary: string;
  /** runc `--root`: the handler's state directory (runc's default is /run/runc). */
  root: string;
  /** runc `--log` file (JSON lines); runc also prints its errors on stderr, which is what errors carry. */
  logPath?: string;
}

/** `runc state` output (OCI runtime state plus runc's fields). */
export interface RuncState {
  ociVersion: string;
  id: string;
  pid: number;
  status: 'creating' | 'created' | 'running' | 'paused' | 'stopped';
  bundle: string;
  rootfs?: string;
  created?: string;
  annotations?: Record<string, string>;
}

/** Default time a plain runc call (state, kill, delete...) may take before it is killed. */
const COMMAND_TIMEOUT_MS = 60_000;
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Throws unless `id` is an id runc and the file system can take as a name. */
export function checkContainerId(id: string): void {
  if (!ID_RE.test(id)) {
    throw new BerthError('invalid-argument', 'ERR_RUNC_BAD_ID', `invalid container id ${JSON.stringify(id)}`, {
      context: { container: id },
    });
  }
}

/** The last non-empty line runc printed on stderr (its error message), without logrus decoration. */
export function runcMessage(stderr: Buffer | string): string {
  const lines = stderr.toString().split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const last = lines.at(-1) ?? '';
  const m = /\bmsg="((?:[^"\\]|\\.)*)"/.exec(last);
  return m ? m[1]!.replace(/\\"/g, '"') : last;
}

/** Maps runc's error message to an error kind and code. */
export function runcErrorKind(message: string): { kind: ErrorKind; code: string } {
  if (/container does not exist|container .* does not exist/.test(message)) {
    return { kind: 'not-found', code: 'ERR_RUNC_NOT_FOUND' };
  }
  if (/container with id exists|already exists/.test(message)) {
    return { kind: 'already-exists', code: 'ERR_RUNC_EXISTS' };
  }
  if (/not running|process already finished|container not running|cannot start .* stopped|is stopped|cannot exec in a stopped/.test(message)) {
    return { kind: 'failed-precondition', code: 'ERR_RUNC_NOT_RUNNING' };
  }
  return { kind: 'internal', code: 'ERR_RUNC_FAILED' };
}

/**
 * The runc command line for one runtime handler. Every call runs the binary
 * with the handler's `--root` (and `--log` in JSON when set); a failing call
 * throws a BerthError carrying runc's own message and the container id.
 */
export class Runc {
  readonly binary: string;
  readonly root: string;
  readonly logPath: string | undefined;
  constructor(handler: RuntimeHandler) {
    this.binary = handler.binary;
    this.root = handler.root;
    this.logPath = handler.logPath;
  }

  /** Global flags, before the subcommand: `--root R [--log F --log-format json]`. */
  globalArgs(): string[] {
    const args = ['--root', this.root];
    if (this.logPath !== undefined) args.push('--log', this.logPath, '--log-format', 'json');
    return args;
  }

  private async run(
    op: string,
    id: string | undefined,
    args: string[],
    options: { stdin?: string; timeoutMs?: number } = {},
  ): Promise<CommandResult> {
    const argv = [this.binary, ...this.globalArgs(), ...args];
    let result: CommandResult;
    try {
      result = await runCommand(argv, { timeoutMs: options.timeoutMs ?? COMMAND_TIMEOUT_MS, stdin: options.stdin });
    } catch (err) {
      throw new BerthError('unavailable', 'ERR_RUNC_SPAWN', `cannot run ${this.binary}: ${errorMessage(err)}`, {
        context: { container: id, op, binary: this.binary },
        cause: err,
      });
    }
    if (result.timedOut) {
      throw new BerthError('deadline-exceeded', 'ERR_RUNC_TIMEOUT', `runc ${op} did not finish in time and was killed`, {
        context: { container: id, op, binary: this.binary },
      });
    }
    if (result.code !== 0) {
      const message = runcMessage(result.stderr) || `exit ${result.code ?? result.signal}`;
      const { kind, code } = runcErrorKind(message);
      throw new BerthError(kind, code, `runc ${op}${id === undefined ? '' : ` ${id}`}: ${message}`, {
        context: { container: id, op, binary: this.binary, root: this.root, runcMessage: message },
      });
    }
    return result;
  }

  async state(id: string): Promise<RuncState> {
    checkContainerId(id);
    const r = await this.run('state', id, ['state', id]);
    return JSON.parse(r.stdout.toString()) as RuncState;
  }

  async start(id: string): Promise<void> {
    checkContainerId(id);
    await this.run('start', id, ['start', id]);
  }

  /** Sends `signal` to the container's init (or, with `all`, to every process in it). */
  async kill(id: string, signal: NodeJS.Signals | number, options: { all?: boolean } = {}): Promise<void> {
    checkContainerId(id);
    const args = ['kill'];
    if (options.all) args.push('--all');
    args.push(id, String(signal));
    await this.run('kill', id, args);
  }

  async delete(id: string, options: { force?: boolean } = {}): Promise<void> {
    checkContainerId(id);
    await this.run('delete', id, options.force ? ['delete', '--force', id] : ['delete', id]);
  }

  /** Every container under this root. */
  async list(): Promise<RuncState[]> {
    const r = await this.run('list', undefined, ['list', '--format', 'json']);
    const parsed = JSON.parse(r.stdout.toString()) as RuncState[] | null;
    return parsed ?? [];
  }

  /** Applies OCI `linux.resources` (as JSON) to a live container: `runc update --resources -`. */
  async update(id: string, resources: object): Promise<void> {
    checkContainerId(id);
    await this.run('update', id, ['update', '--resources', '-', id], { stdin: JSON.stringify(resources) });
  }
}
