import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, errorMessage, isBerthError } from '../errors.js';
import { Topic, type TaskExitEvent, type TaskOomEvent } from '../events/index.js';
import type { Logger } from '../log.js';
import { applyBaseSpec, loadBaseSpec } from './base-spec.js';
import type { RuntimeConfig } from './config.js';
import { checkHandlerName, probeFeatures, resolveBinary, type RuntimeHandlerInfo } from './handlers.js';
import { ConmonMonitor, Runc, type ExitStatus, type MonitorRecord, type RuntimeHandler } from './oci/index.js';
import { hostFacts, type OciProcess, type OciResources, type OciSpec, type OciUser } from './spec/index.js';

/** What the runtime publishes to (the events exchange). */
export interface EventPublisher {
  publish(topic: string, event: object): void;
}

export interface OciRuntimeOptions {
  config: RuntimeConfig;
  /** The plugin's state dir: monitors' state and, by default, each handler's runc root. */
  stateDir: string;
  events: EventPublisher;
  log: Logger;
  /** Poll interval behind the inotify watch for exits (default 1000 ms). */
  exitPollMs?: number;
  /** How long conmon + `runc create` may take (default 60 s). */
  createTimeoutMs?: number;
}

export interface CreateRequest {
  id: string;
  /** Handler name; '' is the default handler. */
  handler: string;
  /** Holds the rootfs the spec points at; config.json and conmon's sockets go here. */
  bundle: string;
  /** The generated spec; laid over the handler's base spec, if it has one. */
  spec: OciSpec;
  /** CRI log file; its directory is created. */
  logPath: string;
  tty: boolean;
  stdin: boolean;
  stdinOnce: boolean;
}

export interface ExecRequest {
  cmd: string[];
  /** 0: no timeout. */
  timeoutSec: number;
  /** Cap on each of stdout and stderr (default 16 MiB). */
  maxOutputBytes?: number;
  /** `NAME=value` entries added to (and overriding) the container's env. */
  env?: string[];
  /** Working directory; default the container's. */
  cwd?: string;
  /** User; default the container's. */
  user?: OciUser;
}

export interface ExecOutcome {
  /** -1 when it timed out. */
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
  timedOut: boolean;
}

export type ContainerState = 'created' | 'running' | 'stopped' | 'unknown';

/** Exit code reported when a container's monitor is gone and took the real one with it (as containerd's 255). */
export const UNKNOWN_EXIT_CODE = 255;
/** How long stop waits for the exit after the final SIGKILL. */
const KILL_WAIT_MS = 30_000;
const MONITORS_DIR = '_monitors'; // '_' cannot start a handler name (DNS label), so no handler root collides.

interface Handler {
  info: RuntimeHandlerInfo;
  runtime: RuntimeHandler;
  baseSpec: OciSpec | undefined;
}

function unknownContainer(id: string): BerthError {
  return new BerthError('not-found', 'ERR_RUNTIME_NOT_FOUND', `no container ${id} in the runtime`, { context: { container: id } });
}

/** A signal name or number as runc takes it; invalid-argument for anything else. */
export function parseSignal(signal: string): NodeJS.Signals | number {
  const s = signal.trim();
  if (/^\d+$/.test(s)) {
    const n = Number(s);
    if (n >= 1 && n <= 64) return n;
  } else {
    const name = (s.toUpperCase().startsWith('SIG') ? s.toUpperCase() : `SIG${s.toUpperCase()}`) as NodeJS.Signals;
    if (Object.hasOwn(osConstants.signals, name)) return name;
  }
  throw new BerthError('invalid-argument', 'ERR_RUNTIME_BAD_SIGNAL', `unknown signal ${JSON.stringify(signal)}`, { context: { signal } });
}

/**
 * The OCI runtime: runtime handlers from config, each a runc-compatible
 * binary with its own root (and optional base spec), and one conmon per
 * container. Watches every container it created or recovered and publishes
 * `/tasks/exit` (and `/tasks/oom` before it when the OOM killer did it) once
 * per container. Containers outlive this object and berthd: `close()` only
 * stops watching.
 */
export class OciRuntime {
  private readonly log: Logger;
  private readonly events: EventPublisher;
  private readonly monitor: ConmonMonitor;
  private readonly pollMs: number;
  /** Exit watchers by container id. */
  private readonly watchers = new Map<string, { abort: AbortController; done: Promise<void> }>();
  /** Containers whose exit has been published. */
  private readonly published = new Set<string>();
  /** Each container's process (from its spec): the template of its execs. */
  private readonly processes = new Map<string, OciProcess>();
  private closed = false;

  private constructor(
    opts: OciRuntimeOptions,
    monitorBinary: string,
    private readonly byName: Map<string, Handler>,
    private readonly defaultName: string,
    private readonly oomScoreAdjFloor: number,
  ) {
    this.log = opts.log;
    this.events = opts.events;
    this.pollMs = opts.exitPollMs ?? 1000;
    this.monitor = new ConmonMonitor({
      conmonPath: monitorBinary,
      stateDir: join(opts.stateDir, MONITORS_DIR),
      log: opts.log,
      exitPollMs: this.pollMs,
      createTimeoutMs: opts.createTimeoutMs,
    });
  }

  /**
   * Resolves the monitor and every handler's binary, probes their features,
   * loads base specs, creates the state dirs. Any problem with the config
   * (unknown default handler, missing binary, unreadable base spec) throws.
   */
  static async open(opts: OciRuntimeOptions): Promise<OciRuntime> {
    const { config } = opts;
    const names = Object.keys(config.runtimes);
    for (const name of names) checkHandlerName(name);
    if (!Object.hasOwn(config.runtimes, config.default_runtime)) {
      throw new BerthError(
        'invalid-argument',
        'ERR_RUNTIME_DEFAULT_UNKNOWN',
        `default_runtime ${JSON.stringify(config.default_runtime)} is not among the configured runtimes (${names.join(', ') || 'none'})`,
        { context: { handler: config.default_runtime } },
      );
    }
    const [monitorBinary, host, handlers] = await Promise.all([
      resolveBinary(config.monitor_binary, 'monitor'),
      hostFacts(),
      Promise.all(
        names.map(async (name): Promise<Handler> => {
          const h = config.runtimes[name]!;
          const [binary, baseSpec] = await Promise.all([
            resolveBinary(h.binary, `runtime handler ${name}`),
            h.base_spec === '' ? Promise.resolve(undefined) : loadBaseSpec(h.base_spec, name),
          ]);
          const root = h.root === '' ? join(opts.stateDir, name) : h.root;
          await mkdir(root, { recursive: true, mode: 0o700 });
          const features = await probeFeatures(binary);
          return { info: { name, binary, root, features, options: h.options }, runtime: { binary, root }, baseSpec };
        }),
      ),
    ]);
    const runtime = new OciRuntime(
      opts,
      monitorBinary,
      new Map(handlers.map((h) => [h.info.name, h])),
      config.default_runtime,
      host.oomScoreAdjFloor,
    );
    await runtime.monitor.init();
    return runtime;
  }

  /** Every configured handler, the default first. */
  handlers(): RuntimeHandlerInfo[] {
    const all = [...this.byName.values()].map((h) => h.info);
    return [...all.filter((h) => h.name === this.defaultName), ...all.filter((h) => h.name !== this.defaultName)];
  }

  /** The handler called `name` ('' = the default); invalid-argument naming the configured ones otherwise. */
  handler(name: string): RuntimeHandlerInfo {
    return this.entry(name).info;
  }

  private entry(name: string): Handler {
    const h = this.byName.get(name === '' ? this.defaultName : name);
    if (h) return h;
    const known = this.handlers().map((x) => x.name);
    throw new BerthError(
      'invalid-argument',
      'ERR_RUNTIME_HANDLER_UNKNOWN',
      `runtime handler ${JSON.stringify(name)} is not configured; configured handlers: ${known.join(', ')}`,
      { context: { handler: name, handlers: known.join(',') } },
    );
  }

  /** The handler's base spec (a copy), if it names one. */
  baseSpec(handler: string): OciSpec | undefined {
    const base = this.entry(handler).baseSpec;
    return base === undefined ? undefined : structuredClone(base);
  }

  /**
   * Creates the container under a new conmon (created, not started) and
   * starts watching for its exit. The spec is laid over the handler's base
   * spec; an oom_score_adj the base brings below berthd's own is raised to it.
   */
  async create(req: CreateRequest): Promise<{ pid: number }> {
    this.checkOpen();
    const h = this.entry(req.handler);
    const spec = h.baseSpec === undefined ? req.spec : applyBaseSpec(h.baseSpec, req.spec);
    const adj = spec.process?.oomScoreAdj;
    if (adj !== undefined && adj < this.oomScoreAdjFloor) {
      this.log.info({ container: req.id, requested: adj, applied: this.oomScoreAdjFloor }, 'oom_score_adj from the base spec clamped to berthd\'s own');
      spec.process.oomScoreAdj = this.oomScoreAdjFloor;
    }
    const created = await this.monitor.createContainer({
      id: req.id,
      bundle: req.bundle,
      spec,
      logPath: req.logPath,
      tty: req.tty,
      stdin: req.stdin,
      stdinOnce: req.stdinOnce,
      runtime: h.runtime,
    });
    this.published.delete(req.id);
    if (spec.process) this.processes.set(req.id, spec.process);
    this.watch(req.id, created.pid);
    return { pid: created.pid };
  }

  async start(id: string): Promise<void> {
    await this.record(id);
    await this.monitor.start(id);
  }

  /**
   * Sends `signal` (default SIGTERM), waits up to `timeoutSec`, then SIGKILLs
   * every process in the container; 0 kills at once. Resolves once the exit
   * is recorded and published. A stopped container is left as it is.
   */
  async stop(id: string, timeoutSec: number, signal = 'SIGTERM'): Promise<void> {
    const sig = parseSignal(signal);
    const record = await this.record(id);
    let st = await this.monitor.exitStatus(id);
    if (st === undefined) {
      const runc = this.monitor.runcFor(record);
      if (timeoutSec > 0) {
        await this.signal(runc, id, sig, false);
        try {
          st = await this.awaitExit(id, { timeoutMs: timeoutSec * 1000 });
        } catch (err) {
          if (!(isBerthError(err) && err.code === 'ERR_MONITOR_WAIT_TIMEOUT')) throw err;
        }
      }
      if (st === undefined) {
        await this.signal(runc, id, 'SIGKILL', true);
        st = await this.awaitExit(id, { timeoutMs: KILL_WAIT_MS });
      }
    }
    this.publishExit(id, record.pid, st);
  }

  /** Sends `signal` to the container's init process; a container that is not running is left alone. */
  async kill(id: string, signal: string): Promise<void> {
    const sig = parseSignal(signal);
    const record = await this.record(id);
    await this.signal(this.monitor.runcFor(record), id, sig, false);
  }

  private async signal(runc: Runc, id: string, sig: NodeJS.Signals | number, all: boolean): Promise<void> {
    try {
      await runc.kill(id, sig, { all });
    } catch (err) {
      if (isBerthError(err) && (err.code === 'ERR_RUNC_NOT_RUNNING' || err.code === 'ERR_RUNC_NOT_FOUND')) return;
      throw err;
    }
  }

  /**
   * Removes the container: `runc delete --force`, its conmon, conmon's files,
   * the exit record (also of a create cut short by a crash, whose monitor
   * record is written before conmon starts). Idempotent. Publishes no exit:
   * a container is stopped before it is deleted.
   */
  async delete(id: string): Promise<void> {
    const w = this.watchers.get(id);
    if (w) {
      w.abort.abort();
      await w.done;
    }
    await this.monitor.cleanup(id);
    this.published.delete(id);
    this.processes.delete(id);
  }

  /** The container's state: from its exit record when there is one, else from runc. */
  async state(id: string): Promise<ContainerState> {
    if ((await this.monitor.exitStatus(id)) !== undefined) return 'stopped';
    let record: MonitorRecord;
    try {
      record = await this.monitor.record(id);
    } catch (err) {
      if (isBerthError(err) && err.code === 'ERR_MONITOR_NOT_FOUND') return 'unknown';
      throw err;
    }
    try {
      const s = await this.monitor.runcFor(record).state(id);
      switch (s.status) {
        case 'creating':
        case 'created':
          return 'created';
        case 'running':
        case 'paused':
          return 'running';
        case 'stopped':
          return 'stopped';
      }
    } catch (err) {
      if (isBerthError(err) && err.code === 'ERR_RUNC_NOT_FOUND') return 'unknown';
      throw err;
    }
    return 'unknown';
  }

  /** Exit code, time and OOM flag once the container has exited; undefined before. */
  async exitStatus(id: string): Promise<ExitStatus | undefined> {
    return this.monitor.exitStatus(id);
  }

  /**
   * Runs `cmd` in the running container with the container's process
   * settings (env, user, cwd, capabilities...) and waits for it (ExecSync).
   * On timeout the process is killed and `timedOut` set; an aborted `signal`
   * kills it too and rejects with ERR_RUNC_EXEC_CANCELLED (cancelled).
   */
  async exec(id: string, req: ExecRequest, signal?: AbortSignal): Promise<ExecOutcome> {
    if (req.cmd.length === 0) {
      throw new BerthError('invalid-argument', 'ERR_RUNTIME_EXEC_NO_CMD', `exec in ${id}: empty command`, { context: { container: id } });
    }
    const base = await this.processOf(id);
    const env = req.env === undefined || req.env.length === 0 ? base.env : mergeEnv(base.env, req.env);
    const proc: OciProcess = {
      ...base,
      terminal: false,
      args: req.cmd,
      env,
      cwd: req.cwd ?? base.cwd,
      user: req.user ?? base.user,
    };
    const r = await this.monitor.exec(id, proc, {
      timeoutMs: req.timeoutSec > 0 ? req.timeoutSec * 1000 : undefined,
      maxOutputBytes: req.maxOutputBytes,
      signal,
    });
    return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, timedOut: r.timedOut };
  }

  private async processOf(id: string): Promise<OciProcess> {
    const known = this.processes.get(id);
    if (known) return known;
    const record = await this.record(id);
    let spec: OciSpec;
    try {
      spec = JSON.parse(await readFile(join(record.bundle, 'config.json'), 'utf8')) as OciSpec;
    } catch (err) {
      throw new BerthError('internal', 'ERR_RUNTIME_SPEC_READ', `cannot read the spec of ${id}: ${errorMessage(err)}`, {
        context: { container: id, file: join(record.bundle, 'config.json') },
        cause: err,
      });
    }
    this.processes.set(id, spec.process);
    return spec.process;
  }

  /** Applies new resources (memory, cpu, pids...) to the live container's cgroup. */
  async update(id: string, resources: OciResources): Promise<void> {
    const record = await this.record(id);
    await this.monitor.runcFor(record).update(id, resources);
  }

  /** Makes the container's monitor reopen its log file (after the kubelet rotated it). */
  async reopenLog(id: string): Promise<void> {
    await this.record(id);
    await this.monitor.reopenLog(id);
  }

  /**
   * After a restart: finds the container's monitor record and watches for its
   * exit again; an exit that happened while berthd was down is published now.
   * not-found when the runtime has no record of the container or its create
   * was cut short (then `delete` it).
   */
  async recover(id: string, handler: string): Promise<void> {
    this.checkOpen();
    const record = await this.record(id);
    if (record.pid === 0) {
      // Its create was cut short (berthd died before conmon reported the container): nothing to watch.
      throw new BerthError('not-found', 'ERR_RUNTIME_NOT_FOUND', `container ${id} was never fully created; delete it`, {
        context: { container: id },
      });
    }
    if (!this.byName.has(handler === '' ? this.defaultName : handler)) {
      // Its monitor record still names the binary and root, which is all it needs.
      this.log.warn({ container: id, handler }, 'recovered container names a runtime handler that is no longer configured');
    }
    const st = await this.monitor.exitStatus(id);
    if (st !== undefined) {
      this.publishExit(id, record.pid, st);
      return;
    }
    this.watch(id, record.pid);
  }

  /**
   * Ids of every container the runtime has a monitor record of, also creates
   * cut short by a crash: after a restart, those the caller has no record of
   * are orphans to delete.
   */
  async containerIds(): Promise<string[]> {
    return (await this.monitor.list()).map((r) => r.id);
  }

  /** Stops every exit watcher. Containers and their monitors keep running. */
  async close(): Promise<void> {
    this.closed = true;
    const pending = [...this.watchers.values()];
    for (const w of pending) w.abort.abort();
    await Promise.all(pending.map((w) => w.done));
  }

  private checkOpen(): void {
    if (this.closed) {
      throw new BerthError('unavailable', 'ERR_RUNTIME_CLOSED', 'the runtime is shutting down');
    }
  }

  private async record(id: string): Promise<MonitorRecord> {
    try {
      return await this.monitor.record(id);
    } catch (err) {
      if (isBerthError(err) && err.code === 'ERR_MONITOR_NOT_FOUND') throw unknownContainer(id);
      throw err;
    }
  }

  private watch(id: string, pid: number): void {
    if (this.watchers.has(id) || this.closed) return;
    const abort = new AbortController();
    const done = this.awaitExit(id, { signal: abort.signal }).then(
      (st) => {
        this.publishExit(id, pid, st);
      },
      (err: unknown) => {
        if (!abort.signal.aborted) this.log.warn({ container: id, err: errorMessage(err) }, 'stopped watching a container for its exit');
      },
    ).finally(() => {
      if (this.watchers.get(id)?.abort === abort) this.watchers.delete(id);
    });
    this.watchers.set(id, { abort, done });
  }

  /**
   * The container's exit status once its monitor records it. When the
   * monitor is gone without recording one (killed), runc is polled until the
   * container has stopped, and the exit is recorded as UNKNOWN_EXIT_CODE.
   */
  private async awaitExit(id: string, options: { timeoutMs?: number; signal?: AbortSignal }): Promise<ExitStatus> {
    const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
    try {
      return await this.monitor.waitExit(id, options);
    } catch (err) {
      if (!(isBerthError(err) && err.code === 'ERR_MONITOR_GONE')) throw err;
    }
    this.log.warn({ container: id }, 'container monitor gone without an exit status; watching the container through runc');
    const runc = this.monitor.runcFor(await this.monitor.record(id));
    for (;;) {
      let stopped: boolean;
      try {
        stopped = (await runc.state(id)).status === 'stopped';
      } catch (err) {
        if (!(isBerthError(err) && err.code === 'ERR_RUNC_NOT_FOUND')) throw err;
        stopped = true;
      }
      if (stopped) {
        const existing = await this.monitor.exitStatus(id);
        if (existing) return existing;
        await writeFile(join(this.monitor.exitsDir, id), String(UNKNOWN_EXIT_CODE));
        return (await this.monitor.exitStatus(id))!;
      }
      if (deadline !== undefined && Date.now() >= deadline) {
        throw new BerthError('deadline-exceeded', 'ERR_MONITOR_WAIT_TIMEOUT', `container ${id} did not exit within ${options.timeoutMs} ms`, {
          context: { container: id },
        });
      }
      await sleep(this.pollMs, undefined, { signal: options.signal });
    }
  }

  private publishExit(id: string, pid: number, st: ExitStatus): void {
    if (this.published.has(id)) return;
    this.published.add(id);
    if (st.oomKilled) this.events.publish(Topic.TaskOom, { id } satisfies TaskOomEvent);
    this.events.publish(Topic.TaskExit, {
      id,
      pid,
      exitCode: st.exitCode,
      exitedAt: st.exitedAt,
      oomKilled: st.oomKilled,
    } satisfies TaskExitEvent);
  }
}

/** `extra` entries replace same-named ones of `base`, the rest are appended. */
function mergeEnv(base: string[], extra: string[]): string[] {
  const name = (e: string): string => e.split('=', 1)[0]!;
  const override = new Set(extra.map(name));
  return [...base.filter((e) => !override.has(name(e))), ...extra];
}
