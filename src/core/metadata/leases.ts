import type { StatementSync } from 'node:sqlite';
import { BerthError } from '../errors.js';
import { query, type MetadataDB, type Migration } from './database.js';
import { checkName, checkStringMap } from './validate.js';

export const LEASE_RESOURCE_TYPES = ['content', 'snapshot', 'ingest'] as const;
export type LeaseResourceType = (typeof LEASE_RESOURCE_TYPES)[number];

/** Something a lease keeps from garbage collection: a blob digest, snapshot key, ingest ref. */
export interface LeaseResource {
  type: LeaseResourceType;
  id: string;
}

/** Holds resources while they are not yet referenced by images or containers (e.g. during a pull). */
export interface Lease {
  id: string;
  labels: Record<string, string>;
  createdAt: Date;
  /** Absent: lives until deleted. */
  expiresAt?: Date;
}

export const LEASE_MIGRATIONS: readonly Migration[] = [
  `CREATE TABLE leases (
    id TEXT PRIMARY KEY CHECK (length(id) > 0),
    labels TEXT NOT NULL CHECK (json_valid(labels)),
    created_at INTEGER NOT NULL,
    expires_at INTEGER
  ) STRICT;
  CREATE INDEX leases_by_expiry ON leases (expires_at);
  CREATE TABLE lease_resources (
    lease_id TEXT NOT NULL REFERENCES leases (id) ON DELETE CASCADE,
    type TEXT NOT NULL CHECK (type IN ('content', 'snapshot', 'ingest')),
    id TEXT NOT NULL CHECK (length(id) > 0),
    PRIMARY KEY (lease_id, type, id)
  ) STRICT;
  CREATE INDEX lease_resources_by_resource ON lease_resources (type, id);`,
];

interface LeaseRow {
  id: string;
  labels: string;
  created_at: number;
  expires_at: number | null;
}

function fromRow(row: LeaseRow): Lease {
  const lease: Lease = { id: row.id, labels: JSON.parse(row.labels) as Record<string, string>, createdAt: new Date(row.created_at) };
  if (row.expires_at !== null) lease.expiresAt = new Date(row.expires_at);
  return lease;
}

function notFound(id: string): BerthError {
  return new BerthError('not-found', 'ERR_LEASE_NOT_FOUND', `lease "${id}" not found`, { context: { lease: id } });
}

function checkResource(resource: LeaseResource): LeaseResource {
  if (typeof resource !== 'object' || resource === null || !LEASE_RESOURCE_TYPES.includes(resource.type)) {
    throw new BerthError('invalid-argument', 'ERR_LEASE_INVALID_RESOURCE', `lease resource type must be one of ${LEASE_RESOURCE_TYPES.join(', ')}`);
  }
  return { type: resource.type, id: checkName(resource.id, 'lease resource id', 'ERR_LEASE_INVALID_RESOURCE') };
}

function checkTime(value: Date | undefined, what: string): number | null {
  if (value === undefined) return null;
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
    throw new BerthError('invalid-argument', 'ERR_LEASE_INVALID_TIME', `${what} must be a valid Date`);
  }
  return value.getTime();
}

/**
 * Leases in the `leases` / `lease_resources` tables. A lease is live until
 * deleted or until its `expiresAt` has passed; `referenced()` lists what live
 * leases hold, which the garbage collector must keep. Expired leases stay in
 * the table (holding nothing) until `deleteExpired()` removes them.
 */
export class LeaseStore {
  private readonly meta: MetadataDB;
  private readonly selectOne: StatementSync;
  private readonly selectAll: StatementSync;
  private readonly insert: StatementSync;
  private readonly deleteOne: StatementSync;
  private readonly insertResource: StatementSync;
  private readonly deleteResource: StatementSync;
  private readonly selectResources: StatementSync;
  private readonly selectReferenced: StatementSync;
  private readonly selectExpired: StatementSync;

  constructor(meta: MetadataDB) {
    this.meta = meta;
    meta.migrate('leases', LEASE_MIGRATIONS);
    const db = meta.db;
    this.selectOne = db.prepare('SELECT * FROM leases WHERE id = ?');
    this.selectAll = db.prepare('SELECT * FROM leases ORDER BY id');
    this.insert = db.prepare(
      'INSERT INTO leases (id, labels, created_at, expires_at) VALUES (:id, :labels, :now, :expiresAt) ON CONFLICT (id) DO NOTHING',
    );
    this.deleteOne = db.prepare('DELETE FROM leases WHERE id = ?');
    this.insertResource = db.prepare('INSERT INTO lease_resources (lease_id, type, id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING');
    this.deleteResource = db.prepare('DELETE FROM lease_resources WHERE lease_id = ? AND type = ? AND id = ?');
    this.selectResources = db.prepare('SELECT type, id FROM lease_resources WHERE lease_id = ? ORDER BY type, id');
    this.selectReferenced = db.prepare(`SELECT DISTINCT r.type, r.id FROM lease_resources r JOIN leases l ON l.id = r.lease_id
      WHERE l.expires_at IS NULL OR l.expires_at > ? ORDER BY r.type, r.id`);
    this.selectExpired = db.prepare('SELECT id FROM leases WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY id');
  }

  /** Creates a lease; already-exists `ERR_LEASE_EXISTS` if the id is taken. */
  create(id: string, opts: { labels?: Record<string, string>; expiresAt?: Date } = {}): Lease {
    checkName(id, 'lease id', 'ERR_LEASE_INVALID_ID');
    const params = {
      id,
      labels: JSON.stringify(checkStringMap(opts.labels, `lease "${id}" labels`, 'ERR_LEASE_INVALID_LABELS')),
      now: Date.now(),
      expiresAt: checkTime(opts.expiresAt, `lease "${id}" expiresAt`),
    };
    return this.meta.transaction(() => {
      if (Number(this.insert.run(params).changes) === 0) {
        throw new BerthError('already-exists', 'ERR_LEASE_EXISTS', `lease "${id}" already exists`, { context: { lease: id } });
      }
      return this.get(id);
    });
  }

  /** The lease `id` (expired or not); not-found `ERR_LEASE_NOT_FOUND` if absent. */
  get(id: string): Lease {
    const row = query('get lease', () => this.selectOne.get(id) as LeaseRow | undefined, { lease: id });
    if (!row) throw notFound(id);
    return fromRow(row);
  }

  /** Every lease, expired ones included, by id. */
  list(): Lease[] {
    return query('list leases', () => this.selectAll.all() as unknown as LeaseRow[]).map(fromRow);
  }

  /** Deletes a lease and releases its resources; not-found if absent. */
  delete(id: string): void {
    this.meta.transaction(() => {
      if (Number(this.deleteOne.run(id).changes) === 0) throw notFound(id);
    });
  }

  /**
   * Puts a resource under the lease (no-op if already there). Not-found if
   * the lease is absent; failed-precondition `ERR_LEASE_EXPIRED` if it has
   * expired, since an expired lease protects nothing.
   */
  addResource(leaseId: string, resource: LeaseResource, now: Date = new Date()): void {
    const { type, id } = checkResource(resource);
    this.meta.transaction(() => {
      const lease = this.get(leaseId);
      if (lease.expiresAt && lease.expiresAt.getTime() <= now.getTime()) {
        throw new BerthError('failed-precondition', 'ERR_LEASE_EXPIRED', `lease "${leaseId}" expired at ${lease.expiresAt.toISOString()}`, {
          context: { lease: leaseId },
        });
      }
      this.insertResource.run(leaseId, type, id);
    });
  }

  /** Takes a resource off the lease; false if it was not on it. Not-found if the lease is absent. */
  removeResource(leaseId: string, resource: LeaseResource): boolean {
    const { type, id } = checkResource(resource);
    return this.meta.transaction(() => {
      this.get(leaseId);
      return Number(this.deleteResource.run(leaseId, type, id).changes) > 0;
    });
  }

  /** The resources of one lease; not-found if the lease is absent. */
  resources(leaseId: string): LeaseResource[] {
    this.get(leaseId);
    return query('list lease resources', () => this.selectResources.all(leaseId) as unknown as LeaseResource[], { lease: leaseId }).map(
      (r) => ({ type: r.type, id: r.id }),
    );
  }

  /** Every resource held by a live lease at `now`, each once. */
  referenced(now: Date = new Date()): LeaseResource[] {
    return query('list leased resources', () => this.selectReferenced.all(now.getTime()) as unknown as LeaseResource[]).map((r) => ({
      type: r.type,
      id: r.id,
    }));
  }

  /** Deletes leases expired at `now` (with their resource entries); returns their ids. */
  deleteExpired(now: Date = new Date()): string[] {
    return this.meta.transaction(() => {
      const ids = (this.selectExpired.all(now.getTime()) as { id: string }[]).map((r) => r.id);
      for (const id of ids) this.deleteOne.run(id);
      return ids;
    });
  }
}
