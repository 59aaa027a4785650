import { BerthError } from '../errors.js';
import { configDiffIds } from '../gc/index.js';
import {
  detectManifestType,
  formatPlatform,
  isIndexType,
  parseIndex,
  parseManifest,
  selectManifests,
  type Descriptor,
  type ImageManifest,
  type PlatformMatcher,
} from '../remotes/index.js';
import { configPlatform, parseImageConfig } from './image-config.js';
import type { ImagePlatform } from './types.js';

/** The image manifest chosen for a platform, with its config. */
export interface SelectedImage {
  manifestDesc: Descriptor;
  manifest: ImageManifest;
  configDesc: Descriptor;
  config: Record<string, unknown>;
  platform: ImagePlatform;
  diffIds: string[];
}

/**
 * Gives the bytes of a manifest, index or config. Undefined means "not
 * here" (a platform the local store never pulled), which only a lenient
 * walk tolerates.
 */
export type BlobReader = (desc: Descriptor, kind: 'manifest' | 'config') => Promise<Buffer | undefined>;

export interface SelectOptions {
  matcher: PlatformMatcher;
  /**
   * Strict (pulling): only manifests for the matcher's platform, checked
   * against their config when the index gives no platform. Lenient (reading
   * what is stored): the best matching manifest present, else any present.
   */
  lenient: boolean;
  /** The image, for messages. */
  what: string;
}

const MAX_DEPTH = 4;

function noPlatform(what: string, matcher: PlatformMatcher, offered: string): BerthError {
  return new BerthError(
    'not-found',
    'ERR_NO_MATCHING_PLATFORM',
    `image ${what} has no manifest for platform ${formatPlatform(matcher.wanted)} (it has: ${offered || 'nothing'})`,
    { context: { image: what, platform: formatPlatform(matcher.wanted) } },
  );
}

/**
 * From the descriptor an image name points at (index or manifest) to the
 * platform's image manifest and config, reading through `read`.
 */
export async function selectImage(top: Descriptor, read: BlobReader, opts: SelectOptions): Promise<SelectedImage | undefined> {
  const { matcher, lenient, what } = opts;

  const visit = async (desc: Descriptor, depth: number, fromIndexWithPlatform: boolean): Promise<SelectedImage | undefined> => {
    const bytes = await read(desc, 'manifest');
    if (bytes === undefined) return undefined;
    const where = `${what}@${desc.digest}`;
    const type = detectManifestType(desc.mediaType, bytes, where);
    if (isIndexType(type)) {
      if (depth >= MAX_DEPTH) {
        throw new BerthError('failed-precondition', 'ERR_INVALID_MANIFEST', `${where}: indexes nested more than ${MAX_DEPTH} deep`, { context: { image: what } });
      }
      const index = parseIndex(bytes, where);
      const preferred = selectManifests(index, matcher);
      const candidates = lenient ? [...preferred, ...index.manifests.filter((m) => !preferred.includes(m))] : preferred;
      for (const child of candidates) {
        const found = await visit(child, depth + 1, child.platform !== undefined && matcher.match(child.platform));
        if (found !== undefined) return found;
      }
      if (lenient) return undefined;
      const offered = index.manifests.map((m) => (m.platform ? formatPlatform(m.platform) : '(no platform)')).join(', ');
      throw noPlatform(what, matcher, offered);
    }
    const manifest = parseManifest(bytes, where);
    const configBytes = await read(manifest.config, 'config');
    if (configBytes === undefined) return undefined;
    const configWhere = `${what}@${manifest.config.digest}`;
    const config = parseImageConfig(configBytes, configWhere);
    const platform = configPlatform(config, configWhere);
    // A manifest whose platform nobody vouched for must declare a matching one (or none at all).
    if (!lenient && !fromIndexWithPlatform && platform.os !== '' && platform.architecture !== '' && !matcher.match(platform)) {
      if (depth > 0) return undefined;
      throw noPlatform(what, matcher, formatPlatform(platform));
    }
    return {
      manifestDesc: desc,
      manifest,
      configDesc: manifest.config,
      config,
      platform,
      diffIds: configDiffIds(config, configWhere),
    };
  };

  return visit(top, 0, false);
}
