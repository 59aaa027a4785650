/**
 * The `network.cni` plugin: keeps the CNI networks of the conf dir loaded
 * (plus the built-in loopback network), reloads them when the dir changes,
 * and says whether pod networking is ready, which CRI `Status` reports as
 * the NetworkReady condition.
 */
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { z } from 'zod';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { PluginType, type Closable, type Registration } from '../core/plugin/types.js';
import { loadConfDir, type CniNetwork, type ConfDirLoad } from './conf-loader.js';
import type { CniExecOptions } from './invoke.js';
import { LOOPBACK_IFNAME, loopbackNetwork } from './loopback.js';

export const cniConfigSchema = z.object({
  conf_dir: z
    .string()
    .default('/etc/cni/net.d')
    .describe('Directory of CNI network configs (.conf, .conflist, .json), loaded in lexical order and watched for changes.'),
  bin_dirs: z
    .array(z.string())
    .default(['/opt/cni/bin', '/usr/lib/cni'])
    .describe('Directories searched in order for CNI plugin binaries; also passed to plugins as CNI_PATH.'),
  max_conf_num: z
    .number()
    .int()
    .min(0)
    .default(1)
    .describe('Most networks to load from conf_dir, first files first; 0 loads them all.'),
});

export type CniConfig = z.infer<typeof cniConfigSchema>;

/** What the NetworkReady condition of CRI `Status` shows. */
export interface CniStatus {
  ready: boolean;
  reason?: string;
  message?: string;
}

export const NETWORK_NOT_READY_REASON = 'NetworkPluginNotReady';

/** Interface names of the conf-dir networks: eth0 for the first, eth1... (go-cni's convention). */
export const IFNAME_PREFIX = 'eth';

/** A network together with the interface name a sandbox gets in it. */
export interface CniAttachment {
  network: CniNetwork;
  ifName: string;
}

export type CniChangeListener = (networks: readonly CniNetwork[], status: CniStatus) => void;

export interface CniManagerOptions {
  confDir: string;
  binDirs: readonly string[];
  /** Most conf-dir networks to load; 0 or less loads all. */
  maxConfNum: number;
  log: Logger;
  /** Quiet period after a conf dir event before reloading. */
  debounceMs?: number;
}

const DEFAULT_DEBOUNCE_MS = 75;
/** How long to wait for the watcher's initial scan before loading anyway. */
const WATCH_READY_TIMEOUT_MS = 5_000;

function isInside(rel: string): boolean {
  return rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

/**
 * Watch only the conf dir's direct entries, and, while it is missing, the
 * chain of its ancestors (through which chokidar notices its creation).
 */
function scopeFilter(dir: string): (p: string) => boolean {
  return (p) => {
    const rel = path.relative(dir, p);
    if (rel === '') return false;
    if (isInside(rel)) return rel.includes(path.sep);
    return !isInside(path.relative(p, dir));
  };
}

/** The instance `network.cni` provides. */
export class CniNetworkManager implements Closable {
  readonly confDir: string;
  readonly binDirs: readonly string[];
  readonly maxConfNum: number;
  private readonly log: Logger;
  private readonly debounceMs: number;
  private watcher: FSWatcher | undefined;
  private current: ConfDirLoad;
  private readonly listeners = new Set<CniChangeListener>();
  private timer: NodeJS.Timeout | undefined;
  private reloading: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(opts: CniManagerOptions) {
    this.confDir = path.resolve(opts.confDir);
    this.binDirs = Object.freeze([...opts.binDirs]);
    this.maxConfNum = opts.maxConfNum;
    this.log = opts.log;
    this.debounceMs = opts.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    this.current = { dir: this.confDir, networks: [], skipped: [], missing: true };
  }

  /** Start watching the conf dir and load it once; resolves when the first load is done. */
  static async open(opts: CniManagerOptions): Promise<CniNetworkManager> {
    const manager = new CniNetworkManager(opts);
    await manager.startWatching();
    await manager.reload();
    return manager;
  }

  private async startWatching(): Promise<void> {
    const watcher = watch(this.confDir, { ignoreInitial: true, ignored: scopeFilter(this.confDir) });
    this.watcher = watcher;
    watcher.on('all', () => this.scheduleReload());
    watcher.on('error', (err) => this.log.warn({ dir: this.confDir, err: errorMessage(err) }, 'CNI conf dir watch error'));
    // Load after the initial scan so that no change falls between the two.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.log.warn({ dir: this.confDir }, 'CNI conf dir watcher not ready in time; loading anyway');
        resolve();
      }, WATCH_READY_TIMEOUT_MS);
      watcher.once('ready', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private scheduleReload(): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.reload();
    }, this.debounceMs);
  }

  /** Reload the conf dir now (reloads run one at a time); listeners are told afterwards. */
  reload(): Promise<void> {
    const next = this.reloading
      .then(() => this.load())
      .catch((err: unknown) => this.log.error({ dir: this.confDir, err: errorMessage(err) }, 'CNI config reload failed'));
    this.reloading = next;
    return next;
  }

  private async load(): Promise<void> {
    if (this.closed) return;
    const before = this.status();
    const beforeNames = this.current.networks.map((n) => n.name).join(',');
    this.current = await loadConfDir(this.confDir, { maxConfNum: this.maxConfNum, log: this.log });
    const status = this.status();
    const names = this.current.networks.map((n) => n.name);
    if (status.ready !== before.ready || names.join(',') !== beforeNames) {
      this.log.info({ dir: this.confDir, networks: names, ready: status.ready, message: status.message }, 'CNI config loaded');
    }
    const networks = this.networks();
    for (const listener of this.listeners) {
      try {
        listener(networks, status);
      } catch (err) {
        this.log.error({ err: errorMessage(err) }, 'CNI change listener failed');
      }
    }
  }

  /** Ready when the loopback and at least one conf-dir network are loaded. */
  status(): CniStatus {
    const load = this.current;
    if (load.networks.length > 0) return { ready: true };
    let why: string;
    if (load.readError !== undefined) {
      why = `cannot read ${load.dir}: ${load.readError}`;
    } else if (load.skipped.length > 0) {
      const reasons = load.skipped.map((s) => `${path.basename(s.file)}: ${s.reason}`).join('; ');
      why = `no valid network config found in ${load.dir} (${reasons})`;
    } else {
      why = `no network config found in ${load.dir}`;
    }
    return { ready: false, reason: NETWORK_NOT_READY_REASON, message: `cni config uninitialized: ${why}` };
  }

  /** Loaded networks: the loopback first, then the conf dir's in file order. */
  networks(): readonly CniNetwork[] {
    return [loopbackNetwork, ...this.current.networks];
  }

  /** Networks with the interface each gives a sandbox: lo, eth0, eth1... */
  attachments(): readonly CniAttachment[] {
    return [
      { network: loopbackNetwork, ifName: LOOPBACK_IFNAME },
      ...this.current.networks.map((network, i) => ({ network, ifName: `${IFNAME_PREFIX}${i}` })),
    ];
  }

  /** Options for invoke.ts bound to this plugin's bin dirs. */
  execOptions(extra: Omit<CniExecOptions, 'binDirs'> = {}): CniExecOptions {
    return { log: this.log, ...extra, binDirs: this.binDirs };
  }

  /** The loaded config as verbose `Status` shows it (containerd's `cniconfig` shape). */
  describe(): unknown {
    return {
      PluginDirs: this.binDirs,
      PluginConfDir: this.confDir,
      PluginMaxConfNum: this.maxConfNum,
      Prefix: IFNAME_PREFIX,
      Networks: this.attachments().map(({ network, ifName }) => ({
        Config: {
          Name: network.name,
          CNIVersion: network.cniVersion,
          Plugins: network.plugins.map((p) => ({ Network: p.conf, Source: JSON.stringify(p.conf) })),
          Source: network.bytes.toString('utf8'),
        },
        IFName: ifName,
      })),
    };
  }

  /** Subscribe to reloads (called after every reload); returns the unsubscribe function. */
  onChange(listener: CniChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.listeners.clear();
    await this.watcher?.close();
    await this.reloading;
  }
}

export const cniNetworkRegistration: Registration<CniConfig, CniNetworkManager> = {
  type: PluginType.Network,
  id: 'cni',
  config: cniConfigSchema,
  async init(ctx) {
    const { conf_dir, bin_dirs, max_conf_num } = ctx.config;
    const manager = await CniNetworkManager.open({
      confDir: conf_dir,
      binDirs: bin_dirs,
      maxConfNum: max_conf_num,
      log: ctx.log,
    });
    ctx.meta({
      exports: {
        conf_dir: manager.confDir,
        bin_dirs: manager.binDirs.join(':'),
        max_conf_num: String(manager.maxConfNum),
      },
    });
    return manager;
  },
};
