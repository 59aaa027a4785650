import { PluginType, type Registration } from '../plugin/types.js';
import { applyLayer } from './apply.js';
import { checkTools } from './fs-tools.js';
import type { Applier } from './types.js';

export type { Applier, ApplyOptions, ApplyResult } from './types.js';
export { applyLayer } from './apply.js';
export { applyTarget, type ApplyTarget } from './target.js';
export { declaredCompression, type Compression } from './compression.js';

/**
 * `diff.tar`: applies layer tars (uncompressed, gzip or zstd) to snapshots,
 * writing straight into the writable dir of their mounts. Needs mknod(1)
 * and setfattr/getfattr (Debian `attr`), checked at init.
 */
export const tarDiffRegistration: Registration<Record<string, never>, Applier> = {
  type: PluginType.Diff,
  id: 'tar',
  async init(ctx) {
    await checkTools();
    const log = ctx.log;
    return {
      apply: (mounts, layer, opts) => applyLayer(mounts, layer, opts, log),
    };
  },
};
