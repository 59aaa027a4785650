import { BerthError } from '../errors.js';
import { validateDigest } from './reference.js';
import { isIndexType, isManifestType, MediaType, type Descriptor, type ImageIndex, type ImageManifest } from './types.js';

/**
 * Reading manifest documents: which kind a registry sent (Content-Type,
 * else the document's own mediaType, else its shape) and checking that the
 * descriptors in it are usable before anything is fetched by them.
 */

function invalidManifest(what: string, why: string): BerthError {
  return new BerthError('failed-precondition', 'ERR_INVALID_MANIFEST', `${what}: ${why}`, { context: { manifest: what } });
}

function unsupported(what: string, mediaType: string): BerthError {
  const schema1 = mediaType === MediaType.DockerSchema1 || mediaType === MediaType.DockerSchema1Signed;
  const why = schema1
    ? 'Docker image manifest schema 1 is not supported (deprecated by Docker; push the image again with a current client)'
    : `unsupported manifest media type "${mediaType}"`;
  return new BerthError('failed-precondition', 'ERR_UNSUPPORTED_MEDIA_TYPE', `${what}: ${why}`, { context: { manifest: what, mediaType } });
}

function parseJson(bytes: Uint8Array, what: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw invalidManifest(what, `not JSON (${(err as Error).message})`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw invalidManifest(what, 'not a JSON object');
  return doc as Record<string, unknown>;
}

/**
 * The media type of a manifest document: the Content-Type when it is one
 * we know, else the document's `mediaType`, else its shape. Throws for
 * schema 1 and types we cannot pull.
 */
export function detectManifestType(contentType: string | undefined, bytes: Uint8Array, what: string): string {
  const ct = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (isIndexType(ct) || isManifestType(ct)) return ct;
  if (ct === MediaType.DockerSchema1 || ct === MediaType.DockerSchema1Signed) throw unsupported(what, ct);
  const doc = parseJson(bytes, what);
  const own = doc['mediaType'];
  if (typeof own === 'string' && own !== '') {
    if (isIndexType(own) || isManifestType(own)) return own;
    throw unsupported(what, own);
  }
  if (doc['schemaVersion'] === 1) throw unsupported(what, MediaType.DockerSchema1);
  if (Array.isArray(doc['manifests'])) return MediaType.OciIndex;
  if (typeof doc['config'] === 'object' && Array.isArray(doc['layers'])) return MediaType.OciManifest;
  throw unsupported(what, ct === '' ? '(none)' : ct);
}

function checkDescriptor(d: unknown, what: string, where: string): Descriptor {
  if (typeof d !== 'object' || d === null) throw invalidManifest(what, `${where} is not a descriptor`);
  const desc = d as Descriptor;
  if (typeof desc.mediaType !== 'string' || desc.mediaType === '') throw invalidManifest(what, `${where} has no mediaType`);
  if (typeof desc.digest !== 'string') throw invalidManifest(what, `${where} has no digest`);
  try {
    validateDigest(desc.digest);
  } catch (err) {
    throw invalidManifest(what, `${where}: ${(err as Error).message}`);
  }
  if (typeof desc.size !== 'number' || !Number.isSafeInteger(desc.size) || desc.size < 0) {
    throw invalidManifest(what, `${where} has an invalid size`);
  }
  if (desc.platform !== undefined && (typeof desc.platform !== 'object' || desc.platform === null || typeof desc.platform.os !== 'string' || typeof desc.platform.architecture !== 'string')) {
    throw invalidManifest(what, `${where} has an invalid platform`);
  }
  return desc;
}

/** Parses and checks an OCI index or Docker manifest list. */
export function parseIndex(bytes: Uint8Array, what: string): ImageIndex {
  const doc = parseJson(bytes, what);
  if (doc['schemaVersion'] !== 2) throw invalidManifest(what, 'schemaVersion is not 2');
  const manifests = doc['manifests'];
  if (!Array.isArray(manifests)) throw invalidManifest(what, 'index has no "manifests" list');
  manifests.forEach((m, i) => checkDescriptor(m, what, `manifests[${i}]`));
  return doc as unknown as ImageIndex;
}

/** Parses and checks an OCI image manifest or Docker schema 2 manifest. */
export function parseManifest(bytes: Uint8Array, what: string): ImageManifest {
  const doc = parseJson(bytes, what);
  if (doc['schemaVersion'] !== 2) throw invalidManifest(what, 'schemaVersion is not 2');
  checkDescriptor(doc['config'], what, 'config');
  const layers = doc['layers'];
  if (!Array.isArray(layers)) throw invalidManifest(what, 'manifest has no "layers" list');
  layers.forEach((l, i) => checkDescriptor(l, what, `layers[${i}]`));
  return doc as unknown as ImageManifest;
}
