import type { LocalContentStore } from '../content/index.js';
import type { Applier } from '../diff/index.js';
import type { GarbageCollector } from '../gc/index.js';
import type { SqliteMetadata } from '../metadata/index.js';
import { PluginType, type Registration } from '../plugin/types.js';
import { parsePlatform, RegistryClient, RegistryHosts, type AuthConfig } from '../remotes/index.js';
import type { Snapshotter } from '../snapshotter/index.js';
import { BERTH_VERSION } from '../../version.js';
import { imagesConfigSchema, type ImagesConfig } from './config.js';
import { ImageStore } from './service.js';

export { imagesConfigSchema, type ImagesConfig } from './config.js';
export { ImageStore, LEASE_OWNER_LABEL, PINNED_LABEL, type ImageStoreDeps } from './service.js';
export { EXTRACT_PREFIX } from './unpack.js';
export type { ImageConfigSummary, ImageEvent, ImageFsInfo, ImageListener, ImagePlatform, ImageRecord, PullOptions } from './types.js';

function credentialsFor(config: ImagesConfig): (registry: string) => AuthConfig | undefined {
  return (registry) => {
    const a = Object.hasOwn(config.auths, registry) ? config.auths[registry] : undefined;
    if (a === undefined) return undefined;
    const out: AuthConfig = { serverAddress: registry };
    if (a.username !== undefined) out.username = a.username;
    if (a.password !== undefined) out.password = a.password;
    if (a.auth !== undefined) out.auth = a.auth;
    if (a.identity_token !== undefined) out.identityToken = a.identity_token;
    return out;
  };
}

/**
 * `images.store`: pulls images (registry → content store → snapshots),
 * keeps their records and an in-memory catalog, removes them. Its instance
 * is an `ImageStore`, which the CRI ImageService calls.
 */
export const imagesStoreRegistration: Registration<ImagesConfig, ImageStore> = {
  type: PluginType.Images,
  id: 'store',
  requires: [PluginType.Content, PluginType.Metadata, PluginType.Snapshotter, PluginType.Diff, PluginType.GC],
  config: imagesConfigSchema,
  async init(ctx) {
    const config = ctx.config;
    const platform = parsePlatform(config.platform);
    const client = new RegistryClient({
      hosts: new RegistryHosts(config.registry_config_dir === '' ? {} : { configPath: config.registry_config_dir }),
      credentials: credentialsFor(config),
      log: ctx.log,
      userAgent: `berth/${BERTH_VERSION}`,
    });
    let store: ImageStore;
    try {
      store = new ImageStore({
        content: ctx.get<LocalContentStore>(PluginType.Content),
        metadata: ctx.get<SqliteMetadata>(PluginType.Metadata),
        snapshotter: ctx.get<Snapshotter>(PluginType.Snapshotter),
        diff: ctx.get<Applier>(PluginType.Diff),
        gc: ctx.get<GarbageCollector>(PluginType.GC),
        client,
        log: ctx.log,
        platform,
        pinnedImages: config.pinned_images,
        maxConcurrentDownloads: config.max_concurrent_downloads,
        progressTimeoutMs: config.pull_progress_timeout_seconds * 1000,
      });
      await store.init();
    } catch (err) {
      await client.close();
      throw err;
    }
    ctx.meta({ exports: { platform: config.platform, registry_config_dir: config.registry_config_dir } });
    return store;
  },
};
