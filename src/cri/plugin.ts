import { PluginType, type Registration } from '../core/plugin/types.js';
import type { ImageStore } from '../core/images/index.js';
import { CriImageService } from './image-service.js';
import { RuntimeConfigStore } from './runtime-config-store.js';
import { CriService, type NetworkReadiness } from './service.js';

/**
 * The CRI service plugin. It takes the daemon's effective config as an
 * argument because verbose Status shows it; everything else comes from the
 * plugins it requires.
 */
export function criServiceRegistration(effectiveConfig: unknown): Registration<Record<string, never>, CriService> {
  return {
    type: PluginType.CRI,
    id: 'service',
    requires: [PluginType.Network, PluginType.Images],
    async init(ctx) {
      const runtimeConfig = new RuntimeConfigStore(ctx.rootDir);
      await runtimeConfig.load();
      return new CriService({
        log: ctx.log,
        network: ctx.get<NetworkReadiness>(PluginType.Network),
        runtimeConfig,
        effectiveConfig,
        plugins: () => ctx.records(),
        images: new CriImageService(ctx.get<ImageStore>(PluginType.Images), ctx.log),
      });
    },
  };
}
