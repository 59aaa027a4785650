import { BerthError } from '../errors.js';

/**
 * The only digest algorithm the store accepts. OCI image-spec allows others
 * (sha512, registered ones), but registries and kubelet use sha256, and a
 * closed set keeps every digest a safe file name.
 */
export const DIGEST_ALGORITHM = 'sha256';

const SHA256_DIGEST = /^sha256:([a-f0-9]{64})$/;

/**
 * The hex part of a `sha256:<64 lowercase hex>` digest; anything else is an
 * invalid-argument error. The hex is all that ever becomes part of a path, so
 * no digest can name a file outside the blob directory.
 */
export function digestHex(digest: string): string {
  const match = typeof digest === 'string' ? SHA256_DIGEST.exec(digest) : null;
  if (!match?.[1]) {
    throw new BerthError('invalid-argument', 'ERR_CONTENT_INVALID_DIGEST', `invalid digest ${JSON.stringify(digest)}: want sha256:<64 lowercase hex>`, {
      context: { digest: String(digest) },
    });
  }
  return match[1];
}

export function isValidDigest(digest: string): boolean {
  return typeof digest === 'string' && SHA256_DIGEST.test(digest);
}

/** A blob size: a non-negative safe integer. */
export function checkSize(size: number, digest: string): void {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new BerthError('invalid-argument', 'ERR_CONTENT_INVALID_SIZE', `invalid size ${String(size)} for ${digest}`, {
      context: { digest, size: String(size) },
    });
  }
}
