// Shared setup of the diff tests: a real overlayfs snapshotter in a temp dir, and the applier.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyLayer, type ApplyOptions, type ApplyResult } from '../../src/core/diff/index.js';
import { createLogger, type Logger } from '../../src/core/log.js';
import { MetadataDB } from '../../src/core/metadata/index.js';
import { mount, OverlaySnapshotter, unmountAll, type Mount } from '../../src/core/snapshotter/index.js';
import type { TarEntry } from '../fixtures/index.js';

export const silent = createLogger('silent');

/** Yields `data` in chunks of `size` bytes (odd sizes exercise the reader's block boundaries). */
export async function* chunks(data: Buffer, size = 7001): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < data.length; off += size) yield data.subarray(off, off + size);
}

export interface LayerInput {
  blob: Buffer;
  mediaType: string;
  diffId?: string;
}

export class Stack {
  readonly mounted: string[] = [];
  private constructor(
    readonly dir: string,
    readonly db: MetadataDB,
    readonly snapshotter: OverlaySnapshotter,
  ) {}

  static async create(prefix: string): Promise<Stack> {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    const root = join(dir, 'root');
    await mkdir(root);
    const db = new MetadataDB(join(dir, 'meta.db'), silent, { synchronous: 'NORMAL', busyTimeoutMs: 1000 });
    const snapshotter = new OverlaySnapshotter({ root, metadata: db, log: silent });
    await snapshotter.init();
    return new Stack(dir, db, snapshotter);
  }

  /** Prepares `key` on `parent`, applies the layer, commits it as `name`; returns the apply result. */
  async applyAndCommit(name: string, parent: string | undefined, layer: LayerInput, log: Logger = silent): Promise<ApplyResult> {
    const key = `extract-${name}`;
    const mounts = await this.snapshotter.prepare(key, parent);
    try {
      const opts: ApplyOptions = { mediaType: layer.mediaType };
      if (layer.diffId !== undefined) opts.expectedDiffId = layer.diffId;
      const result = await applyLayer(mounts, chunks(layer.blob), opts, log);
      await this.snapshotter.commit(name, key);
      return result;
    } catch (err) {
      await this.snapshotter.remove(key);
      throw err;
    }
  }

  /** Applies layers bottom first as committed snapshots `layer-0`, `layer-1`...; returns the top name. */
  async applyAll(layers: readonly LayerInput[]): Promise<string> {
    let parent: string | undefined;
    for (const [i, layer] of layers.entries()) {
      await this.applyAndCommit(`layer-${i}`, parent, layer);
      parent = `layer-${i}`;
    }
    return parent!;
  }

  /** Mounts `mounts` at a fresh dir under the stack, unmounted by close(). */
  async mountAt(mounts: Mount[], name: string): Promise<string> {
    const target = join(this.dir, 'mnt', name);
    await mkdir(target, { recursive: true });
    await mount(mounts, target);
    this.mounted.push(target);
    return target;
  }

  async close(): Promise<void> {
    for (const target of this.mounted.reverse()) await unmountAll(target, { detach: true });
    this.db.db.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** A raw tar entry, path stored verbatim (the fixture helpers refuse hostile paths). */
export function raw(path: string, type: TarEntry['type'], extra: Partial<TarEntry> = {}): TarEntry {
  return { path, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtime: 1_700_000_000, ...extra };
}

export const TAR = 'application/vnd.oci.image.layer.v1.tar';
export const TAR_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const TAR_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
