import { isValidDigest, type Descriptor } from '../content/index.js';
import { BerthError } from '../errors.js';

function invalid(code: string, message: string, context: Record<string, string> = {}): BerthError {
  return new BerthError('invalid-argument', code, message, { context });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A non-empty string key (image name, lease id, resource id). */
export function checkName(value: unknown, what: string, code: string): string {
  if (typeof value !== 'string' || value.length === 0) throw invalid(code, `${what} must be a non-empty string`);
  return value;
}

/** A string→string map with non-empty keys (labels, annotations), copied. */
export function checkStringMap(value: unknown, what: string, code: string): Record<string, string> {
  if (value === undefined) return {};
  if (!isPlainObject(value)) throw invalid(code, `${what} must be an object of strings`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (k.length === 0 || typeof v !== 'string') throw invalid(code, `${what}: ${JSON.stringify(k)} must map a non-empty key to a string`, { key: k });
    out[k] = v;
  }
  return out;
}

/** An OCI descriptor as an image target, copied with only known fields. */
export function checkDescriptor(value: unknown, what: string): Descriptor {
  const code = 'ERR_METADATA_INVALID_DESCRIPTOR';
  if (!isPlainObject(value)) throw invalid(code, `${what} must be a descriptor`);
  const { mediaType, digest, size, annotations, platform } = value;
  if (typeof mediaType !== 'string' || mediaType.length === 0) throw invalid(code, `${what}.mediaType must be a non-empty string`);
  if (typeof digest !== 'string' || !isValidDigest(digest)) {
    throw invalid(code, `${what}.digest ${JSON.stringify(digest)} is not sha256:<64 hex>`);
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw invalid(code, `${what}.size must be a non-negative integer`);
  const desc: Descriptor = { mediaType, digest, size };
  if (annotations !== undefined) desc.annotations = checkStringMap(annotations, `${what}.annotations`, code);
  if (platform !== undefined) {
    if (!isPlainObject(platform) || typeof platform.architecture !== 'string' || typeof platform.os !== 'string') {
      throw invalid(code, `${what}.platform needs string architecture and os`);
    }
    const p: NonNullable<Descriptor['platform']> = { architecture: platform.architecture, os: platform.os };
    const osVersion = platform['os.version'];
    const osFeatures = platform['os.features'];
    const variant = platform.variant;
    if (osVersion !== undefined) {
      if (typeof osVersion !== 'string') throw invalid(code, `${what}.platform["os.version"] must be a string`);
      p['os.version'] = osVersion;
    }
    if (osFeatures !== undefined) {
      if (!Array.isArray(osFeatures) || !osFeatures.every((f) => typeof f === 'string')) {
        throw invalid(code, `${what}.platform["os.features"] must be an array of strings`);
      }
      p['os.features'] = [...(osFeatures as string[])];
    }
    if (variant !== undefined) {
      if (typeof variant !== 'string') throw invalid(code, `${what}.platform.variant must be a string`);
      p.variant = variant;
    }
    desc.platform = p;
  }
  return desc;
}
