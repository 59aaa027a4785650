/**
 * Pod sandboxes: RunPodSandbox, StopPodSandbox, RemovePodSandbox, their
 * status, listing and stats, the pause container's exit, and recovery after
 * a restart. Reads are answered from the SandboxStore's memory; every change
 * is written through before the RPC answers.
 */
import { mkdir, readdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { bandwidthFromAnnotations, type NetnsManager, type PodNetwork, type PodNetworkParams, type PodNetworkSetup } from '../../cni/index.js';
import { BerthError, errorMessage, isBerthError } from '../../core/errors.js';
import { Topic, type EventExchange, type TaskExitEvent } from '../../core/events/index.js';
import type { ImageRecord, ImageStore } from '../../core/images/index.js';
import type { Logger } from '../../core/log.js';
import { unmountAllUnder } from '../../core/mountinfo.js';
import { readStats, type CgroupStats } from '../../core/runtime/cgroups/index.js';
import type { OciRuntime } from '../../core/runtime/index.js';
import { cgroupsPath, rootfsPasswd, sandboxSpec, type HostFacts } from '../../core/runtime/spec/index.js';
import { namespaceModes } from '../../core/runtime/spec/namespaces.js';
import { mount, unmount, type Snapshotter } from '../../core/snapshotter/index.js';
import {
  ContainerEventType,
  NamespaceMode,
  type ContainerStats,
  type ContainerStatus,
  type ListPodSandboxStatsRequest,
  type PodSandboxConfig,
  type PodSandboxFilter,
  type PodSandboxStats,
  type PodSandboxStatusResponse,
  type RunPodSandboxRequest,
} from '../../generated/api.js';
import { publishContainerEvent } from '../container/events.js';
import { newId, nowNs, sandboxName, type ContainerStore, type SandboxRecord, type SandboxStore } from '../store/index.js';
import { DEFAULT_HOST_FILES, makeShmDir, mountShm, shmMountCommand, unmountShm, writePodFiles, type HostFiles, type PodFiles } from './files.js';
import { KeyedLock } from '../container/keyed-lock.js';
import { UndoStack } from './undo.js';
import { cgroupSections } from '../container/stats.js';
import { networkUsageOf, processUsageOf } from './stats.js';
import { recordState, toCriStatus, verboseInfo } from './status.js';

/** What the sandbox service needs done to a pod's containers (the container service provides it). */
export interface PodContainerOps {
  /** Stops a container (timeout 0: kill at once); a stopped or unknown one is fine. */
  stopContainer(id: string, timeoutSec: number): Promise<void>;
  /** Removes a container with its rootfs, snapshot and record; an unknown one is fine. */
  removeContainer(id: string): Promise<void>;
  /** The pod's containers' stats, for PodSandboxStats. */
  containerStats?(sandboxId: string): Promise<ContainerStats[]>;
  /** The pod's containers' statuses, for PodSandboxStatusResponse.containers_statuses. */
  containerStatuses?(sandboxId: string): ContainerStatus[];
}

export interface SandboxServiceOptions {
  log: Logger;
  sandboxes: SandboxStore;
  containers: ContainerStore;
  runtime: OciRuntime;
  events: EventExchange;
  images: ImageStore;
  snapshotter: Snapshotter;
  network: PodNetwork;
  /** Whether CNI has a network to attach pods to (pods without host network need one). */
  networkStatus: () => { ready: boolean; message?: string };
  netns: NetnsManager;
  /** Pod CIDRs from UpdateRuntimeConfig (CNI ipRanges). */
  podCidrs: () => readonly string[];
  /** Reference of the pause image. */
  sandboxImage: string;
  /** Root-side dir of sandboxes (hostname, hosts, resolv.conf). */
  rootDir: string;
  /** State-side dir of sandboxes (bundle, rootfs mount, shm). */
  stateDir: string;
  host: HostFacts;
  hostFiles?: HostFiles;
}

/** Interface whose counters are the pod's network stats. */
const DEFAULT_INTERFACE = 'eth0';

const SANDBOX_ID = /^[0-9a-f]{64}$/;

function snapshotKeyOf(id: string): string {
  return `sandbox-${id}`;
}

function nsOf(date: Date): bigint {
  return BigInt(date.getTime()) * 1_000_000n;
}

function isRuntimeNotFound(err: unknown): boolean {
  return isBerthError(err) && err.code === 'ERR_RUNTIME_NOT_FOUND';
}

export class SandboxService {
  private readonly log: Logger;
  private readonly store: SandboxStore;
  private readonly lock = new KeyedLock();
  private readonly hostFiles: HostFiles;
  /** Sandboxes being made: an exit of their pause container before the record exists waits here. */
  private readonly inflight = new Map<string, TaskExitEvent | undefined>();
  /** The last pod cgroup read per sandbox, for CPU rates. */
  private readonly lastStats = new Map<string, CgroupStats>();
  private pulling: Promise<ImageRecord> | undefined;
  private containerOps: PodContainerOps | undefined;
  private readonly unsubscribe: () => void;

  constructor(private readonly opts: SandboxServiceOptions) {
    this.log = opts.log;
    this.store = opts.sandboxes;
    this.hostFiles = opts.hostFiles ?? DEFAULT_HOST_FILES;
    this.unsubscribe = opts.events.subscribe<TaskExitEvent>({ topics: [Topic.TaskExit] }, (e) => this.onExit(e.event));
  }

  /** Hands over how to stop and remove a pod's containers (done once at start-up). */
  setContainerOps(ops: PodContainerOps): void {
    this.containerOps = ops;
  }

  private ops(): PodContainerOps {
    if (this.containerOps === undefined) {
      throw new BerthError('internal', 'ERR_SANDBOX_NO_CONTAINER_OPS', 'the sandbox service was not given the container service');
    }
    return this.containerOps;
  }

  private onExit(e: TaskExitEvent): void {
    if (this.inflight.has(e.id)) {
      this.inflight.set(e.id, e);
      return;
    }
    const rec = this.store.get(e.id);
    if (rec === undefined) return;
    this.markExited(rec.id, e);
  }

  private markExited(id: string, e: TaskExitEvent): void {
    try {
      const rec = this.store.patch(id, { state: 'notready', exitCode: e.exitCode, exitedAt: nsOf(e.exitedAt) });
      this.log.info({ sandbox: id, exitCode: e.exitCode }, 'sandbox container exited');
      this.emit(rec, ContainerEventType.CONTAINER_STOPPED_EVENT);
    } catch (err) {
      this.log.error({ sandbox: id, err: errorMessage(err) }, 'cannot record the sandbox container exit');
    }
  }

  /** A lifecycle event of the sandbox for GetContainerEvents (container id = sandbox id, as containerd sends them). */
  private emit(rec: SandboxRecord, type: ContainerEventType): void {
    publishContainerEvent(this.opts.events, {
      containerId: rec.id,
      containerEventType: type,
      createdAt: nowNs(),
      podSandboxStatus: toCriStatus(rec),
      containersStatuses: this.containerOps?.containerStatuses?.(rec.id) ?? [],
    });
  }

  /** The pause image, pulled (once, shared by concurrent callers) when missing. */
  private async pauseImage(): Promise<ImageRecord> {
    const have = this.opts.images.get(this.opts.sandboxImage);
    if (have !== undefined) return have;
    this.pulling ??= this.opts.images.pull(this.opts.sandboxImage).finally(() => {
      this.pulling = undefined;
    });
    return this.pulling;
  }

  async run(req: RunPodSandboxRequest, signal?: AbortSignal): Promise<string> {
    const config = req.config;
    const meta = config?.metadata;
    if (config === undefined || meta === undefined || meta.name === '' || meta.namespace === '' || meta.uid === '') {
      throw new BerthError('invalid-argument', 'ERR_SANDBOX_METADATA', 'RunPodSandbox needs a config with metadata name, namespace and uid');
    }
    const handler = this.opts.runtime.handler(req.runtimeHandler);
    const id = newId();
    const name = sandboxName(meta);
    this.store.names.reserve(name, id);
    const undo = new UndoStack();
    undo.push('name reservation', () => this.store.names.release(name, id));
    this.inflight.set(id, undefined);
    const started = performance.now();
    try {
      const record = await this.make(id, name, config, req.runtimeHandler, handler.name, undo, signal);
      const persistFrom = performance.now();
      this.store.add(record);
      const persistMs = Math.round((performance.now() - persistFrom) * 10) / 10;
      this.emit(record, ContainerEventType.CONTAINER_CREATED_EVENT);
      this.emit(record, ContainerEventType.CONTAINER_STARTED_EVENT);
      const exit = this.inflight.get(id);
      if (exit !== undefined) this.markExited(id, exit);
      this.log.info({ sandbox: id, name, ips: record.ips, ms: Math.round(performance.now() - started), persistMs }, 'sandbox running');
      return id;
    } catch (err) {
      await undo.unwind((what, undoErr) =>
        this.log.error({ sandbox: id, step: what, err: errorMessage(undoErr) }, 'undoing a failed RunPodSandbox step failed'),
      );
      throw err;
    } finally {
      this.inflight.delete(id);
    }
  }

  /**
   * Makes everything of a sandbox, pushing the undo of each step; the record
   * to store. Independent steps overlap: the namespace, the rootfs mount and
   * the shm mount at once; then CNI ADD (needs the namespace) alongside the
   * pause container's spec, create and start (needs all three). Step times
   * (ms since the start) go to the debug log.
   */
  private async make(
    id: string,
    name: string,
    config: PodSandboxConfig,
    runtimeHandler: string,
    handler: string,
    undo: UndoStack,
    signal: AbortSignal | undefined,
  ): Promise<SandboxRecord> {
    const t0 = performance.now();
    const steps: Record<string, number> = {};
    const mark = (step: string): void => {
      steps[step] = Math.round((performance.now() - t0) * 10) / 10;
    };
    const modes = namespaceModes(config.linux?.securityContext?.namespaceOptions);
    const hostNetwork = modes.network === NamespaceMode.NODE;
    if (!hostNetwork) {
      const net = this.opts.networkStatus();
      if (!net.ready) {
        throw new BerthError('failed-precondition', 'ERR_SANDBOX_NETWORK_NOT_READY', `cannot set up the pod network: ${net.message ?? 'CNI is not ready'}`, {
          context: { sandbox: id },
        });
      }
    }
    const image = await this.pauseImage();
    signal?.throwIfAborted();

    const dir = join(this.opts.rootDir, id);
    const stateDir = join(this.opts.stateDir, id);
    await Promise.all([mkdir(dir, { recursive: true, mode: 0o711 }), mkdir(stateDir, { recursive: true, mode: 0o711 })]);
    undo.push('sandbox dirs', () => Promise.all([rm(dir, { recursive: true, force: true }), rm(stateDir, { recursive: true, force: true })]).then(() => {}));
    const shmPath = modes.ipc === NamespaceMode.NODE ? '' : join(stateDir, 'shm');
    const rootfs = join(stateDir, 'rootfs');

    const filesStep = writePodFiles(dir, config.hostname, config.dnsConfig, this.hostFiles);
    // A pod with its own network and IPC gets both from one spawn: unshare mounts the shm once the netns is pinned.
    const shmWithNetns = !hostNetwork && shmPath !== '';
    const netnsStep = hostNetwork
      ? Promise.resolve('')
      : (shmWithNetns ? makeShmDir(shmPath) : Promise.resolve())
          .then(() => {
            // Pushed first: whatever part of the mount happened, unmounting is harmless.
            if (shmWithNetns) undo.push('shm mount', () => unmountShm(shmPath));
            return this.opts.netns.create(id, shmWithNetns ? { alsoRun: shmMountCommand(shmPath) } : {});
          })
          .then((path) => {
            undo.push('network namespace', () => this.opts.netns.remove(path));
            mark('netns');
            return path;
          });
    const shmStep =
      shmPath === ''
        ? Promise.resolve()
        : shmWithNetns
          ? netnsStep.then(() => undefined)
          : mountShm(shmPath).then(() => {
              undo.push('shm mount', () => unmountShm(shmPath));
              mark('shm');
            });
    const rootfsStep = this.mountRootfs(id, image, rootfs, undo, mark).then(() => mark('rootfs'));
    const networkStep = hostNetwork
      ? Promise.resolve(undefined)
      : netnsStep.then(async (netnsPath) => {
          const setup = await this.setupNetwork(id, config, netnsPath, undo, signal);
          mark('cni');
          return setup;
        });
    const containerStep = Promise.all([filesStep, netnsStep, shmStep, rootfsStep]).then(([files, netnsPath]) =>
      this.startPause(id, config, handler, image, { rootfs, stateDir, files, shmPath, netnsPath, hostNetwork }, undo, mark),
    );
    // Every step settles (and has pushed its undo) before a failure unwinds them.
    const settled = await Promise.allSettled([filesStep, netnsStep, shmStep, rootfsStep, networkStep, containerStep]);
    mark('total');
    this.log.debug({ sandbox: id, steps }, 'sandbox step times (ms)');
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
    const [files, netnsPath, net, pid] = await Promise.all([filesStep, netnsStep, networkStep, containerStep]);

    return {
      id,
      name,
      config,
      runtimeHandler,
      handler,
      state: 'ready',
      createdAt: nowNs(),
      hostNetwork,
      netnsPath,
      network: net?.record,
      ips: net?.ips ?? [],
      pid,
      image: { id: image.id, ref: this.opts.sandboxImage },
      snapshotKey: snapshotKeyOf(id),
      rootfs,
      dir,
      stateDir,
      ...files,
      shmPath,
    };
  }

  private networkParams(id: string, config: PodSandboxConfig, netnsPath: string): PodNetworkParams {
    const meta = config.metadata!;
    const dns = config.dnsConfig;
    return {
      podId: id,
      namespace: meta.namespace,
      name: meta.name,
      uid: meta.uid,
      netnsPath,
      portMappings: config.portMappings.map((p) => ({ containerPort: p.containerPort, hostPort: p.hostPort, protocol: p.protocol, hostIp: p.hostIp })),
      bandwidth: bandwidthFromAnnotations(config.annotations),
      ...(dns === undefined ? {} : { dns: { servers: dns.servers, searches: dns.searches, options: dns.options } }),
      podCidrs: this.opts.podCidrs(),
    };
  }

  private async setupNetwork(id: string, config: PodSandboxConfig, netnsPath: string, undo: UndoStack, signal: AbortSignal | undefined): Promise<PodNetworkSetup> {
    const params = this.networkParams(id, config, netnsPath);
    const setup = await this.opts.network.setup(params, signal === undefined ? {} : { signal });
    undo.push('pod network', () => this.opts.network.teardown(setup.record));
    return setup;
  }

  /** An active snapshot of the pause image mounted at `rootfs`. */
  private async mountRootfs(id: string, image: ImageRecord, rootfs: string, undo: UndoStack, mark: (step: string) => void): Promise<void> {
    const { snapshotter } = this.opts;
    const key = snapshotKeyOf(id);
    // The mount point is made while the snapshot is prepared.
    const [prepared, dir] = await Promise.allSettled([
      snapshotter.prepare(key, image.chainId, { labels: { 'berth.io/sandbox': id } }),
      mkdir(rootfs, { mode: 0o755 }),
    ]);
    if (prepared.status === 'fulfilled') undo.push('rootfs snapshot', () => snapshotter.remove(key));
    if (prepared.status === 'rejected') throw prepared.reason;
    if (dir.status === 'rejected') throw dir.reason;
    mark('snapshot');
    await mount(prepared.value, rootfs);
    undo.push('rootfs mount', () => unmount(rootfs, { detach: true }));
  }

  /** The pause container: spec, create under its monitor, start; its pid. */
  private async startPause(
    id: string,
    config: PodSandboxConfig,
    handler: string,
    image: ImageRecord,
    where: { rootfs: string; stateDir: string; files: PodFiles; shmPath: string; netnsPath: string; hostNetwork: boolean },
    undo: UndoStack,
    mark: (step: string) => void,
  ): Promise<number> {
    const { runtime } = this.opts;
    const { spec, notes } = await sandboxSpec({
      id,
      config,
      image: { config: image.config },
      imageName: this.opts.sandboxImage,
      rootfs: where.rootfs,
      host: this.opts.host,
      passwd: rootfsPasswd(where.rootfs),
      netnsPath: where.hostNetwork ? undefined : where.netnsPath,
      resolvConfPath: where.files.resolvConfPath,
      shmPath: where.shmPath,
    });
    for (const note of notes) this.log.info({ sandbox: id, note }, 'sandbox spec note');
    mark('spec');
    const { pid } = await runtime.create({
      id,
      handler,
      bundle: where.stateDir,
      spec,
      logPath: join(where.stateDir, 'pause.log'),
      tty: false,
      stdin: false,
      stdinOnce: false,
    });
    undo.push('sandbox container', () => runtime.delete(id));
    mark('create');
    await runtime.start(id);
    mark('start');
    return pid;
  }

  /**
   * Stops the pod's containers and its pause container, tears its network
   * down and unmounts its shm. Idempotent; an unknown id succeeds too (its
   * resources are all reclaimed), as containerd 2 answers.
   */
  async stop(idOrPrefix: string): Promise<void> {
    const rec = this.store.find(idOrPrefix);
    if (rec === undefined) return;
    await this.lock.run(rec.id, () => this.stopLocked(rec.id));
  }

  private async stopLocked(id: string): Promise<void> {
    const rec = this.store.get(id);
    if (rec === undefined) return;
    const live = this.opts.containers.bySandbox(id).filter((c) => c.state !== 'exited');
    if (live.length > 0) {
      const ops = this.ops();
      await Promise.all(live.map((c) => ops.stopContainer(c.id, 0)));
    }
    try {
      await this.opts.runtime.stop(id, 0, 'SIGKILL');
    } catch (err) {
      if (!isRuntimeNotFound(err)) throw err;
    }
    const network = async (): Promise<void> => {
      if (rec.network !== undefined) {
        await this.opts.network.teardown(rec.network);
        this.store.patch(id, { network: undefined, ips: [] });
      }
      if (rec.netnsPath !== '') await this.opts.netns.remove(rec.netnsPath);
    };
    const [net, shm] = await Promise.allSettled([network(), unmountShm(rec.shmPath)]);
    if (net.status === 'rejected') throw net.reason;
    if (shm.status === 'rejected') throw shm.reason;
    if (this.store.get(id)?.state !== 'notready') this.emit(this.store.patch(id, { state: 'notready' }), ContainerEventType.CONTAINER_STOPPED_EVENT);
    this.log.info({ sandbox: id }, 'sandbox stopped');
  }

  /**
   * Stops the sandbox if needed and removes its containers, its pause
   * container, rootfs, snapshot, dirs and record. An unknown id is fine.
   */
  async remove(idOrPrefix: string): Promise<void> {
    const found = this.store.find(idOrPrefix);
    if (found === undefined) return;
    const id = found.id;
    await this.lock.run(id, async () => {
      const rec = this.store.get(id);
      if (rec === undefined) return;
      await this.stopLocked(id);
      const containers = this.opts.containers.bySandbox(id);
      if (containers.length > 0) {
        const ops = this.ops();
        await Promise.all(containers.map((c) => ops.removeContainer(c.id)));
      }
      await this.opts.runtime.delete(id);
      const rootfs = async (): Promise<void> => {
        await unmount(rec.rootfs, { detach: true });
        await this.opts.snapshotter.remove(rec.snapshotKey).catch((err: unknown) => {
          if (!(isBerthError(err) && err.kind === 'not-found')) throw err;
        });
        await rm(rec.stateDir, { recursive: true, force: true });
      };
      await Promise.all([rootfs(), rm(rec.dir, { recursive: true, force: true })]);
      const last = this.store.get(id);
      this.store.delete(id);
      this.lastStats.delete(id);
      if (last !== undefined) this.emit(last, ContainerEventType.CONTAINER_DELETED_EVENT);
      this.log.info({ sandbox: id }, 'sandbox removed');
    });
  }

  status(idOrPrefix: string, verbose: boolean): PodSandboxStatusResponse {
    const rec = this.store.resolve(idOrPrefix);
    return {
      status: toCriStatus(rec),
      info: verbose ? verboseInfo(rec) : {},
      containersStatuses: this.containerOps?.containerStatuses?.(rec.id) ?? [],
      timestamp: nowNs(),
    };
  }

  /** The records a ListPodSandbox filter selects (the RPC encodes them through sandboxList). */
  list(filter: PodSandboxFilter | undefined): SandboxRecord[] {
    let state: SandboxRecord['state'] | undefined;
    if (filter?.state !== undefined) {
      state = recordState(filter.state.state);
      if (state === undefined) return [];
    }
    return this.store
      .filter({ id: filter?.id ?? '', ...(state === undefined ? {} : { state }), labelSelector: filter?.labelSelector ?? {} });
  }

  async stats(idOrPrefix: string): Promise<PodSandboxStats> {
    const rec = this.store.resolve(idOrPrefix);
    if (rec.state !== 'ready') {
      throw new BerthError('failed-precondition', 'ERR_SANDBOX_NOT_READY', `sandbox ${rec.id} is not ready: no stats`, { context: { sandbox: rec.id } });
    }
    return this.statsOf(rec);
  }

  async listStats(req: ListPodSandboxStatsRequest): Promise<PodSandboxStats[]> {
    const f = req.filter;
    const recs = this.store.filter({ id: f?.id ?? '', state: 'ready', labelSelector: f?.labelSelector ?? {} });
    const out = await Promise.all(
      recs.map((r) =>
        this.statsOf(r).catch((err: unknown) => {
          this.log.debug({ sandbox: r.id, err: errorMessage(err) }, 'no stats for sandbox');
          return undefined;
        }),
      ),
    );
    return out.filter((s): s is PodSandboxStats => s !== undefined);
  }

  private async statsOf(rec: SandboxRecord): Promise<PodSandboxStats> {
    const parent = rec.config.linux?.cgroupParent ?? '';
    // The pod cgroup is the parent kubelet made for the pod; without one, the pause container's own.
    const cgroup = parent !== '' ? parent : cgroupsPath('', rec.id);
    const stats = await readStats(cgroup);
    const previous = this.lastStats.get(rec.id);
    this.lastStats.set(rec.id, stats);
    const [network, containers] = await Promise.all([
      rec.hostNetwork || rec.pid <= 0 ? Promise.resolve(undefined) : networkUsageOf(rec.pid, DEFAULT_INTERFACE, stats.timestampNs),
      this.containerOps?.containerStats?.(rec.id) ?? Promise.resolve([]),
    ]);
    return {
      attributes: { id: rec.id, metadata: rec.config.metadata, labels: rec.config.labels, annotations: rec.config.annotations },
      linux: {
        ...cgroupSections(stats, previous),
        network,
        process: processUsageOf(stats),
        containers,
      },
      windows: undefined,
    };
  }

  /**
   * After a restart: watches every ready sandbox's pause container again.
   * One that exited while berthd was down is marked not ready by the exit
   * the runtime publishes; one the runtime no longer knows is marked not
   * ready here.
   */
  async recover(): Promise<void> {
    await this.removeOrphans();
    const ready = this.store.list().filter((r) => r.state === 'ready');
    await Promise.all(
      ready.map(async (rec) => {
        try {
          await this.opts.runtime.recover(rec.id, rec.handler);
        } catch (err) {
          if (!isRuntimeNotFound(err)) {
            this.log.error({ sandbox: rec.id, err: errorMessage(err) }, 'cannot recover the sandbox container');
          }
          this.store.patch(rec.id, { state: 'notready' });
        }
      }),
    );
    this.log.info({ sandboxes: this.store.size, ready: this.store.filter({ state: 'ready' }).length }, 'sandboxes recovered');
  }

  /**
   * Undoes what a RunPodSandbox cut short by a crash made (it stores its
   * record only at the end): sandbox dirs, netns files and pause containers
   * no record names. A netns named by a sandbox id gets a CNI DEL through
   * the loaded networks first, which frees what ADD took outside it (IPAM
   * addresses, host port rules).
   */
  private async removeOrphans(): Promise<void> {
    const known = new Set(this.store.list().map((r) => r.id));
    const knownNetns = new Set(this.store.list().map((r) => r.netnsPath));
    const ids = new Set<string>();
    for (const dir of [this.opts.rootDir, this.opts.stateDir]) {
      for (const name of await readdir(dir).catch(() => [] as string[])) if (SANDBOX_ID.test(name) && !known.has(name)) ids.add(name);
    }
    for (const file of await this.opts.netns.list()) {
      if (knownNetns.has(file)) continue;
      const name = basename(file);
      try {
        if (SANDBOX_ID.test(name) && (await this.opts.netns.exists(file))) {
          ids.add(name);
          await this.opts.network.teardown({ podId: name, namespace: '', name: '', uid: '', netnsPath: file });
        }
        await this.opts.netns.remove(file);
        this.log.info({ netns: file }, 'removed a network namespace no sandbox record names');
      } catch (err) {
        this.log.error({ netns: file, err: errorMessage(err) }, 'cannot remove an orphaned network namespace');
      }
    }
    for (const id of ids) {
      try {
        await this.opts.runtime.delete(id);
        await unmountAllUnder(join(this.opts.stateDir, id));
        await this.opts.snapshotter.remove(snapshotKeyOf(id)).catch((err: unknown) => {
          if (!(isBerthError(err) && err.kind === 'not-found')) throw err;
        });
        await Promise.all([rm(join(this.opts.stateDir, id), { recursive: true, force: true }), rm(join(this.opts.rootDir, id), { recursive: true, force: true })]);
        this.log.info({ sandbox: id }, 'removed the remains of a sandbox whose RunPodSandbox was cut short');
      } catch (err) {
        this.log.error({ sandbox: id, err: errorMessage(err) }, 'cannot remove the remains of an unfinished sandbox');
      }
    }
  }

  close(): void {
    this.unsubscribe();
  }
}
