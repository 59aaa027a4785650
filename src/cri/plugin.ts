import { join } from 'node:path';
import { NetnsManager, PodNetwork, type CniNetworkManager } from '../cni/index.js';
import type { EventExchange } from '../core/events/index.js';
import type { ImageStore } from '../core/images/index.js';
import type { SqliteMetadata } from '../core/metadata/index.js';
import { PluginType, type Registration } from '../core/plugin/types.js';
import type { OciRuntime } from '../core/runtime/index.js';
import { hostFacts } from '../core/runtime/spec/index.js';
import type { Snapshotter } from '../core/snapshotter/index.js';
import { criConfigSchema, type CriConfig } from './config.js';
import { ContainerService } from './container/index.js';
import { CriImageService } from './image-service.js';
import { RuntimeConfigStore } from './runtime-config-store.js';
import { SandboxService } from './sandbox/index.js';
import { CriService } from './service.js';
import { openCriStores } from './store/index.js';

/**
 * The CRI service plugin. It takes the daemon's effective config as an
 * argument because verbose Status shows it; everything else comes from the
 * plugins it requires.
 */
export function criServiceRegistration(effectiveConfig: unknown): Registration<CriConfig, CriService> {
  return {
    type: PluginType.CRI,
    id: 'service',
    requires: [PluginType.Network, PluginType.Images, PluginType.Runtime, PluginType.Events, PluginType.Metadata, PluginType.Snapshotter],
    config: criConfigSchema,
    async init(ctx) {
      const runtimeConfig = new RuntimeConfigStore(ctx.rootDir);
      await runtimeConfig.load();
      const cni = ctx.get<CniNetworkManager>(PluginType.Network);
      const images = ctx.get<ImageStore>(PluginType.Images);
      const runtime = ctx.get<OciRuntime>(PluginType.Runtime);
      const events = ctx.get<EventExchange>(PluginType.Events);
      const stores = openCriStores(ctx.get<SqliteMetadata>(PluginType.Metadata));
      images.pin(ctx.config.sandbox_image);
      const [netns, host] = await Promise.all([NetnsManager.open(join(ctx.stateDir, 'netns'), { log: ctx.log }), hostFacts()]);
      const snapshotter = ctx.get<Snapshotter>(PluginType.Snapshotter);
      const containers = new ContainerService({
        containers: stores.containers,
        sandboxes: stores.sandboxes,
        runtime,
        images,
        snapshotter,
        events,
        log: ctx.log,
        stateDir: ctx.stateDir,
        host,
      });
      const sandboxes = new SandboxService({
        log: ctx.log,
        sandboxes: stores.sandboxes,
        containers: stores.containers,
        runtime,
        events,
        images,
        snapshotter,
        network: new PodNetwork(cni, { log: ctx.log }),
        networkStatus: () => cni.status(),
        netns,
        podCidrs: () => runtimeConfig.get().podCidrs,
        sandboxImage: ctx.config.sandbox_image,
        rootDir: join(ctx.rootDir, 'sandboxes'),
        stateDir: join(ctx.stateDir, 'sandboxes'),
        host,
      });
      sandboxes.setContainerOps(containers);
      const close = async (): Promise<void> => {
        containers.close();
        sandboxes.close();
        await netns.close();
      };
      try {
        // Both subscribe to task exits first, so exits found while recovering are recorded.
        await Promise.all([containers.recover(), sandboxes.recover()]);
      } catch (err) {
        await close();
        throw err;
      }
      ctx.meta({ exports: { sandbox_image: ctx.config.sandbox_image, netns_dir: netns.dir } });
      return new CriService({
        log: ctx.log,
        network: cni,
        runtimeConfig,
        effectiveConfig,
        plugins: () => ctx.records(),
        images: new CriImageService(images, ctx.log),
        runtime,
        sandboxes,
        containers,
        stores,
        close,
      });
    },
  };
}
