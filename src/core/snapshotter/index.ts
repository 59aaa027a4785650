import { skipPlugin } from '../plugin/errors.js';
import { PluginType, type Registration } from '../plugin/types.js';
import { OverlaySnapshotter } from './overlay.js';
import type { MetadataDb } from './store.js';
import { overlayUnsupportedReason } from './support.js';

export type { FsInfo, Mount, SnapshotInfo, SnapshotKind, SnapshotOptions, Snapshotter, Usage } from './types.js';
export type { MetadataDb } from './store.js';
export { MAX_MOUNT_DATA, mount, mountData, unmount, unmountAll, type UnmountOptions } from './mount.js';
export { OverlaySnapshotter } from './overlay.js';

/**
 * `snapshotter.overlayfs`: snapshots as overlayfs layers under the plugin's
 * root dir, records in the metadata DB. Skipped when overlayfs cannot be
 * mounted on the root's filesystem.
 */
export const overlayfsSnapshotterRegistration: Registration<Record<string, never>, OverlaySnapshotter> = {
  type: PluginType.Snapshotter,
  id: 'overlayfs',
  requires: [PluginType.Metadata],
  async init(ctx) {
    const reason = await overlayUnsupportedReason(ctx.rootDir);
    if (reason !== undefined) skipPlugin(reason);
    const snapshotter = new OverlaySnapshotter({
      root: ctx.rootDir,
      metadata: ctx.get<MetadataDb>(PluginType.Metadata),
      log: ctx.log,
    });
    await snapshotter.init();
    ctx.meta({ exports: { root: ctx.rootDir } });
    return snapshotter;
  },
};
