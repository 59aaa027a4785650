/**
 * One kind of CRI record (sandboxes or containers): an in-memory map that
 * every read is answered from, written through to a metadata DB table in a
 * transaction before the change shows in memory, plus the name index.
 */
import type { StatementSync } from 'node:sqlite';
import { BerthError } from '../../core/errors.js';
import type { MetadataDB } from '../../core/metadata/index.js';
import { matchId } from './ids.js';
import { NameIndex } from './names.js';
import { decodeRecord, encodeRecord, type RecordCodec } from './records.js';

export interface StoredRecord {
  id: string;
  name: string;
}

/** Extra columns a table keeps next to `id` and `record` (e.g. the sandbox id of a container). */
export type ExtraColumns<R> = Record<string, (record: R) => string>;

export class RecordStore<R extends StoredRecord> {
  protected readonly records = new Map<string, R>();
  readonly names: NameIndex;
  private readonly upsert: StatementSync;
  private readonly remove: StatementSync;
  private readonly selectAll: StatementSync;
  private readonly extraNames: string[];

  constructor(
    private readonly db: MetadataDB,
    private readonly table: string,
    private readonly codec: RecordCodec<R>,
    private readonly extra: ExtraColumns<R> = {},
  ) {
    this.names = new NameIndex(codec.kind);
    this.extraNames = Object.keys(extra);
    const columns = ['id', ...this.extraNames, 'record'];
    this.upsert = db.db.prepare(
      `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')}) ` +
        `ON CONFLICT (id) DO UPDATE SET ${columns.slice(1).map((c) => `${c} = excluded.${c}`).join(', ')}`,
    );
    this.remove = db.db.prepare(`DELETE FROM ${table} WHERE id = ?`);
    this.selectAll = db.db.prepare(`SELECT record FROM ${table}`);
  }

  /** Reads every stored record into memory (at start-up) and reserves their names. */
  load(): R[] {
    const rows = this.selectAll.all() as Array<{ record: string }>;
    for (const row of rows) {
      const record = decodeRecord(this.codec, row.record);
      this.records.set(record.id, record);
      this.names.reserve(record.name, record.id);
      this.indexed(record, undefined);
    }
    return [...this.records.values()];
  }

  get(id: string): R | undefined {
    return this.records.get(id);
  }

  /** The record with this id or unique id prefix; undefined when none. */
  find(idOrPrefix: string): R | undefined {
    if (idOrPrefix !== '') {
      const exact = this.records.get(idOrPrefix);
      if (exact !== undefined) return exact;
    }
    const id = matchId(this.records.keys(), idOrPrefix, this.codec.kind);
    return id === undefined ? undefined : this.records.get(id);
  }

  /** Like find, but not-found when none. */
  resolve(idOrPrefix: string): R {
    const record = this.find(idOrPrefix);
    if (record === undefined) {
      throw new BerthError('not-found', `ERR_CRI_${this.codec.kind.toUpperCase()}_NOT_FOUND`, `${this.codec.kind} ${JSON.stringify(idOrPrefix)} not found`, {
        context: { [this.codec.kind]: idOrPrefix },
      });
    }
    return record;
  }

  list(): R[] {
    return [...this.records.values()];
  }

  get size(): number {
    return this.records.size;
  }

  /** Stores a new record; its name must be free or reserved for its id. */
  add(record: R): R {
    if (this.records.has(record.id)) {
      throw new BerthError('already-exists', 'ERR_CRI_ID_EXISTS', `${this.codec.kind} ${record.id} already exists`, {
        context: { [this.codec.kind]: record.id },
      });
    }
    this.names.reserve(record.name, record.id);
    this.write(record);
    this.records.set(record.id, record);
    this.indexed(record, undefined);
    return record;
  }

  /**
   * Replaces the record `id` by `change(current)` (which must return a new
   * object, not mutate the current one) and stores it; not-found when gone.
   */
  update(id: string, change: (current: R) => R): R {
    const current = this.records.get(id);
    if (current === undefined) {
      throw new BerthError('not-found', `ERR_CRI_${this.codec.kind.toUpperCase()}_NOT_FOUND`, `${this.codec.kind} ${id} not found`, {
        context: { [this.codec.kind]: id },
      });
    }
    const next = change(current);
    if (next === current || next.id !== id || next.name !== current.name) {
      throw new BerthError('internal', 'ERR_CRI_RECORD_UPDATE', `an update of ${this.codec.kind} ${id} must return a new record with the same id and name`);
    }
    this.write(next);
    this.records.set(id, next);
    this.indexed(next, current);
    return next;
  }

  /** Shorthand for update with a patch. */
  patch(id: string, fields: Partial<Omit<R, 'id' | 'name'>>): R {
    return this.update(id, (current) => ({ ...current, ...fields }));
  }

  /** Deletes the record and releases its name; deleting a missing one is fine. */
  delete(id: string): void {
    const current = this.records.get(id);
    this.db.transaction(() => this.remove.run(id));
    if (current === undefined) return;
    this.records.delete(id);
    this.names.release(current.name, id);
    this.unindexed(current);
  }

  private write(record: R): void {
    const text = encodeRecord(this.codec, record);
    const values = [record.id, ...this.extraNames.map((c) => this.extra[c]!(record)), text];
    this.db.transaction(() => this.upsert.run(...values));
  }

  /** Hooks for subclasses keeping secondary indexes. */
  protected indexed(_record: R, _previous: R | undefined): void {}
  protected unindexed(_record: R): void {}
}
