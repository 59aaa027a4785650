import { DatabaseSync } from 'node:sqlite';
import { BerthError, errorMessage, isBerthError, type ErrorContext } from '../errors.js';
import type { Logger } from '../log.js';

/** One schema step: SQL (may hold several statements) or a function given the database. */
export type Migration = string | ((db: DatabaseSync) => void);

export type SynchronousMode = 'FULL' | 'NORMAL';

export interface DatabaseOptions {
  /** PRAGMA synchronous in WAL mode; see the metadata plugin's config text. */
  synchronous: SynchronousMode;
  /** How long a statement waits for another connection's lock before failing. */
  busyTimeoutMs: number;
}

interface SqliteError extends Error {
  code: 'ERR_SQLITE_ERROR';
  errcode: number;
  errstr: string;
}

function isSqliteError(err: unknown): err is SqliteError {
  return err instanceof Error && (err as Partial<SqliteError>).code === 'ERR_SQLITE_ERROR';
}

// Primary result codes (the low byte of an extended code).
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_FULL = 13;

/**
 * A BerthError for what went wrong in SQLite; BerthErrors and errors that are
 * not SQLite's (thrown by a caller's transaction body) pass through unchanged.
 */
export function sqliteError(err: unknown, what: string, context: ErrorContext = {}): unknown {
  if (isBerthError(err) || !isSqliteError(err)) return err;
  const primary = err.errcode & 0xff;
  const ctx = { ...context, sqlite: err.errstr, errcode: err.errcode };
  if (primary === SQLITE_BUSY || primary === SQLITE_LOCKED) {
    return new BerthError('unavailable', 'ERR_METADATA_BUSY', `${what}: database is locked`, { context: ctx, cause: err });
  }
  if (primary === SQLITE_FULL) {
    return new BerthError('resource-exhausted', 'ERR_METADATA_FULL', `${what}: disk full`, { context: ctx, cause: err });
  }
  return new BerthError('internal', 'ERR_METADATA_SQLITE', `${what}: ${err.message}`, { context: ctx, cause: err });
}

/** Runs a read, turning SQLite failures into BerthErrors. */
export function query<T>(what: string, fn: () => T, context: ErrorContext = {}): T {
  try {
    return fn();
  } catch (err) {
    throw sqliteError(err, what, context);
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/**
 * The daemon's SQLite database: WAL journal, foreign keys on, a busy timeout,
 * synchronous transactions (nested ones become savepoints) and per-namespace
 * schema migrations, so each plugin owns its tables.
 */
export class MetadataDB {
  readonly db: DatabaseSync;
  readonly path: string;
  protected readonly log: Logger;
  /** How many transaction() calls are running, outermost included. */
  private depth = 0;

  constructor(path: string, log: Logger, opts: DatabaseOptions) {
    this.path = path;
    this.log = log;
    try {
      this.db = new DatabaseSync(path, { timeout: opts.busyTimeoutMs, enableForeignKeyConstraints: true });
    } catch (err) {
      throw sqliteError(err, `open ${path}`, { path });
    }
    try {
      const mode = this.db.prepare('PRAGMA journal_mode = WAL').get() as { journal_mode?: string } | undefined;
      if (mode?.journal_mode !== 'wal') {
        throw new BerthError('internal', 'ERR_METADATA_WAL', `${path}: could not switch to WAL (journal_mode ${String(mode?.journal_mode)})`, {
          context: { path },
        });
      }
      this.db.exec(`PRAGMA synchronous = ${opts.synchronous === 'NORMAL' ? 'NORMAL' : 'FULL'}`);
      this.db.exec('PRAGMA foreign_keys = ON');
      const check = this.db.prepare('PRAGMA quick_check').all() as { quick_check: string }[];
      if (check.length !== 1 || check[0]?.quick_check !== 'ok') {
        throw new BerthError('internal', 'ERR_METADATA_CORRUPT', `${path} fails its integrity check: ${check.map((r) => r.quick_check).join('; ')}`, {
          context: { path },
        });
      }
      this.db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
        namespace TEXT NOT NULL,
        version INTEGER NOT NULL CHECK (version > 0),
        applied_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, version)
      ) STRICT`);
    } catch (err) {
      this.db.close();
      throw sqliteError(err, `open ${path}`, { path });
    }
  }

  /**
   * Runs `fn` in a transaction: BEGIN IMMEDIATE (takes the write lock up
   * front, so a read-then-write body cannot fail to upgrade), COMMIT on
   * return, ROLLBACK on throw. A call inside another becomes a SAVEPOINT,
   * undone alone if it throws. `fn` must be synchronous: a returned promise
   * is rolled back and refused, since its awaited work would run after COMMIT.
   */
  transaction<T>(fn: () => T): T {
    const outer = this.depth === 0;
    const savepoint = `berth_sp_${this.depth}`;
    try {
      this.db.exec(outer ? 'BEGIN IMMEDIATE' : `SAVEPOINT ${savepoint}`);
    } catch (err) {
      throw sqliteError(err, 'begin transaction', { path: this.path });
    }
    this.depth++;
    let result: T;
    try {
      result = fn();
      if (isThenable(result)) {
        Promise.resolve(result).catch(() => undefined);
        throw new BerthError('internal', 'ERR_METADATA_ASYNC_TRANSACTION', 'transaction body returned a promise; it must be synchronous', {
          context: { path: this.path },
        });
      }
    } catch (err) {
      this.depth--;
      this.undo(outer, savepoint);
      throw sqliteError(err, 'transaction', { path: this.path });
    }
    this.depth--;
    try {
      this.db.exec(outer ? 'COMMIT' : `RELEASE ${savepoint}`);
    } catch (err) {
      this.undo(outer, savepoint);
      throw sqliteError(err, 'commit', { path: this.path });
    }
    return result;
  }

  /**
   * Applies, in order and each in its own transaction, the migrations of
   * `namespace` not applied yet: migration i (0-based) is version i + 1.
   * Returns how many ran. Never edit or reorder a shipped migration; append.
   */
  migrate(namespace: string, migrations: readonly Migration[]): number {
    if (typeof namespace !== 'string' || namespace.length === 0) {
      throw new BerthError('invalid-argument', 'ERR_METADATA_MIGRATION_NAMESPACE', 'migration namespace must be a non-empty string');
    }
    const current = this.schemaVersion(namespace);
    if (current > migrations.length) {
      throw new BerthError(
        'failed-precondition',
        'ERR_METADATA_SCHEMA_TOO_NEW',
        `schema "${namespace}" is at version ${current} but this berthd knows only ${migrations.length}; was the database written by a newer berthd?`,
        { context: { namespace, current, known: migrations.length, path: this.path } },
      );
    }
    const applied = this.db.prepare('SELECT 1 FROM schema_migrations WHERE namespace = ? AND version = ?');
    const record = this.db.prepare('INSERT INTO schema_migrations (namespace, version, applied_at) VALUES (?, ?, ?)');
    let ran = 0;
    for (let version = current + 1; version <= migrations.length; version++) {
      const migration = migrations[version - 1]!;
      try {
        this.transaction(() => {
          // Checked again under the write lock, in case another connection migrated meanwhile.
          if (applied.get(namespace, version)) return;
          if (typeof migration === 'string') this.db.exec(migration);
          else migration(this.db);
          record.run(namespace, version, Date.now());
          ran++;
        });
      } catch (err) {
        const cause = isBerthError(err) ? err.cause ?? err : err;
        throw new BerthError('internal', 'ERR_METADATA_MIGRATION', `migration ${namespace} v${version} failed: ${errorMessage(cause)}`, {
          context: { namespace, version, path: this.path },
          cause: err,
        });
      }
      this.log.info({ namespace, version }, 'schema migration applied');
    }
    return ran;
  }

  /** The highest applied migration of `namespace`, 0 if none. */
  schemaVersion(namespace: string): number {
    return query('read schema version', () => {
      const row = this.db.prepare('SELECT max(version) AS v FROM schema_migrations WHERE namespace = ?').get(namespace) as { v: number | null };
      return row.v ?? 0;
    });
  }

  /** Closes the database; a later call is a no-op. */
  close(): void {
    if (this.db.isOpen) this.db.close();
  }

  private undo(outer: boolean, savepoint: string): void {
    try {
      if (outer) {
        // SQLite may already have rolled back on its own (e.g. SQLITE_FULL).
        if (this.db.isTransaction) this.db.exec('ROLLBACK');
      } else {
        this.db.exec(`ROLLBACK TO ${savepoint}; RELEASE ${savepoint}`);
      }
    } catch (err) {
      this.log.error({ err: errorMessage(err), path: this.path }, 'rollback failed');
    }
  }
}
