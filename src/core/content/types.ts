import type { Readable } from 'node:stream';

/** OCI platform object (image-spec image-index.md). */
export interface Platform {
  architecture: string;
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
  features?: string[];
}

/** OCI content descriptor (image-spec descriptor.md). */
export interface Descriptor {
  mediaType: string;
  /** `algorithm:hex`. */
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: string;
}

export interface ContentInfo {
  digest: string;
  size: number;
  /** When the blob was committed (its file's mtime). */
  createdAt: Date;
}

/**
 * A byte source for `ensure`: an async iterable of chunks or a Readable (not
 * in object/string mode). A chunk must not change once yielded: `follow`
 * hands the same bytes to its readers.
 */
export type ContentSource = AsyncIterable<Uint8Array> | Readable;

/** Opens the bytes of a blob; the signal aborts when the ensure is cancelled. */
export type ContentOpener = (signal: AbortSignal) => Promise<ContentSource>;

export interface EnsureOptions {
  /** Cancels this caller's ensure; the ingest it led (if any) is removed. */
  signal?: AbortSignal;
  /**
   * Bytes written so far by the download this call is waiting on (its own or
   * a concurrent caller's for the same digest). Restarts at 0 when a failed
   * download is retried.
   */
  onProgress?: (bytes: number) => void;
}

export interface ContentStore {
  /** Size and commit time of a blob; not-found `ERR_CONTENT_NOT_FOUND` if absent. */
  info(digest: string): Promise<ContentInfo>;
  has(digest: string): Promise<boolean>;
  /** Where the blob lives (or would live); the file is read-only once committed. */
  path(digest: string): string;
  /** Streams the blob from `start` (default 0); not-found if absent. */
  readStream(digest: string, opts?: { start?: number }): Promise<Readable>;
  /**
   * The whole blob, checked against its digest; for manifests, indexes and
   * configs. Blobs larger than `maxBytes` (default DEFAULT_READ_ALL_MAX_BYTES)
   * are refused with resource-exhausted `ERR_CONTENT_TOO_LARGE`.
   */
  readAll(digest: string, maxBytes?: number): Promise<Buffer>;
  /**
   * Makes sure the blob exists, downloading it through `open` at most once at
   * a time per digest. A blob whose bytes do not match `desc` never becomes
   * visible.
   */
  ensure(desc: { digest: string; size: number }, open: ContentOpener, opts?: EnsureOptions): Promise<void>;
  /**
   * The blob's bytes, also while an `ensure` of it runs in this process:
   * read as they are written, ending only once all of them matched the
   * digest and size (so consumers can start on a blob before its download is
   * done; the download's fsync and rename may still be running, and may fail:
   * that is `ensure`'s to report). Waits for a
   * blob neither present nor being downloaded. Unavailable
   * `ERR_CONTENT_FOLLOW_BROKEN` when the download followed fails; cancelled
   * when `signal` aborts. A chunk may share its buffer with the next one:
   * use (or copy) it before asking for the next.
   */
  follow(desc: { digest: string; size: number }, opts?: { signal?: AbortSignal }): AsyncIterable<Buffer>;
  /** Removes a blob; not-found if absent. */
  delete(digest: string): Promise<void>;
  /** Every committed blob, in no particular order. */
  walk(): AsyncIterable<ContentInfo>;
  /** Disk use of blobs and ingests: allocated bytes and inode count. */
  usage(): Promise<{ bytes: number; inodes: number }>;
}
