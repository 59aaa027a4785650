import { z } from 'zod';
import { PluginType, type Closable, type Registration } from '../plugin/types.js';
import { applyLayer } from './apply.js';
import { checkTools } from './fs-tools.js';
import type { Applier } from './types.js';
import { WorkerApplier } from './worker-applier.js';

export type { Applier, ApplyOptions, ApplyResult } from './types.js';
export { applyLayer } from './apply.js';
export { applyTarget, type ApplyTarget } from './target.js';
export { declaredCompression, type Compression } from './compression.js';
export { WorkerApplier } from './worker-applier.js';

export const tarDiffConfigSchema = z.object({
  apply_workers: z
    .number()
    .int()
    .min(0)
    .default(2)
    .describe(
      'Worker threads layers are applied in (decompression, diff ID hash, tar parsing, file writes), so the ' +
        'daemon\'s event loop stays free for downloads and RPCs; also how many layers are applied at once. ' +
        '0: apply on the daemon\'s thread.',
    ),
});
export type TarDiffConfig = z.infer<typeof tarDiffConfigSchema>;

/**
 * `diff.tar`: applies layer tars (uncompressed, gzip or zstd) to snapshots,
 * writing straight into the writable dir of their mounts. Needs mknod(1)
 * and setfattr/getfattr (Debian `attr`), checked at init.
 */
export const tarDiffRegistration: Registration<TarDiffConfig, Applier & Partial<Closable>> = {
  type: PluginType.Diff,
  id: 'tar',
  config: tarDiffConfigSchema,
  async init(ctx) {
    await checkTools();
    const log = ctx.log;
    if (ctx.config.apply_workers > 0) return new WorkerApplier(ctx.config.apply_workers, log);
    return {
      apply: (mounts, layer, opts) => applyLayer(mounts, layer, opts, log),
    };
  },
};
