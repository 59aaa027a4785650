import type { Readable } from 'node:stream';
import type { Mount } from '../snapshotter/index.js';

export interface ApplyOptions {
  /** The layer descriptor's media type: decides (with the content's magic bytes) how to decompress. */
  mediaType: string;
  signal?: AbortSignal;
  /** The image config's diff ID for the layer (`sha256:<hex>`); a different one fails the apply. */
  expectedDiffId?: string;
}

export interface ApplyResult {
  /** sha256 of the uncompressed tar, `sha256:<hex>`. */
  diffId: string;
  /** Bytes of the uncompressed tar. */
  size: number;
}

export interface Applier {
  /**
   * Writes a layer into the active snapshot whose mounts are given, without
   * mounting them: into a bind mount's source dir, or an overlay's upperdir
   * (deletions as overlayfs whiteouts). On failure the snapshot holds a
   * partial layer and must be removed by its owner.
   */
  apply(mounts: Mount[], layer: Readable | AsyncIterable<Uint8Array>, opts: ApplyOptions): Promise<ApplyResult>;
}
