import { createHash } from 'node:crypto';
import type { ContentStore, Descriptor } from '../content/index.js';
import { BerthError, isBerthError } from '../errors.js';
import { detectManifestType, isIndexType, parseIndex, parseManifest } from '../remotes/index.js';

/**
 * What an image record holds on to: the blobs reachable from its target
 * (index → manifests → config + layers) and the committed snapshots its
 * layers unpack to, named by chain ID. Shared by the collector (which keeps
 * them) and the images plugin (which unpacks to them).
 */

/** Longest chain of nested indexes followed; deeper ones are not images anyone can pull. */
const MAX_DEPTH = 8;

/**
 * Chain IDs per OCI image-spec (config.md, "Layer ChainID"):
 * ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
 * Element i names the snapshot holding layers 0..i applied in order.
 */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  let parent: string | undefined;
  for (const diffId of diffIds) {
    const id: string = parent === undefined ? diffId : `sha256:${createHash('sha256').update(`${parent} ${diffId}`).digest('hex')}`;
    out.push(id);
    parent = id;
  }
  return out;
}

/** The rootfs.diff_ids of an image config; an empty list for configs that have none (artifacts). */
export function configDiffIds(config: unknown, what: string): string[] {
  if (typeof config !== 'object' || config === null) {
    throw new BerthError('failed-precondition', 'ERR_IMAGE_CONFIG_INVALID', `${what}: image config is not a JSON object`, { context: { config: what } });
  }
  const rootfs = (config as { rootfs?: unknown }).rootfs;
  if (rootfs === undefined) return [];
  const ids = (rootfs as { diff_ids?: unknown } | null)?.diff_ids;
  if (!Array.isArray(ids) || ids.some((d) => typeof d !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(d))) {
    throw new BerthError('failed-precondition', 'ERR_IMAGE_CONFIG_INVALID', `${what}: rootfs.diff_ids must be a list of sha256 digests`, {
      context: { config: what },
    });
  }
  return ids as string[];
}

export interface ImageRefs {
  /** Digests of every blob reached that the content store holds (and the target, held or not). */
  blobs: Set<string>;
  /** Chain IDs of every layer of every config reached. */
  chainIds: Set<string>;
}

/**
 * Walks `target` through the content store, adding to `into` what it
 * references. Children missing from the store (other platforms of an index)
 * are recorded but not followed. A blob that does not parse stops the walk
 * below it only (`onProblem` hears why); one that cannot be read (I/O error,
 * corrupt) throws.
 */
export async function collectImageRefs(
  content: Pick<ContentStore, 'readAll'>,
  target: Descriptor,
  into: ImageRefs,
  onProblem: (digest: string, err: unknown) => void,
): Promise<void> {
  const visit = async (desc: Descriptor, role: 'top' | 'config' | 'layer', depth: number): Promise<void> => {
    if (into.blobs.has(desc.digest)) return;
    into.blobs.add(desc.digest);
    if (role === 'layer') return;
    let bytes: Buffer;
    try {
      bytes = await content.readAll(desc.digest);
    } catch (err) {
      // Absent: nothing below it is held. Unreadable: what it references is
      // unknown, so the caller must not act as if it referenced nothing.
      if (isBerthError(err) && err.code === 'ERR_CONTENT_NOT_FOUND') return;
      throw err;
    }
    try {
      if (role === 'config') {
        for (const id of chainIds(configDiffIds(JSON.parse(bytes.toString('utf8')), desc.digest))) into.chainIds.add(id);
        return;
      }
      const type = detectManifestType(desc.mediaType, bytes, desc.digest);
      if (isIndexType(type)) {
        if (depth >= MAX_DEPTH) throw new BerthError('failed-precondition', 'ERR_INVALID_MANIFEST', `${desc.digest}: indexes nested too deep`);
        for (const child of parseIndex(bytes, desc.digest).manifests) await visit(child, 'top', depth + 1);
        return;
      }
      const manifest = parseManifest(bytes, desc.digest);
      await visit(manifest.config, 'config', depth + 1);
      for (const layer of manifest.layers) await visit(layer, 'layer', depth + 1);
    } catch (err) {
      onProblem(desc.digest, err);
    }
  };
  await visit(target, 'top', 0);
}
