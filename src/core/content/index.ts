import { PluginType, type Registration } from '../plugin/types.js';
import { LocalContentStore } from './local-store.js';

export type { ContentInfo, ContentOpener, ContentSource, ContentStore, Descriptor, EnsureOptions, Platform } from './types.js';
export { DEFAULT_READ_ALL_MAX_BYTES, LocalContentStore } from './local-store.js';
export { DIGEST_ALGORITHM, digestHex, isValidDigest } from './digest.js';

/**
 * `content.local`: the blob store under the plugin's root dir. Its instance
 * is a `LocalContentStore` (a `ContentStore` with `close()`).
 */
export const contentLocalRegistration: Registration<Record<string, never>, LocalContentStore> = {
  type: PluginType.Content,
  id: 'local',
  async init(ctx) {
    const store = await LocalContentStore.open(ctx.rootDir, ctx.log);
    ctx.meta({ exports: { root: ctx.rootDir } });
    return store;
  },
};
