import { BerthError } from '../errors.js';
import type { MetadataDB } from '../metadata/index.js';
import type { SnapshotInfo, SnapshotKind, Usage } from './types.js';

/** What the snapshotter needs of the metadata plugin. */
export type MetadataDb = Pick<MetadataDB, 'db' | 'transaction' | 'migrate'>;

export const MIGRATION_NAMESPACE = 'snapshots';

/**
 * The table of snapshot records. `id` names the snapshot's dir
 * (`snapshots/<id>`); AUTOINCREMENT never hands out a committed id twice, so
 * the dir of a removed snapshot that is still being deleted cannot be
 * mistaken for a new one.
 */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE snapshots (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     key TEXT NOT NULL UNIQUE,
     parent_id INTEGER REFERENCES snapshots(id),
     kind TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
     labels TEXT NOT NULL DEFAULT '{}',
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     size INTEGER,
     inodes INTEGER
   );
   CREATE INDEX snapshots_parent ON snapshots(parent_id);`,
];

export interface SnapshotRow {
  id: number;
  key: string;
  parentId: number | null;
  parentKey: string | null;
  kind: SnapshotKind;
  labels: Record<string, string>;
  createdAt: number;
  updatedAt: number;
  /** Stored at commit for committed snapshots. */
  usage: Usage | null;
}

const SELECT = `SELECT s.id, s.key, s.parent_id, p.key AS parent_key, s.kind, s.labels,
  s.created_at, s.updated_at, s.size, s.inodes
  FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id`;

type RawRow = Record<string, unknown>;

function toRow(raw: RawRow): SnapshotRow {
  const size = raw.size;
  const inodes = raw.inodes;
  return {
    id: Number(raw.id),
    key: String(raw.key),
    parentId: raw.parent_id === null ? null : Number(raw.parent_id),
    parentKey: raw.parent_key === null ? null : String(raw.parent_key),
    kind: String(raw.kind) as SnapshotKind,
    labels: JSON.parse(String(raw.labels)) as Record<string, string>,
    createdAt: Number(raw.created_at),
    updatedAt: Number(raw.updated_at),
    usage: size === null || inodes === null ? null : { size: Number(size), inodes: Number(inodes) },
  };
}

export function toInfo(row: SnapshotRow): SnapshotInfo {
  const info: SnapshotInfo = {
    key: row.key,
    kind: row.kind,
    labels: { ...row.labels },
    createdAt: new Date(row.createdAt),
    updatedAt: new Date(row.updatedAt),
  };
  if (row.parentKey !== null) info.parent = row.parentKey;
  return info;
}

export function notFound(key: string): BerthError {
  return new BerthError('not-found', 'ERR_SNAPSHOT_NOT_FOUND', `snapshot ${JSON.stringify(key)} does not exist`, {
    context: { key },
  });
}

/**
 * Snapshot records. Every method is synchronous and meant to run inside
 * `MetadataDb.transaction` where several must agree.
 */
export class SnapshotStore {
  constructor(private readonly metadata: MetadataDb) {}

  migrate(): void {
    this.metadata.migrate(MIGRATION_NAMESPACE, MIGRATIONS);
  }

  transaction<T>(fn: () => T): T {
    return this.metadata.transaction(fn);
  }

  /**
   * A transaction whose commit is written to the WAL but not fsynced
   * (PRAGMA synchronous NORMAL for this one commit): it survives a kill -9
   * of berthd (the write is in the kernel's page cache) but may be lost on
   * power loss, until the next fsynced commit of any table makes it (and
   * everything before it in the WAL) durable. For records whose loss
   * `cleanup()` repairs: a snapshot dir without its record is removed at
   * init. Inside another transaction it is simply part of that one.
   */
  unsyncedTransaction<T>(fn: () => T): T {
    const db = this.metadata.db;
    if (db.isTransaction) return this.metadata.transaction(fn);
    const mode = Number((db.prepare('PRAGMA synchronous').get() as { synchronous: number }).synchronous);
    // 0 OFF, 1 NORMAL: already no fsync at commit in WAL mode.
    if (mode <= 1) return this.metadata.transaction(fn);
    db.exec('PRAGMA synchronous = NORMAL');
    try {
      return this.metadata.transaction(fn);
    } finally {
      db.exec(`PRAGMA synchronous = ${mode}`);
    }
  }

  find(key: string): SnapshotRow | undefined {
    const raw = this.metadata.db.prepare(`${SELECT} WHERE s.key = ?`).get(key);
    return raw === undefined ? undefined : toRow(raw as RawRow);
  }

  get(key: string): SnapshotRow {
    const row = this.find(key);
    if (row === undefined) throw notFound(key);
    return row;
  }

  /** Ids of the row's ancestors, nearest first. */
  parentIds(row: SnapshotRow): number[] {
    if (row.parentId === null) return [];
    const rows = this.metadata.db
      .prepare(
        `WITH RECURSIVE chain(id, parent_id, depth) AS (
           SELECT id, parent_id, 0 FROM snapshots WHERE id = ?
           UNION ALL
           SELECT s.id, s.parent_id, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.parent_id)
         SELECT id FROM chain ORDER BY depth`,
      )
      .all(row.parentId) as RawRow[];
    return rows.map((r) => Number(r.id));
  }

  insert(key: string, parentId: number | null, kind: SnapshotKind, labels: Record<string, string>, now: number): number {
    const result = this.metadata.db
      .prepare(`INSERT INTO snapshots (key, parent_id, kind, labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`)
      .run(key, parentId, kind, JSON.stringify(labels), now, now);
    return Number(result.lastInsertRowid);
  }

  commit(id: number, name: string, labels: Record<string, string>, usage: Usage, now: number): void {
    this.metadata.db
      .prepare(`UPDATE snapshots SET key = ?, kind = 'committed', labels = ?, updated_at = ?, size = ?, inodes = ? WHERE id = ?`)
      .run(name, JSON.stringify(labels), now, usage.size, usage.inodes, id);
  }

  setLabels(id: number, labels: Record<string, string>, now: number): void {
    this.metadata.db.prepare(`UPDATE snapshots SET labels = ?, updated_at = ? WHERE id = ?`).run(JSON.stringify(labels), now, id);
  }

  childCount(id: number): number {
    const raw = this.metadata.db.prepare(`SELECT count(*) AS n FROM snapshots WHERE parent_id = ?`).get(id) as RawRow;
    return Number(raw.n);
  }

  delete(id: number): void {
    this.metadata.db.prepare(`DELETE FROM snapshots WHERE id = ?`).run(id);
  }

  all(): SnapshotRow[] {
    return (this.metadata.db.prepare(`${SELECT} ORDER BY s.id`).all() as RawRow[]).map(toRow);
  }

  ids(): Set<number> {
    const rows = this.metadata.db.prepare(`SELECT id FROM snapshots`).all() as RawRow[];
    return new Set(rows.map((r) => Number(r.id)));
  }
}
