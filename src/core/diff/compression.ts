import type { Transform } from 'node:stream';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import { BerthError } from '../errors.js';

export type Compression = 'gzip' | 'zstd' | 'none';

/**
 * The compression a layer media type declares: OCI `...tar`, `...tar+gzip`,
 * `...tar+zstd` (also the nondistributable ones), Docker `...diff.tar`,
 * `...diff.tar.gzip` (also foreign), `...diff.tar.zstd`. Anything else is not
 * a layer this applier understands.
 */
export function declaredCompression(mediaType: string): Compression {
  const mt = (mediaType.split(';')[0] ?? '').trim().toLowerCase();
  if (/[.+]tar[.+]gzip$/.test(mt) || mt.endsWith('.tar.gz')) return 'gzip';
  if (/[.+]tar[.+]zstd$/.test(mt)) return 'zstd';
  if (/[./]tar$/.test(mt) || mt === 'application/x-tar') return 'none';
  throw new BerthError('invalid-argument', 'ERR_LAYER_MEDIA_TYPE', `unsupported layer media type ${JSON.stringify(mediaType)}`, {
    context: { mediaType },
  });
}

/** Bytes needed to recognise every format below. */
export const SNIFF_BYTES = 6;

/**
 * The compression the first bytes show, which wins over the declared one
 * (registries and tools mislabel layers). bzip2 and xz, which some old
 * images used, are recognised only to refuse them clearly.
 */
export function sniffCompression(head: Uint8Array): Compression | 'bzip2' | 'xz' | undefined {
  const b = (i: number): number => head[i] ?? -1;
  if (b(0) === 0x1f && b(1) === 0x8b) return 'gzip';
  if (b(0) === 0x28 && b(1) === 0xb5 && b(2) === 0x2f && b(3) === 0xfd) return 'zstd';
  if (b(0) === 0x42 && b(1) === 0x5a && b(2) === 0x68) return 'bzip2';
  if (b(0) === 0xfd && b(1) === 0x37 && b(2) === 0x7a && b(3) === 0x58 && b(4) === 0x5a && b(5) === 0x00) return 'xz';
  return undefined;
}

export function decompressor(c: Compression): Transform | undefined {
  switch (c) {
    case 'gzip':
      return createGunzip({ chunkSize: 256 << 10 });
    case 'zstd':
      return createZstdDecompress({ chunkSize: 256 << 10 });
    case 'none':
      return undefined;
  }
}
