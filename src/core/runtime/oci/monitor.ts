import { spawn } from 'node:child_process';
import { constants as fsc } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, errorMessage, isBerthError, isErrnoCode } from '../../errors.js';
import type { Logger } from '../../log.js';
import { helperEnv } from './command.js';
import { DirWatch } from './exit-watch.js';
import { isSameProcess, processMemory, processStartTime } from './proc.js';
import { conmonExec, type ExecOptions, type ExecResult } from './exec-sync.js';
import { checkContainerId, Runc, type RuncState, type RuntimeHandler } from './runc.js';

export interface MonitorOptions {
  /** Path of the conmon binary. */
  conmonPath: string;
  /**
   * Root of the monitors' state: `exits/<id>` (conmon's exit files, one dir
   * for all so one inotify watch serves every waiter) and `containers/<id>/`
   * (conmon's persist dir: pid files, `exit`, `oom`, and our record).
   */
  stateDir: string;
  log: Logger;
  /** How long conmon + `runc create` may take before the create is undone (default 60 s). */
  createTimeoutMs?: number;
  /** Poll interval behind the inotify watch on the exit dir (default 1000 ms). */
  exitPollMs?: number;
  /** conmon `--log-size-max` in bytes (conmon truncates the log by reopening it); default: no limit. */
  logSizeMax?: number;
}

export interface CreateContainerRequest {
  id: string;
  /** Bundle dir: must hold the rootfs the spec points at; config.json is written here. */
  bundle: string;
  /** The OCI runtime spec (config.json content). */
  spec: object;
  /** CRI log file (`<RFC3339Nano> <stdout|stderr> <F|P> <line>`); its directory is created. */
  logPath: string;
  tty?: boolean;
  /** Keep a stdin pipe to the container (for a later attach). */
  stdin?: boolean;
  /** With `stdin`: close the container's stdin when the first attach ends. */
  stdinOnce?: boolean;
  runtime: RuntimeHandler;
}

export interface CreatedContainer {
  /** The container's init pid (host pid namespace). */
  pid: number;
  /** conmon's pid. */
  monitorPid: number;
}

/** What is kept on disk so a restarted berthd finds the container and its monitor again. */
export interface MonitorRecord {
  id: string;
  bundle: string;
  logPath: string;
  runtime: RuntimeHandler;
  tty: boolean;
  stdin: boolean;
  /** The container's init pid; 0 while the create is under way (or if berthd died during it: clean it up). */
  pid: number;
  /** conmon's pid; 0 until the create finished. */
  monitorPid: number;
  /** conmon's start time (clock ticks, /proc/<pid>/stat) so a recycled pid is never taken for it. */
  monitorStartTime: number;
  createdAt: string;
  /** conmon's exit file (exit code as decimal text, written when the container exits). */
  exitFile: string;
  /** conmon's SOCK_SEQPACKET attach socket (first byte of each message is the stream). */
  attachSocket: string;
  /** conmon's control FIFO: lines `<type> <height> <width>`, 1 = resize, 2 = reopen log. */
  ctlFifo: string;
}

export interface ExitStatus {
  exitCode: number;
  /** When conmon wrote the exit file (its mtime). */
  exitedAt: Date;
  /** conmon saw the container's memory cgroup OOM. */
  oomKilled: boolean;
}

/** conmon's control message types on the `ctl` FIFO. */
const CTL_RESIZE = 1;
const CTL_REOPEN_LOG = 2;

const RECORD = 'monitor.json';

function monitorError(code: string, message: string, id: string, cause?: unknown, kind: BerthError['kind'] = 'internal'): BerthError {
  return new BerthError(kind, code, message, { context: { container: id }, cause });
}

/**
 * One conmon per container: conmon runs `runc create`, owns the container's
 * stdio, writes the CRI log, records the exit code (and OOM) in files, and
 * keeps doing so while berthd is down. conmon daemonizes itself (it forks and
 * the first process exits; the survivor calls setsid), so it is never
 * berthd's child and berthd's death does not touch it.
 */
export class ConmonMonitor {
  readonly exitsDir: string;
  readonly containersDir: string;
  private readonly opts: MonitorOptions;
  private readonly log: Logger;
  private readonly records = new Map<string, MonitorRecord>();
  private readonly exitWatch: DirWatch;

  constructor(opts: MonitorOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.exitsDir = join(opts.stateDir, 'exits');
    this.containersDir = join(opts.stateDir, 'containers');
    this.exitWatch = new DirWatch(this.exitsDir, opts.exitPollMs ?? 1000);
  }

  /** Creates the state directories (idempotent). */
  async init(): Promise<void> {
    await mkdir(this.exitsDir, { recursive: true, mode: 0o700 });
    await mkdir(this.containersDir, { recursive: true, mode: 0o700 });
  }

  persistDir(id: string): string {
    return join(this.containersDir, id);
  }

  /** A runc for the container's handler. */
  runcFor(record: MonitorRecord): Runc {
    return new Runc(record.runtime);
  }

  /**
   * Writes config.json into the bundle and starts conmon, which runs `runc
   * create`; resolves once the container exists (created, not started) with
   * its pid. On any failure or timeout everything made is undone.
   */
  async createContainer(req: CreateContainerRequest): Promise<CreatedContainer> {
    const { id } = req;
    checkContainerId(id);
    await this.init();
    const dir = this.persistDir(id);
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (err) {
      if (isErrnoCode(err, 'EEXIST')) {
        throw monitorError('ERR_MONITOR_EXISTS', `container ${id} already has a monitor state dir`, id, err, 'already-exists');
      }
      throw err;
    }
    const exitFile = join(this.exitsDir, id);
    const conmonPidFile = join(dir, 'conmon.pid');
    let conmonPid: number | undefined;
    const t0 = performance.now();
    const steps: Record<string, number> = {};
    const mark = (step: string): void => {
      steps[step] = Math.round((performance.now() - t0) * 10) / 10;
    };
    try {
      const args = this.conmonArgs(req, dir);
      const base = {
        id,
        bundle: req.bundle,
        logPath: req.logPath,
        runtime: { ...req.runtime },
        tty: req.tty ?? false,
        stdin: req.stdin ?? false,
        exitFile,
        attachSocket: join(req.bundle, 'attach'),
        ctlFifo: join(req.bundle, 'ctl'),
      };
      // Independent files, written at once. The record goes first in spirit:
      // conmon starts only once it is there, so if berthd dies mid-create,
      // cleanup() still knows the runtime to ask.
      const prepared = await Promise.allSettled([
        rm(exitFile, { force: true }),
        writeFile(join(req.bundle, 'config.json'), JSON.stringify(req.spec)),
        mkdir(dirname(req.logPath), { recursive: true }),
        this.writeRecord({ ...base, pid: 0, monitorPid: 0, monitorStartTime: 0, createdAt: '' }),
      ]);
      for (const r of prepared) if (r.status === 'rejected') throw r.reason;
      mark('files');
      const { pid, monitorPid } = await this.spawnConmon(id, args, dir, conmonPidFile, (p) => {
        conmonPid = p;
      }, mark);
      conmonPid = monitorPid;
      const monitorStartTime = await processStartTime(monitorPid);
      if (monitorStartTime === undefined) {
        throw monitorError('ERR_MONITOR_DIED', `conmon for ${id} exited right after creating the container`, id);
      }
      await this.writeRecord({ ...base, pid, monitorPid, monitorStartTime, createdAt: new Date().toISOString() });
      mark('recorded');
      this.log.debug({ container: id, pid, monitorPid, steps }, 'container created under conmon (step times, ms)');
      return { pid, monitorPid };
    } catch (err) {
      await this.undoCreate(id, req.runtime, conmonPid, conmonPidFile);
      throw err;
    }
  }

  private conmonArgs(req: CreateContainerRequest, dir: string): string[] {
    const runc = new Runc(req.runtime);
    const args = [
      '--api-version', '1',
      '-c', req.id,
      '-u', req.id,
      '-n', req.id,
      '-r', req.runtime.binary,
      '-b', req.bundle,
      '-p', join(dir, 'container.pid'),
      '-P', join(dir, 'conmon.pid'),
      '-l', `k8s-file:${req.logPath}`,
      '--exit-dir', this.exitsDir,
      '--persist-dir', dir,
      // The attach socket goes in the bundle as `attach` (no symlink dir to manage).
      '--full-attach',
      '--log-level', 'info',
    ];
    for (const a of runc.globalArgs()) args.push('--runtime-arg', a);
    if (this.opts.logSizeMax !== undefined) args.push('--log-size-max', String(this.opts.logSizeMax));
    if (req.tty) {
      args.push('-t');
    } else if (req.stdin) {
      args.push('-i');
      if (!req.stdinOnce) args.push('--leave-stdin-open');
    }
    return args;
  }

  /**
   * Starts conmon with the sync pipe as fd 3 and waits for its one JSON
   * message: `{"data": <pid>}` once `runc create` worked, or `{"data": -1,
   * "message": <runc's stderr>}`.
   */
  private spawnConmon(
    id: string,
    args: string[],
    cwd: string,
    conmonPidFile: string,
    onMonitorPid: (pid: number) => void,
    mark: (step: string) => void,
  ): Promise<CreatedContainer> {
    const timeoutMs = this.opts.createTimeoutMs ?? 60_000;
    return new Promise<CreatedContainer>((resolve, reject) => {
      const child = spawn(this.opts.conmonPath, args, {
        stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
        detached: true,
        cwd,
        env: helperEnv({ _OCI_SYNCPIPE: '3' }),
      });
      const sync = child.stdio[3] as Socket;
      let stderr = '';
      let syncText = '';
      let firstExit: number | null | undefined;
      let message: { data?: number; pid?: number; message?: string } | undefined;
      let syncEnded = false;
      let done = false;

      const finish = (err: BerthError | undefined, value?: CreatedContainer): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sync.destroy();
        child.stderr?.destroy();
        if (err) reject(err);
        else resolve(value!);
      };
      const timer = setTimeout(() => {
        finish(monitorError('ERR_MONITOR_CREATE_TIMEOUT', `creating container ${id} took longer than ${timeoutMs} ms`, id, undefined, 'deadline-exceeded'));
      }, timeoutMs);

      const noReport = (): void => {
        if (message !== undefined) return;
        finish(monitorError('ERR_MONITOR_SYNC', `conmon for ${id} exited without reporting the container (${stderr.trim() || 'no message'})`, id));
      };

      // Both the intermediate conmon's exit (after it wrote conmon.pid) and the message are needed.
      const settle = async (): Promise<void> => {
        if (done || firstExit === undefined || message === undefined) return;
        if (firstExit !== 0) return; // reported by the exit handler
        let monitorPid: number;
        try {
          monitorPid = Number((await readFile(conmonPidFile, 'utf8')).trim());
        } catch (err) {
          finish(monitorError('ERR_MONITOR_PIDFILE', `conmon wrote no pid file for ${id}: ${errorMessage(err)}`, id, err));
          return;
        }
        onMonitorPid(monitorPid);
        const pid = message.data ?? message.pid ?? -1;
        if (pid <= 0) {
          const why = (message.message ?? '').trim() || 'runtime create failed';
          finish(
            new BerthError('internal', 'ERR_RUNC_CREATE', `runc create ${id}: ${why}`, {
              context: { container: id, runcMessage: why },
            }),
          );
          return;
        }
        finish(undefined, { pid, monitorPid });
      };

      child.once('error', (err) => {
        finish(
          new BerthError('unavailable', 'ERR_MONITOR_SPAWN', `cannot run ${this.opts.conmonPath}: ${err.message}`, {
            context: { container: id },
            cause: err,
          }),
        );
      });
      child.stderr!.on('data', (b: Buffer) => {
        if (stderr.length < 64 * 1024) stderr += b.toString();
      });
      mark('spawned');
      child.once('exit', (code, signal) => {
        mark('forked');
        firstExit = code;
        if (code !== 0) {
          // It failed before forking, so nothing else holds its stderr: read it to the end first.
          const report = (): void =>
            finish(monitorError('ERR_MONITOR_START', `conmon for ${id} failed (${code ?? signal}): ${stderr.trim() || 'no message'}`, id));
          if (child.stderr!.readableEnded) report();
          else {
            child.stderr!.once('end', report);
            setTimeout(report, 500).unref();
          }
          return;
        }
        if (syncEnded) noReport();
        else void settle();
      });
      sync.on('data', (b: Buffer) => {
        syncText += b.toString();
        const nl = syncText.indexOf('\n');
        if (nl < 0 || message !== undefined) return;
        mark('synced');
        try {
          message = JSON.parse(syncText.slice(0, nl)) as typeof message;
        } catch (err) {
          finish(monitorError('ERR_MONITOR_SYNC', `bad message from conmon for ${id}: ${syncText.slice(0, 200)}`, id, err));
          return;
        }
        void settle();
      });
      sync.on('error', () => {
        // EOF/errors are judged in 'end'.
      });
      sync.on('end', () => {
        syncEnded = true;
        // A failed start of the first process is reported by the exit handler, with its stderr.
        if (firstExit === 0) noReport();
      });
    });
  }

  /** Undoes a failed create: conmon (and with it a pending `runc create`), runc's state, our dirs. */
  private async undoCreate(id: string, runtime: RuntimeHandler, conmonPid: number | undefined, pidFile: string): Promise<void> {
    let pid = conmonPid;
    if (pid === undefined) {
      pid = await readFile(pidFile, 'utf8').then(
        (s) => Number(s.trim()) || undefined,
        () => undefined,
      );
    }
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
      await this.waitGone(pid, 2000);
    }
    try {
      await new Runc(runtime).delete(id, { force: true });
    } catch (err) {
      if (!(isBerthError(err) && err.code === 'ERR_RUNC_NOT_FOUND')) {
        this.log.warn({ container: id, err: errorMessage(err) }, 'runc delete after failed create');
      }
    }
    await rm(this.persistDir(id), { recursive: true, force: true });
    await rm(join(this.exitsDir, id), { force: true });
    this.records.delete(id);
  }

  /**
   * After a create that never finished: conmon's pid is only in its pid file.
   * It is taken for conmon only if its command line names this container's
   * state dir (a recycled pid would not).
   */
  private async killUnrecordedConmon(id: string): Promise<void> {
    const pid = await readFile(join(this.persistDir(id), 'conmon.pid'), 'utf8').then(
      (s) => Number(s.trim()),
      () => 0,
    );
    if (!(pid > 1)) return;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.split('\0').includes(this.persistDir(id))) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return;
    }
    await this.waitGone(pid, 2000);
  }

  private async waitGone(pid: number, ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      if ((await processStartTime(pid)) === undefined) return true;
      await sleep(10);
    }
    return false;
  }

  private async writeRecord(record: MonitorRecord): Promise<void> {
    const path = join(this.persistDir(record.id), RECORD);
    const tmp = `${path}.tmp`;
    await writeFile(tmp, JSON.stringify(record));
    await rename(tmp, path);
    this.records.set(record.id, record);
  }

  /** The record of a container's monitor (read from disk after a restart); not-found if none. */
  async record(id: string): Promise<MonitorRecord> {
    checkContainerId(id);
    const cached = this.records.get(id);
    if (cached) return cached;
    let text: string;
    try {
      text = await readFile(join(this.persistDir(id), RECORD), 'utf8');
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) {
        throw monitorError('ERR_MONITOR_NOT_FOUND', `no monitored container ${id}`, id, err, 'not-found');
      }
      throw err;
    }
    const record = JSON.parse(text) as MonitorRecord;
    this.records.set(id, record);
    return record;
  }

  /** Every container with a monitor record (what a restarted berthd picks up again). */
  async list(): Promise<MonitorRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.containersDir);
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) return [];
      throw err;
    }
    const out: MonitorRecord[] = [];
    for (const name of names) {
      try {
        out.push(await this.record(name));
      } catch (err) {
        // A dir without a record is a create that died half-way; cleanup() removes it.
        if (!(isBerthError(err) && (err.code === 'ERR_MONITOR_NOT_FOUND' || err.code === 'ERR_RUNC_BAD_ID'))) throw err;
      }
    }
    return out;
  }

  /** True while the container's conmon is running. */
  async monitorAlive(id: string): Promise<boolean> {
    const r = await this.record(id);
    return isSameProcess(r.monitorPid, r.monitorStartTime);
  }

  /** conmon's memory (bytes), undefined once it has exited. */
  async monitorMemory(id: string): Promise<{ rss: number; pss: number } | undefined> {
    const r = await this.record(id);
    if (!(await isSameProcess(r.monitorPid, r.monitorStartTime))) return undefined;
    return processMemory(r.monitorPid);
  }

  /** `runc start`: runs the created container's process. */
  async start(id: string): Promise<void> {
    const r = await this.record(id);
    await this.runcFor(r).start(id);
  }

  /** `runc state` of the container under its handler. */
  async state(id: string): Promise<RuncState> {
    const r = await this.record(id);
    return this.runcFor(r).state(id);
  }

  /** UpdateContainerResources: `runc update` with OCI `linux.resources`. */
  async update(id: string, resources: object): Promise<void> {
    const r = await this.record(id);
    await this.runcFor(r).update(id, resources);
  }

  /** Exit code, time and OOM flag once the container has exited; undefined while it runs. */
  async exitStatus(id: string): Promise<ExitStatus | undefined> {
    checkContainerId(id);
    const file = join(this.exitsDir, id);
    let text: string;
    let exitedAt: Date;
    try {
      const [t, st] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
      text = t;
      exitedAt = st.mtime;
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) return undefined;
      throw err;
    }
    const exitCode = Number.parseInt(text.trim(), 10);
    const oomKilled = await stat(join(this.persistDir(id), 'oom')).then(
      () => true,
      () => false,
    );
    return { exitCode: Number.isNaN(exitCode) ? -1 : exitCode, exitedAt, oomKilled };
  }

  /**
   * Resolves with the exit status once conmon has written the exit file.
   * Rejects with ERR_MONITOR_GONE if conmon is gone without writing one, and
   * with ERR_MONITOR_WAIT_TIMEOUT after `timeoutMs`.
   */
  async waitExit(id: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ExitStatus> {
    const record = await this.record(id);
    const now = await this.exitStatus(id);
    if (now) return now;
    return new Promise<ExitStatus>((resolve, reject) => {
      let done = false;
      let checking = false;
      let recheck = false;
      const finish = (err: unknown, value?: ExitStatus): void => {
        if (done) return;
        done = true;
        remove();
        if (timer !== undefined) clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(value!);
      };
      const check = async (poll: boolean): Promise<void> => {
        if (checking) {
          recheck = true;
          return;
        }
        checking = true;
        try {
          do {
            recheck = false;
            const st = await this.exitStatus(id);
            if (st) return finish(undefined, st);
            if (poll && !(await isSameProcess(record.monitorPid, record.monitorStartTime))) {
              // conmon writes the file before it exits: look once more, then give up.
              const late = await this.exitStatus(id);
              if (late) return finish(undefined, late);
              return finish(monitorError('ERR_MONITOR_GONE', `conmon for ${id} is gone and left no exit status`, id, undefined, 'unavailable'));
            }
          } while (recheck && !done);
        } catch (err) {
          finish(err);
        } finally {
          checking = false;
        }
      };
      const remove = this.exitWatch.add((name) => {
        if (name === undefined) void check(true);
        else if (name === id) void check(false);
      });
      const timer =
        options.timeoutMs === undefined
          ? undefined
          : setTimeout(
              () => finish(monitorError('ERR_MONITOR_WAIT_TIMEOUT', `container ${id} did not exit within ${options.timeoutMs} ms`, id, undefined, 'deadline-exceeded')),
              options.timeoutMs,
            );
      const onAbort = (): void => finish(options.signal?.reason ?? new Error('aborted'));
      if (options.signal?.aborted) onAbort();
      options.signal?.addEventListener('abort', onAbort);
      // The file may have appeared between the first look and the watch.
      void check(false);
    });
  }

  /**
   * Calls `listener` once for every container whose exit file appears from now
   * on (inotify, with the poll behind it): one subscription serves all
   * containers, where waitExit is per container. Exits that happened before
   * (e.g. while berthd was down) are found with list() + exitStatus().
   * Returns the unsubscriber.
   */
  onExit(listener: (id: string, status: ExitStatus) => void): () => void {
    const seen = new Set<string>();
    let closed = false;
    const names = async (): Promise<string[]> => readdir(this.exitsDir).catch(() => [] as string[]);
    const primed = names().then((list) => {
      for (const n of list) seen.add(n);
    });
    const report = async (name: string): Promise<void> => {
      if (seen.has(name)) return;
      let status: ExitStatus | undefined;
      try {
        // Only a container with a record counts (conmon's temp files share the dir).
        await this.record(name);
        status = await this.exitStatus(name);
      } catch {
        return;
      }
      if (status === undefined || seen.has(name) || closed) return;
      seen.add(name);
      listener(name, status);
    };
    let queue = Promise.resolve();
    const remove = this.exitWatch.add((name) => {
      queue = queue.then(async () => {
        await primed;
        if (name !== undefined) {
          if (!(await this.exitStatus(name).catch(() => undefined))) seen.delete(name);
          await report(name);
          return;
        }
        const present = new Set(await names());
        for (const n of seen) if (!present.has(n)) seen.delete(n); // removed: the id may come back
        for (const n of present) await report(n);
      });
    });
    return () => {
      closed = true;
      remove();
    };
  }

  /**
   * Stops the container: SIGTERM, then after `timeoutSec` SIGKILL to every
   * process in it; resolves with the exit status. A container that already
   * exited just returns its status.
   */
  async stop(id: string, timeoutSec: number): Promise<ExitStatus> {
    const record = await this.record(id);
    const runc = this.runcFor(record);
    const done = await this.exitStatus(id);
    if (done) return done;
    if (timeoutSec > 0) {
      await this.signal(runc, id, 'SIGTERM', false);
      try {
        return await this.waitExit(id, { timeoutMs: timeoutSec * 1000 });
      } catch (err) {
        if (!(isBerthError(err) && err.code === 'ERR_MONITOR_WAIT_TIMEOUT')) throw err;
      }
    }
    await this.signal(runc, id, 'SIGKILL', true);
    return this.waitExit(id, { timeoutMs: 30_000 });
  }

  /** runc kill, where "already stopped" is not an error. */
  private async signal(runc: Runc, id: string, sig: NodeJS.Signals, all: boolean): Promise<void> {
    try {
      await runc.kill(id, sig, { all });
    } catch (err) {
      if (isBerthError(err) && err.code === 'ERR_RUNC_NOT_RUNNING') return;
      throw err;
    }
  }

  /** Runs a process in the container and waits for it (ExecSync): see conmonExec. */
  async exec(id: string, processSpec: object, options: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.record(id);
    return conmonExec(
      { conmonPath: this.opts.conmonPath, runtime: r.runtime, id, process: processSpec, scratchDir: this.persistDir(id) },
      options,
    );
  }

  /** Writes one control line to conmon's `ctl` FIFO; fails if conmon is not reading it. */
  private async sendCtl(record: MonitorRecord, type: number, height: number, width: number): Promise<void> {
    let fh;
    try {
      // Non-blocking open fails with ENXIO when nobody has the FIFO open for reading (conmon gone).
      fh = await open(record.ctlFifo, fsc.O_WRONLY | fsc.O_NONBLOCK);
    } catch (err) {
      throw monitorError('ERR_MONITOR_CTL', `cannot reach conmon for ${record.id}: ${errorMessage(err)}`, record.id, err, 'failed-precondition');
    }
    try {
      await fh.write(`${type} ${height} ${width}\n`);
    } finally {
      await fh.close();
    }
  }

  /**
   * Makes conmon close and reopen the log file (ReopenContainerLog, after the
   * kubelet rotated it): new output goes to a new file at `logPath`. Resolves
   * once the new file is in place.
   */
  async reopenLog(id: string, timeoutMs = 5000): Promise<void> {
    const record = await this.record(id);
    if (!(await isSameProcess(record.monitorPid, record.monitorStartTime))) {
      throw monitorError('ERR_MONITOR_GONE', `conmon for ${id} is not running`, id, undefined, 'failed-precondition');
    }
    const before = await stat(record.logPath).then(
      (s) => s.ino,
      () => undefined,
    );
    await this.sendCtl(record, CTL_REOPEN_LOG, 0, 0);
    const until = Date.now() + timeoutMs;
    for (;;) {
      const ino = await stat(record.logPath).then(
        (s) => s.ino,
        () => undefined,
      );
      if (ino !== undefined && ino !== before) return;
      if (Date.now() > until) {
        throw monitorError('ERR_MONITOR_REOPEN_TIMEOUT', `conmon for ${id} did not reopen ${record.logPath}`, id, undefined, 'deadline-exceeded');
      }
      await sleep(5);
    }
  }

  /** Sets the size of a tty container's terminal (conmon relays it to the pty). */
  async resize(id: string, size: { width: number; height: number }): Promise<void> {
    const record = await this.record(id);
    if (!record.tty) {
      throw monitorError('ERR_MONITOR_NO_TTY', `container ${id} has no terminal to resize`, id, undefined, 'failed-precondition');
    }
    const ok = (n: number) => Number.isInteger(n) && n > 0 && n <= 0xffff;
    if (!ok(size.width) || !ok(size.height)) {
      throw monitorError('ERR_MONITOR_BAD_SIZE', `bad terminal size ${size.width}x${size.height}`, id, undefined, 'invalid-argument');
    }
    await this.sendCtl(record, CTL_RESIZE, size.height, size.width);
  }

  /**
   * Removes everything: `runc delete --force`, conmon if it is still there,
   * conmon's files in the bundle, the exit file and the state dir. Safe to
   * repeat; also clears a state dir a crashed create left without a record.
   */
  async cleanup(id: string): Promise<void> {
    checkContainerId(id);
    let record: MonitorRecord | undefined;
    try {
      record = await this.record(id);
    } catch (err) {
      if (!(isBerthError(err) && err.code === 'ERR_MONITOR_NOT_FOUND')) throw err;
    }
    if (record) {
      try {
        await this.runcFor(record).delete(id, { force: true });
      } catch (err) {
        if (!(isBerthError(err) && err.code === 'ERR_RUNC_NOT_FOUND')) throw err;
      }
      if (record.monitorPid === 0) await this.killUnrecordedConmon(id);
      else if (await isSameProcess(record.monitorPid, record.monitorStartTime)) {
        // With its container gone conmon writes the exit file and leaves by itself; give it a moment.
        if (!(await this.waitGone(record.monitorPid, 2000)) && (await isSameProcess(record.monitorPid, record.monitorStartTime))) {
          try {
            process.kill(record.monitorPid, 'SIGKILL');
          } catch {
            // Gone meanwhile.
          }
          await this.waitGone(record.monitorPid, 2000);
        }
      }
      for (const name of ['attach', 'ctl', 'winsz']) await rm(join(record.bundle, name), { force: true });
    }
    await rm(this.persistDir(id), { recursive: true, force: true });
    await rm(join(this.exitsDir, id), { force: true });
    this.records.delete(id);
  }
}
