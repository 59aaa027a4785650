/**
 * CRI containers: create/start/stop/remove through runtime.oci, a writable
 * snapshot per container over its image, records in the ContainerStore, and
 * lifecycle events. Reads (List, Status) come from memory only; a container's
 * exit comes from the runtime's `/tasks/exit` events.
 */
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BerthError, errorMessage, isBerthError } from '../../core/errors.js';
import { Topic, type Envelope, type TaskExitEvent } from '../../core/events/index.js';
import type { Logger } from '../../core/log.js';
import { readStats, type CgroupStats } from '../../core/runtime/cgroups/index.js';
import { cgroupsPath, containerSpec, hostFacts, rootfsPasswd, type HostFacts, type OciResources, type SandboxRef } from '../../core/runtime/spec/index.js';
import { containerResources } from '../../core/runtime/spec/resources.js';
import { mount, unmountAll, type Mount } from '../../core/snapshotter/index.js';
import {
  ContainerConfig,
  ContainerEventType,
  NamespaceMode,
  type ContainerEventResponse,
  type ContainerFilter,
  type ContainerStats,
  type ContainerStatus,
  type ContainerStatsFilter,
  type ContainerStatusResponse,
  type CreateContainerRequest,
  type ExecSyncResponse,
  type LinuxContainerResources,
} from '../../generated/api.js';
import { containerName, newId, nowNs, type ContainerRecord, type SandboxRecord } from '../store/index.js';
import type { ContainerRuntime, ContainerServiceDeps } from './deps.js';
import { CONTAINER_EVENT_TOPICS, publishContainerEvent } from './events.js';
import { KeyedLock } from './keyed-lock.js';
import { criSignalName } from './signals.js';
import { attributesOf, cgroupSections, type CpuSample } from './stats.js';
import { toCriStatus as toPodSandboxStatus, type PodContainerOps } from '../sandbox/index.js';
import { recordStateOf, toCriStatus } from './status.js';
import { readTerminationMessage } from './termination.js';

/** Cap on each of ExecSync's stdout and stderr. */
export const EXEC_SYNC_MAX_OUTPUT = 16 * 1024 * 1024;
/** Exit code and reason of a container whose start failed (as containerd's CRI). */
export const START_ERROR_EXIT_CODE = 128;
export const START_ERROR_REASON = 'StartError';
/** Where the monitor writes the output of a container that has no log file. */
const NO_LOG = '/dev/null';
/** Exit code when a container vanished with its monitor and its real code is unknown. */
const UNKNOWN_EXIT_CODE = 255;

interface ExitInfo {
  exitCode: number;
  exitedAt: Date;
  oomKilled: boolean;
}

function invalid(code: string, message: string, context: Record<string, string> = {}): BerthError {
  return new BerthError('invalid-argument', code, message, { context });
}

function dateNs(d: Date): bigint {
  return BigInt(d.getTime()) * 1_000_000n;
}

function reasonOf(exit: ExitInfo): string {
  if (exit.oomKilled) return 'OOMKilled';
  return exit.exitCode === 0 ? 'Completed' : 'Error';
}

export class ContainerService implements PodContainerOps {
  private readonly containers: ContainerServiceDeps['containers'];
  private readonly sandboxes: ContainerServiceDeps['sandboxes'];
  private readonly runtime: ContainerRuntime;
  private readonly log: Logger;
  private readonly lock = new KeyedLock();
  private host: Promise<HostFacts> | undefined;
  private fsMountpoint: Promise<string> | undefined;
  /** Starts in progress: exit bookkeeping waits for them, so STARTED precedes STOPPED. */
  private readonly starting = new Map<string, Promise<void>>();
  /** Exits being recorded, so an event and a stop record one exit once. */
  private readonly settling = new Map<string, Promise<void>>();
  /** The last cgroup cpu sample of each container, for usage_nano_cores. */
  private readonly cpuSamples = new Map<string, CpuSample>();
  private readonly unsubscribe: () => void;

  constructor(private readonly deps: ContainerServiceDeps) {
    this.containers = deps.containers;
    this.sandboxes = deps.sandboxes;
    this.runtime = deps.runtime;
    this.log = deps.log;
    if (deps.host !== undefined) this.host = Promise.resolve(deps.host);
    this.unsubscribe = deps.events.subscribe<TaskExitEvent>({ topics: [Topic.TaskExit] }, (envelope: Envelope<TaskExitEvent>) => this.onTaskExit(envelope.event));
  }

  /** Stops listening for exits. Containers keep running. */
  close(): void {
    this.unsubscribe();
  }

  // ---- create ------------------------------------------------------------

  async create(req: CreateContainerRequest): Promise<string> {
    const config = req.config;
    if (config?.metadata === undefined || config.metadata.name === '') {
      throw invalid('ERR_CRI_CONTAINER_METADATA', 'the container config needs metadata with a name');
    }
    const imageRef = config.image?.image ?? '';
    if (imageRef === '') throw invalid('ERR_CRI_CONTAINER_IMAGE', 'the container config names no image');
    const sandbox = this.sandbox(req.podSandboxId);
    if (sandbox.state !== 'ready') {
      throw new BerthError('failed-precondition', 'ERR_CRI_SANDBOX_NOT_READY', `pod sandbox ${sandbox.id} is not ready`, {
        context: { sandbox: sandbox.id },
      });
    }
    if (sandbox.config.metadata === undefined) {
      throw new BerthError('internal', 'ERR_CRI_SANDBOX_METADATA', `pod sandbox ${sandbox.id} has no metadata`, { context: { sandbox: sandbox.id } });
    }
    const image = this.deps.images.get(imageRef);
    if (image === undefined) {
      throw new BerthError('not-found', 'ERR_CRI_IMAGE_NOT_FOUND', `image ${JSON.stringify(imageRef)} not found: pull it first`, {
        context: { image: imageRef },
      });
    }

    const id = newId();
    const name = containerName(config.metadata, sandbox.config.metadata);
    this.containers.names.reserve(name, id);
    const log = this.log.child({ container: id, sandbox: sandbox.id });
    const undo: Array<[string, () => Promise<unknown>]> = [];
    try {
      return await this.lock.run(id, async () => {
        const createdAt = nowNs();
        const t0 = performance.now();
        const ms: Record<string, number> = {};
        const lap = (step: string): void => {
          ms[step] = Math.round((performance.now() - t0) * 10) / 10;
        };
        const bundle = join(this.deps.stateDir, 'containers', id);
        const rootfs = join(bundle, 'rootfs');
        const snapshotKey = `cri-container-${id}`;
        const logDir = sandbox.config.logDirectory;
        const logPath = logDir !== '' && config.logPath !== '' ? join(logDir, config.logPath) : '';
        // Mount point, snapshot and log dir at once; the snapshot's undo is pushed once it is known to exist.
        undo.push(['bundle dir', () => rm(bundle, { recursive: true, force: true })]);
        const [dirMade, prepared, logDirMade] = await Promise.allSettled([
          mkdir(rootfs, { recursive: true }),
          this.deps.snapshotter.prepare(snapshotKey, image.chainId, { labels: { 'berth.cri/container': id } }),
          logPath === '' ? Promise.resolve() : mkdir(dirname(logPath), { recursive: true }),
        ]);
        if (prepared.status === 'fulfilled') undo.push(['snapshot', () => this.deps.snapshotter.remove(snapshotKey)]);
        for (const r of [dirMade, prepared, logDirMade]) if (r.status === 'rejected') throw r.reason;
        const mounts = (prepared as PromiseFulfilledResult<Mount[]>).value;
        lap('prepared');
        await mount(mounts, rootfs);
        lap('mounted');
        undo.push(['rootfs mount', () => unmountAll(rootfs, { detach: true })]);

        const { spec, notes } = await containerSpec({
          id,
          sandbox: sandboxRef(sandbox),
          config,
          image: { config: image.config },
          imageName: imageRef,
          rootfs,
          host: await this.hostFacts(),
          passwd: rootfsPasswd(rootfs),
          targetPid: this.targetPid(config, sandbox),
        });
        for (const note of notes) log.info({ note }, 'container spec note');
        lap('spec');

        const created = await this.runtime.create({
          id,
          handler: sandbox.handler,
          bundle,
          spec,
          // Without a log path (no pod log directory or container log path) the output is dropped.
          logPath: logPath === '' ? NO_LOG : logPath,
          tty: config.tty,
          stdin: config.stdin,
          stdinOnce: config.stdinOnce,
        });
        undo.push(['runtime container', () => this.runtime.delete(id)]);
        lap('runtime');
        // The pod may have been stopped or removed meanwhile; a container must not outlive its pod's removal.
        if (this.sandboxes.get(sandbox.id)?.state !== 'ready') {
          throw new BerthError('failed-precondition', 'ERR_CRI_SANDBOX_NOT_READY', `pod sandbox ${sandbox.id} stopped while container ${id} was being created`, {
            context: { sandbox: sandbox.id, container: id },
          });
        }

        const record: ContainerRecord = {
          id,
          sandboxId: sandbox.id,
          name,
          config,
          image: { id: image.id, ref: image.id, userSpecified: imageRef },
          state: 'created',
          createdAt,
          startedAt: 0n,
          finishedAt: 0n,
          exitCode: 0,
          reason: '',
          message: '',
          pid: created.pid,
          logPath,
          snapshotKey,
          rootfs,
          bundle,
          handler: sandbox.handler,
          mounts: config.mounts,
          resources: config.linux?.resources,
          stopSignal: criSignalName(config.stopSignal) || image.config.stopSignal || '',
        };
        this.containers.add(record);
        lap('stored');
        log.info({ name, image: imageRef, pid: created.pid, ms }, 'container created');
        this.emit(id, sandbox.id, ContainerEventType.CONTAINER_CREATED_EVENT);
        return id;
      });
    } catch (err) {
      for (const [what, step] of undo.reverse()) {
        try {
          await step();
        } catch (undoErr) {
          log.error({ err: errorMessage(undoErr), step: what }, 'cannot undo a step of a failed container create');
        }
      }
      this.containers.names.release(name, id);
      throw err;
    }
  }

  private sandbox(idOrPrefix: string): SandboxRecord {
    if (idOrPrefix === '') throw invalid('ERR_CRI_SANDBOX_ID_EMPTY', 'pod sandbox id must not be empty');
    return this.sandboxes.resolve(idOrPrefix);
  }

  /** The pid of the container a TARGET pid namespace names. */
  private targetPid(config: ContainerConfig, sandbox: SandboxRecord): number | undefined {
    const ns = config.linux?.securityContext?.namespaceOptions;
    if (ns?.pid !== NamespaceMode.TARGET) return undefined;
    const target = this.containers.find(ns.targetId);
    if (target === undefined || target.sandboxId !== sandbox.id) {
      throw new BerthError('not-found', 'ERR_CRI_TARGET_NOT_FOUND', `target container ${JSON.stringify(ns.targetId)} of the pid namespace is not in pod ${sandbox.id}`, {
        context: { target: ns.targetId, sandbox: sandbox.id },
      });
    }
    if (target.state !== 'running' || target.pid <= 0) {
      throw new BerthError('failed-precondition', 'ERR_CRI_TARGET_NOT_RUNNING', `target container ${target.id} of the pid namespace is not running`, {
        context: { target: target.id },
      });
    }
    return target.pid;
  }

  private hostFacts(): Promise<HostFacts> {
    this.host ??= hostFacts().catch((err: unknown) => {
      this.host = undefined;
      throw err;
    });
    return this.host;
  }

  // ---- start / stop / remove --------------------------------------------

  async start(idOrPrefix: string): Promise<void> {
    const { id } = this.containers.resolve(idOrPrefix);
    await this.lock.run(id, async () => {
      const current = this.current(id);
      if (current.state !== 'created') {
        throw new BerthError('failed-precondition', 'ERR_CRI_CONTAINER_NOT_CREATED', `container ${id} is ${current.state}, only a created container can start`, {
          context: { container: id, state: current.state },
        });
      }
      const sandbox = this.sandboxes.get(current.sandboxId);
      if (sandbox === undefined || sandbox.state !== 'ready') {
        throw new BerthError('failed-precondition', 'ERR_CRI_SANDBOX_NOT_READY', `pod sandbox ${current.sandboxId} of container ${id} is not ready`, {
          context: { container: id, sandbox: current.sandboxId },
        });
      }
      const started = this.runtime.start(id);
      const bookkeeping = started.then(
        () => {
          const now = nowNs();
          this.containers.update(id, (r) => ({ ...r, state: 'running', startedAt: now }));
          this.emit(id, current.sandboxId, ContainerEventType.CONTAINER_STARTED_EVENT);
        },
        (err: unknown) => {
          if (this.containers.get(id)?.finishedAt === 0n) {
            this.containers.update(id, (r) => ({
              ...r,
              state: 'exited',
              finishedAt: nowNs(),
              exitCode: START_ERROR_EXIT_CODE,
              reason: START_ERROR_REASON,
              message: errorMessage(err),
            }));
            this.emit(id, current.sandboxId, ContainerEventType.CONTAINER_STOPPED_EVENT);
          }
          throw err;
        },
      );
      this.starting.set(id, bookkeeping);
      try {
        await bookkeeping;
      } finally {
        this.starting.delete(id);
      }
    });
  }

  /**
   * Sends the stop signal (the container's, else SIGTERM), then SIGKILL after
   * `timeoutSec` (0: at once), and returns once the exit is recorded. Fine for
   * a container that is not running or not known (as critest's idempotence
   * specs want).
   */
  async stopContainer(idOrPrefix: string, timeoutSec: number): Promise<void> {
    if (idOrPrefix === '') throw invalid('ERR_CRI_CONTAINER_ID_EMPTY', 'container id must not be empty');
    const found = this.containers.find(idOrPrefix);
    if (found === undefined) return;
    await this.lock.run(found.id, () => this.stopLocked(found.id, timeoutSec));
  }

  private async stopLocked(id: string, timeoutSec: number): Promise<void> {
    const current = this.containers.get(id);
    if (current === undefined || (current.state !== 'running' && current.state !== 'unknown')) return;
    try {
      await this.runtime.stop(id, Math.max(0, timeoutSec), current.stopSignal || undefined);
    } catch (err) {
      if (!(isBerthError(err) && err.kind === 'not-found')) throw err;
      // The runtime has no such container (it vanished with its monitor): it is not running.
      await this.settle(id, { exitCode: UNKNOWN_EXIT_CODE, exitedAt: new Date(), oomKilled: false });
      return;
    }
    await this.settle(id);
    if (this.containers.get(id)?.finishedAt === 0n) {
      throw new BerthError('internal', 'ERR_CRI_STOP_NO_EXIT', `container ${id} was stopped but the runtime reports no exit`, { context: { container: id } });
    }
  }

  /** Stops (at once) if needed and removes the container and everything it holds; an unknown id is fine. */
  async removeContainer(idOrPrefix: string): Promise<void> {
    if (idOrPrefix === '') throw invalid('ERR_CRI_CONTAINER_ID_EMPTY', 'container id must not be empty');
    const found = this.containers.find(idOrPrefix);
    if (found === undefined) return;
    const id = found.id;
    await this.lock.run(id, async () => {
      const current = this.containers.get(id);
      if (current === undefined) return;
      await this.stopLocked(id, 0);
      await this.runtime.delete(id);
      await unmountAll(current.rootfs, { detach: true });
      try {
        await this.deps.snapshotter.remove(current.snapshotKey);
      } catch (err) {
        if (!(isBerthError(err) && err.kind === 'not-found')) throw err;
      }
      await rm(current.bundle, { recursive: true, force: true });
      this.containers.delete(id);
      this.cpuSamples.delete(id);
      this.log.info({ container: id }, 'container removed');
      this.emit(id, current.sandboxId, ContainerEventType.CONTAINER_DELETED_EVENT);
    });
  }

  // ---- exits -------------------------------------------------------------

  private onTaskExit(event: TaskExitEvent): void {
    if (this.containers.get(event.id) === undefined) return;
    this.settle(event.id, event).catch((err: unknown) => this.log.error({ container: event.id, err: errorMessage(err) }, 'cannot record a container exit'));
  }

  /**
   * Records the container's exit once: `exit` when the caller knows it, else
   * what the runtime reports (nothing when it has not exited).
   */
  private settle(id: string, exit?: ExitInfo): Promise<void> {
    const inFlight = this.settling.get(id);
    if (inFlight !== undefined) {
      // One that asked the runtime may have found nothing yet: a known exit is applied after it.
      return exit === undefined ? inFlight : inFlight.catch(() => undefined).then(() => this.settle(id, exit));
    }
    const work = (async () => {
      await this.starting.get(id)?.catch(() => undefined);
      const before = this.containers.get(id);
      if (before === undefined || before.finishedAt !== 0n) return;
      const status = exit ?? (await this.runtime.exitStatus(id));
      if (status === undefined) return;
      const message = await readTerminationMessage({ annotations: before.config.annotations, mounts: before.mounts, rootfs: before.rootfs });
      const current = this.containers.get(id);
      if (current === undefined || current.finishedAt !== 0n) return;
      const finishedAt = dateNs(status.exitedAt);
      this.containers.update(id, (r) => ({
        ...r,
        state: 'exited',
        finishedAt,
        startedAt: r.startedAt !== 0n && r.startedAt > finishedAt ? finishedAt : r.startedAt,
        exitCode: status.exitCode,
        reason: reasonOf(status),
        message,
      }));
      this.log.info({ container: id, exitCode: status.exitCode, oomKilled: status.oomKilled }, 'container exited');
      this.emit(id, current.sandboxId, ContainerEventType.CONTAINER_STOPPED_EVENT);
    })().finally(() => this.settling.delete(id));
    this.settling.set(id, work);
    return work;
  }

  /**
   * After a restart: has the runtime watch every container that may still
   * run (an exit while berthd was down is published then, and recorded), and
   * marks those the runtime no longer knows as unknown.
   */
  async recover(): Promise<void> {
    await Promise.all(
      this.containers.list().map(async (c) => {
        if (c.state === 'exited') return;
        try {
          await this.runtime.recover(c.id, c.handler);
          const state = await this.runtime.state(c.id);
          if (state === 'stopped') await this.settle(c.id);
          else if (state === 'unknown' && this.containers.get(c.id)?.finishedAt === 0n) this.containers.patch(c.id, { state: 'unknown' });
        } catch (err) {
          this.log.error({ container: c.id, err: errorMessage(err) }, 'cannot recover a container');
          if (this.containers.get(c.id)?.finishedAt === 0n) this.containers.patch(c.id, { state: 'unknown' });
        }
      }),
    );
    await Promise.all([...this.settling.values()].map((p) => p.catch(() => undefined)));
  }

  // ---- reads -------------------------------------------------------------

  /** The records a ListContainers filter selects (the RPC encodes them through containerList). */
  list(filter: ContainerFilter | undefined): ContainerRecord[] {
    let state: ContainerRecord['state'] | undefined;
    if (filter?.state !== undefined) {
      state = recordStateOf(filter.state.state);
      if (state === undefined) return [];
    }
    return this.containers
      .filter({
        id: filter?.id ?? '',
        state,
        sandboxId: this.sandboxIdOf(filter?.podSandboxId ?? ''),
        labelSelector: filter?.labelSelector,
      });
  }

  /** A pod id filter as a full id (a unique prefix resolved); what was given when it resolves to none. */
  private sandboxIdOf(idOrPrefix: string): string {
    if (idOrPrefix === '') return '';
    try {
      return this.sandboxes.find(idOrPrefix)?.id ?? idOrPrefix;
    } catch {
      return idOrPrefix;
    }
  }

  status(idOrPrefix: string, verbose: boolean): ContainerStatusResponse {
    const record = this.containers.resolve(idOrPrefix);
    const info: Record<string, string> = {};
    if (verbose) info['info'] = JSON.stringify(this.verboseInfo(record));
    return { status: toCriStatus(record), info };
  }

  private verboseInfo(record: ContainerRecord): object {
    const sandbox = this.sandboxes.get(record.sandboxId);
    return {
      sandboxID: record.sandboxId,
      name: record.name,
      pid: record.pid,
      snapshotKey: record.snapshotKey,
      rootfs: record.rootfs,
      bundle: record.bundle,
      runtimeHandler: record.handler,
      image: record.image,
      stopSignal: record.stopSignal || 'SIGTERM',
      cgroupsPath: sandbox === undefined ? undefined : cgroupsPath(sandbox.config.linux?.cgroupParent ?? '', record.id),
      config: ContainerConfig.toJSON(record.config),
    };
  }

  // ---- update / log / exec ----------------------------------------------

  async updateResources(idOrPrefix: string, linux: LinuxContainerResources | undefined): Promise<void> {
    const { id } = this.containers.resolve(idOrPrefix);
    if (linux === undefined) return;
    await this.lock.run(id, async () => {
      const current = this.current(id);
      const resources: OciResources = { devices: [], ...containerResources(linux, await this.hostFacts(), []) };
      if (current.state === 'created' || current.state === 'running') await this.runtime.update(id, resources);
      // oom_score_adj is fixed at create (the runtime cannot change it later).
      const kept: LinuxContainerResources = { ...linux, oomScoreAdj: current.resources?.oomScoreAdj ?? 0n };
      this.containers.update(id, (r) => ({ ...r, resources: kept }));
    });
  }

  async reopenLog(idOrPrefix: string): Promise<void> {
    const record = this.containers.resolve(idOrPrefix);
    this.requireRunning(record, 'reopen its log');
    if (record.logPath === '') {
      throw new BerthError('failed-precondition', 'ERR_CRI_CONTAINER_NO_LOG', `container ${record.id} has no log file`, { context: { container: record.id } });
    }
    await this.runtime.reopenLog(record.id);
  }

  async execSync(idOrPrefix: string, cmd: string[], timeoutSec: number, signal?: AbortSignal): Promise<ExecSyncResponse> {
    const record = this.containers.resolve(idOrPrefix);
    if (cmd.length === 0) throw invalid('ERR_CRI_EXEC_NO_COMMAND', 'ExecSync needs a command', { container: record.id });
    this.requireRunning(record, 'exec in it');
    const timeout = Math.max(0, timeoutSec);
    const r = await this.runtime.exec(record.id, { cmd, timeoutSec: timeout, maxOutputBytes: EXEC_SYNC_MAX_OUTPUT }, signal);
    if (r.timedOut) {
      // kubelet takes DEADLINE_EXCEEDED as a timed-out probe; the text is containerd's.
      throw new BerthError('deadline-exceeded', 'ERR_CRI_EXEC_TIMEOUT', `timeout ${timeout}s exceeded: command ${JSON.stringify(cmd)} in container ${record.id} did not finish`, {
        context: { container: record.id, timeoutSec: timeout },
      });
    }
    return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
  }

  private requireRunning(record: ContainerRecord, what: string): void {
    if (record.state !== 'running') {
      throw new BerthError('failed-precondition', 'ERR_CRI_CONTAINER_NOT_RUNNING', `container ${record.id} is ${record.state}: cannot ${what}`, {
        context: { container: record.id, state: record.state },
      });
    }
  }

  // ---- stats -------------------------------------------------------------

  async stats(idOrPrefix: string): Promise<ContainerStats> {
    return this.statsOf(this.containers.resolve(idOrPrefix));
  }

  async listStats(filter: ContainerStatsFilter | undefined): Promise<ContainerStats[]> {
    const records = this.containers.filter({
      id: filter?.id ?? '',
      sandboxId: this.sandboxIdOf(filter?.podSandboxId ?? ''),
      labelSelector: filter?.labelSelector,
    });
    const out = await Promise.all(
      records.map((r) =>
        this.statsOf(r).catch((err: unknown) => {
          // Removed while being read: leave it out.
          if (this.containers.get(r.id) === undefined) return undefined;
          throw err;
        }),
      ),
    );
    return out.filter((s): s is ContainerStats => s !== undefined);
  }

  /** Stats of every container of a pod, for PodSandboxStats. */
  async containerStats(sandboxId: string): Promise<ContainerStats[]> {
    return this.listStats({ id: '', podSandboxId: sandboxId, labelSelector: {} });
  }

  /** Statuses of every container of a pod, for PodSandboxStatus. */
  containerStatuses(sandboxId: string): ContainerStatus[] {
    return this.containers.bySandbox(sandboxId).map(toCriStatus);
  }

  private async statsOf(record: ContainerRecord): Promise<ContainerStats> {
    const out: ContainerStats = { attributes: attributesOf(record) };
    const sandbox = this.sandboxes.get(record.sandboxId);
    const [cgroup, usage, mountpoint] = await Promise.all([
      record.state === 'running' && sandbox !== undefined ? this.cgroupStats(record.id, cgroupsPath(sandbox.config.linux?.cgroupParent ?? '', record.id)) : undefined,
      this.deps.snapshotter.usage(record.snapshotKey),
      this.imageFsMountpoint(),
    ]);
    if (cgroup !== undefined) Object.assign(out, cgroupSections(cgroup.current, cgroup.previous));
    out.writableLayer = {
      timestamp: nowNs(),
      fsId: { mountpoint },
      usedBytes: { value: BigInt(usage.size) },
      inodesUsed: { value: BigInt(usage.inodes) },
    };
    return out;
  }

  private async cgroupStats(id: string, path: string): Promise<{ current: CgroupStats; previous: CpuSample | undefined } | undefined> {
    let current: CgroupStats;
    try {
      current = await readStats(path);
    } catch (err) {
      // The container exited between the state check and the read.
      if (isBerthError(err) && err.code === 'ERR_CGROUP_NOT_FOUND') return undefined;
      throw err;
    }
    const previous = this.cpuSamples.get(id);
    if (current.cpu !== undefined && this.containers.get(id) !== undefined) this.cpuSamples.set(id, { timestampNs: current.timestampNs, cpu: current.cpu });
    return { current, previous };
  }

  private imageFsMountpoint(): Promise<string> {
    this.fsMountpoint ??= this.deps.snapshotter.fsInfo().then(
      (info) => info.mountpoint,
      (err: unknown) => {
        this.fsMountpoint = undefined;
        throw err;
      },
    );
    return this.fsMountpoint;
  }

  // ---- events ------------------------------------------------------------

  /** Calls `fn` with every container lifecycle event (of containers and sandboxes) from now on; returns the unsubscriber. */
  subscribeEvents(fn: (event: ContainerEventResponse) => void): () => void {
    return this.deps.events.subscribe<ContainerEventResponse>({ topics: CONTAINER_EVENT_TOPICS }, (envelope) => fn(envelope.event));
  }

  private emit(containerId: string, sandboxId: string, type: ContainerEventType): void {
    const sandbox = this.sandboxes.get(sandboxId);
    publishContainerEvent(this.deps.events, {
      containerId,
      containerEventType: type,
      createdAt: nowNs(),
      podSandboxStatus: sandbox === undefined ? undefined : toPodSandboxStatus(sandbox),
      containersStatuses: this.containers.bySandbox(sandboxId).map(toCriStatus),
    });
  }

  private current(id: string): ContainerRecord {
    const record = this.containers.get(id);
    if (record === undefined) {
      throw new BerthError('not-found', 'ERR_CRI_CONTAINER_NOT_FOUND', `container ${id} not found`, { context: { container: id } });
    }
    return record;
  }
}

/** What spec generation needs of the sandbox. */
function sandboxRef(sandbox: SandboxRecord): SandboxRef {
  return {
    id: sandbox.id,
    config: sandbox.config,
    pid: sandbox.pid,
    netnsPath: sandbox.netnsPath === '' ? undefined : sandbox.netnsPath,
    resolvConfPath: sandbox.resolvConfPath,
    hostsPath: sandbox.hostsPath,
    hostnamePath: sandbox.hostnamePath,
    shmPath: sandbox.shmPath,
  };
}
