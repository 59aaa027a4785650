import { createHash, type Hash } from 'node:crypto';

/** Digest algorithms a registry may use that we can verify. */
const ALGORITHMS = new Set(['sha256', 'sha512']);

export function digestAlgorithm(digest: string): string {
  return digest.slice(0, digest.indexOf(':'));
}

/** A running hash for `algorithm` (of a digest such as `sha256:...`); throws for algorithms we cannot verify. */
export function hasherFor(digest: string): Hash {
  const alg = digestAlgorithm(digest);
  if (!ALGORITHMS.has(alg)) throw new Error(`unsupported digest algorithm "${alg}"`);
  return createHash(alg);
}

/** `algorithm:hex` of `data`, with the algorithm of `like` (sha256 by default). */
export function digestOf(data: Uint8Array, like = 'sha256:'): string {
  return `${digestAlgorithm(like)}:${hasherFor(like).update(data).digest('hex')}`;
}
