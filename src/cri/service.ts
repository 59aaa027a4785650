import type { Logger } from '../core/log.js';
import type { PluginRecord } from '../core/plugin/types.js';
import {
  CgroupDriver,
  type RuntimeCondition,
  type RuntimeConfigResponse,
  type RuntimeHandler,
  type StatusResponse,
  type UpdateRuntimeConfigRequest,
  type VersionResponse,
} from '../generated/api.js';
import { BERTH_VERSION, RUNTIME_API_VERSION, RUNTIME_NAME } from '../version.js';
import type { CriImageService } from './image-service.js';
import { parsePodCidrs, type RuntimeConfigStore } from './runtime-config-store.js';
import type { ContainerService } from './container/index.js';
import type { SandboxService } from './sandbox/index.js';
import type { CriStores } from './store/index.js';

/** What Status needs from the runtime plugin. */
export interface RuntimeHandlers {
  handlers(): Array<{ name: string; features: { recursiveReadOnlyMounts: boolean; userNamespaces: boolean } }>;
}

/** What the CRI service needs from the network plugin. */
export interface NetworkReadiness {
  status(): { ready: boolean; reason?: string; message?: string };
  /** Loaded networks, for verbose status. */
  describe(): unknown;
}

export interface CriServiceOptions {
  log: Logger;
  network: NetworkReadiness;
  runtimeConfig: RuntimeConfigStore;
  /** The daemon's effective config, shown by verbose Status. */
  effectiveConfig: unknown;
  /** Live plugin list, shown by verbose Status. */
  plugins: () => readonly PluginRecord[];
  images: CriImageService;
  runtime: RuntimeHandlers;
  sandboxes: SandboxService;
  containers: ContainerService;
  stores: CriStores;
  /** Releases what init made (event subscriptions, the netns dir mount). */
  close: () => Promise<void>;
}

/** The CRI service at the centre: answers from what the core plugins know. */
export class CriService {
  readonly images: CriImageService;
  readonly sandboxes: SandboxService;
  readonly containers: ContainerService;
  readonly stores: CriStores;

  constructor(private readonly opts: CriServiceOptions) {
    this.images = opts.images;
    this.sandboxes = opts.sandboxes;
    this.containers = opts.containers;
    this.stores = opts.stores;
  }

  version(): VersionResponse {
    // `version` is the CRI API version kubelet speaks to us with (kubelet checks "0.1.0").
    return { version: '0.1.0', runtimeName: RUNTIME_NAME, runtimeVersion: BERTH_VERSION, runtimeApiVersion: RUNTIME_API_VERSION };
  }

  status(verbose: boolean): StatusResponse {
    const net = this.opts.network.status();
    const conditions: RuntimeCondition[] = [
      { type: 'RuntimeReady', status: true, reason: '', message: '' },
      { type: 'NetworkReady', status: net.ready, reason: net.ready ? '' : (net.reason ?? 'NetworkPluginNotReady'), message: net.ready ? '' : (net.message ?? '') },
    ];
    const info: Record<string, string> = {};
    if (verbose) {
      info['config'] = JSON.stringify(this.opts.effectiveConfig);
      info['plugins'] = JSON.stringify(this.opts.plugins());
      info['cniconfig'] = JSON.stringify(this.opts.network.describe());
      info['runtimeConfig'] = JSON.stringify(this.opts.runtimeConfig.get());
    }
    return { status: { conditions }, info, runtimeHandlers: this.runtimeHandlers(), features: undefined };
  }

  /** The default handler under the empty name (as RuntimeClass-less pods ask for it), then every handler by name. */
  private runtimeHandlers(): RuntimeHandler[] {
    const handlers = this.opts.runtime.handlers();
    const out: RuntimeHandler[] = handlers.map((h) => ({ name: h.name, features: { ...h.features } }));
    const def = handlers[0];
    if (def !== undefined) out.unshift({ name: '', features: { ...def.features } });
    return out;
  }

  async updateRuntimeConfig(request: UpdateRuntimeConfigRequest): Promise<void> {
    const cidr = request.runtimeConfig?.networkConfig?.podCidr ?? '';
    // kubelet sends an empty CIDR when it has none to give; keep what we have.
    if (cidr === '') return;
    const podCidrs = parsePodCidrs(cidr);
    await this.opts.runtimeConfig.setPodCidrs(podCidrs);
    this.opts.log.info({ podCidrs }, 'pod CIDR updated');
  }

  runtimeConfig(): RuntimeConfigResponse {
    return { linux: { cgroupDriver: CgroupDriver.CGROUPFS } };
  }

  async close(): Promise<void> {
    await this.opts.close();
  }
}
