import type { StatementSync } from 'node:sqlite';
import type { Descriptor } from '../content/index.js';
import { BerthError } from '../errors.js';
import { query, type MetadataDB, type Migration } from './database.js';
import { checkDescriptor, checkName, checkStringMap } from './validate.js';

/** A named reference to an image's manifest or index. */
export interface Image {
  /** Full reference (`docker.io/library/busybox:latest`) or an id; unique. */
  name: string;
  target: Descriptor;
  labels: Record<string, string>;
  createdAt: Date;
  updatedAt: Date;
}

/** What callers write; the store sets the timestamps. */
export interface ImageInput {
  name: string;
  target: Descriptor;
  labels?: Record<string, string>;
}

export interface ImageFilter {
  /** Only images whose target has this digest. */
  targetDigest?: string;
  /** Only images carrying every one of these labels with exactly these values. */
  labels?: Record<string, string>;
}

export const IMAGE_MIGRATIONS: readonly Migration[] = [
  `CREATE TABLE images (
    name TEXT PRIMARY KEY CHECK (length(name) > 0),
    target_media_type TEXT NOT NULL CHECK (length(target_media_type) > 0),
    target_digest TEXT NOT NULL CHECK (target_digest GLOB 'sha256:*'),
    target_size INTEGER NOT NULL CHECK (target_size >= 0),
    target_annotations TEXT CHECK (target_annotations IS NULL OR json_valid(target_annotations)),
    target_platform TEXT CHECK (target_platform IS NULL OR json_valid(target_platform)),
    labels TEXT NOT NULL CHECK (json_valid(labels)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX images_by_target_digest ON images (target_digest);`,
];

interface ImageRow {
  name: string;
  target_media_type: string;
  target_digest: string;
  target_size: number;
  target_annotations: string | null;
  target_platform: string | null;
  labels: string;
  created_at: number;
  updated_at: number;
}

function fromRow(row: ImageRow): Image {
  const target: Descriptor = { mediaType: row.target_media_type, digest: row.target_digest, size: row.target_size };
  if (row.target_annotations !== null) target.annotations = JSON.parse(row.target_annotations) as Record<string, string>;
  if (row.target_platform !== null) target.platform = JSON.parse(row.target_platform) as NonNullable<Descriptor['platform']>;
  return {
    name: row.name,
    target,
    labels: JSON.parse(row.labels) as Record<string, string>,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

function notFound(name: string): BerthError {
  return new BerthError('not-found', 'ERR_IMAGE_NOT_FOUND', `image "${name}" not found`, { context: { image: name } });
}

/**
 * Image records in the `images` table. Methods are synchronous so callers can
 * group them with other writes in one `transaction()`; each write is a single
 * statement in its own transaction (or the caller's), so a crash never leaves
 * half a record.
 */
export class ImageStore {
  private readonly meta: MetadataDB;
  private readonly selectOne: StatementSync;
  private readonly selectAll: StatementSync;
  private readonly selectByDigest: StatementSync;
  private readonly insert: StatementSync;
  private readonly updateOne: StatementSync;
  private readonly deleteOne: StatementSync;

  constructor(meta: MetadataDB) {
    this.meta = meta;
    meta.migrate('images', IMAGE_MIGRATIONS);
    const db = meta.db;
    this.selectOne = db.prepare('SELECT * FROM images WHERE name = ?');
    this.selectAll = db.prepare('SELECT * FROM images ORDER BY name');
    this.selectByDigest = db.prepare('SELECT * FROM images WHERE target_digest = ? ORDER BY name');
    this.insert = db.prepare(`INSERT INTO images
      (name, target_media_type, target_digest, target_size, target_annotations, target_platform, labels, created_at, updated_at)
      VALUES (:name, :mediaType, :digest, :size, :annotations, :platform, :labels, :now, :now)
      ON CONFLICT (name) DO NOTHING`);
    this.updateOne = db.prepare(`UPDATE images SET
      target_media_type = :mediaType, target_digest = :digest, target_size = :size,
      target_annotations = :annotations, target_platform = :platform, labels = :labels, updated_at = :now
      WHERE name = :name`);
    this.deleteOne = db.prepare('DELETE FROM images WHERE name = ?');
  }

  /** The image called `name`; not-found `ERR_IMAGE_NOT_FOUND` if none. */
  get(name: string): Image {
    const row = query('get image', () => this.selectOne.get(name) as ImageRow | undefined, { image: name });
    if (!row) throw notFound(name);
    return fromRow(row);
  }

  /** Images matching `filter` (all without one), by name. */
  list(filter: ImageFilter = {}): Image[] {
    const rows = query('list images', () =>
      (filter.targetDigest === undefined ? this.selectAll.all() : this.selectByDigest.all(filter.targetDigest)) as unknown as ImageRow[],
    );
    const wanted = Object.entries(filter.labels ?? {});
    return rows.map(fromRow).filter((img) => wanted.every(([k, v]) => img.labels[k] === v));
  }

  /** Adds an image; already-exists `ERR_IMAGE_EXISTS` if the name is taken. */
  create(image: ImageInput): Image {
    const params = toParams(image);
    return this.meta.transaction(() => {
      if (Number(this.insert.run(params).changes) === 0) {
        throw new BerthError('already-exists', 'ERR_IMAGE_EXISTS', `image "${params.name}" already exists`, { context: { image: params.name } });
      }
      return this.get(params.name);
    });
  }

  /** Replaces target and labels of an existing image (keeps createdAt); not-found if absent. */
  update(image: ImageInput): Image {
    const params = toParams(image);
    return this.meta.transaction(() => {
      if (Number(this.updateOne.run(params).changes) === 0) throw notFound(params.name);
      return this.get(params.name);
    });
  }

  /** Creates the image or replaces its target and labels. */
  upsert(image: ImageInput): Image {
    const params = toParams(image);
    return this.meta.transaction(() => {
      if (Number(this.insert.run(params).changes) === 0) this.updateOne.run(params);
      return this.get(params.name);
    });
  }

  /** Removes an image record; not-found if absent. */
  delete(name: string): void {
    this.meta.transaction(() => {
      if (Number(this.deleteOne.run(name).changes) === 0) throw notFound(name);
    });
  }
}

function toParams(image: ImageInput): {
  name: string;
  mediaType: string;
  digest: string;
  size: number;
  annotations: string | null;
  platform: string | null;
  labels: string;
  now: number;
} {
  if (typeof image !== 'object' || image === null) {
    throw new BerthError('invalid-argument', 'ERR_IMAGE_INVALID', 'image must be an object');
  }
  const name = checkName(image.name, 'image name', 'ERR_IMAGE_INVALID_NAME');
  const target = checkDescriptor(image.target, `image "${name}" target`);
  const labels = checkStringMap(image.labels, `image "${name}" labels`, 'ERR_IMAGE_INVALID_LABELS');
  return {
    name,
    mediaType: target.mediaType,
    digest: target.digest,
    size: target.size,
    annotations: target.annotations ? JSON.stringify(target.annotations) : null,
    platform: target.platform ? JSON.stringify(target.platform) : null,
    labels: JSON.stringify(labels),
    now: Date.now(),
  };
}
