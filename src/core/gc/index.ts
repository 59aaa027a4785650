import { z } from 'zod';
import type { LocalContentStore } from '../content/index.js';
import type { SqliteMetadata } from '../metadata/index.js';
import { PluginType, type Registration } from '../plugin/types.js';
import type { Snapshotter } from '../snapshotter/index.js';
import { GarbageCollector } from './collector.js';

export { GarbageCollector, type CollectorDeps, type GcResult } from './collector.js';
export { chainIds, collectImageRefs, configDiffIds, type ImageRefs } from './references.js';

export const gcConfigSchema = z.object({
  interval_seconds: z
    .number()
    .int()
    .min(0)
    .default(300)
    .describe(
      'Seconds between periodic garbage collections of unreferenced blobs and snapshots; 0 disables the timer ' +
        '(collections still run after an image is removed).',
    ),
});

export type GcConfig = z.infer<typeof gcConfigSchema>;

/**
 * `gc.scheduler`: mark-and-sweep garbage collection of content blobs and
 * committed snapshots that no image, lease or active snapshot holds. Its
 * instance is a `GarbageCollector`.
 */
export const gcSchedulerRegistration: Registration<GcConfig, GarbageCollector> = {
  type: PluginType.GC,
  id: 'scheduler',
  requires: [PluginType.Metadata, PluginType.Content, PluginType.Snapshotter],
  config: gcConfigSchema,
  init(ctx) {
    const collector = new GarbageCollector({
      metadata: ctx.get<SqliteMetadata>(PluginType.Metadata),
      content: ctx.get<LocalContentStore>(PluginType.Content),
      snapshotter: ctx.get<Snapshotter>(PluginType.Snapshotter),
      log: ctx.log,
    });
    collector.startTimer(ctx.config.interval_seconds * 1000);
    ctx.meta({ exports: { interval_seconds: String(ctx.config.interval_seconds) } });
    return collector;
  },
};
