import { renameSync } from 'node:fs';
import { access, chmod, chown, lstat, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { BerthError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { mountsUnder } from '../mountinfo.js';
import { diskUsage } from '../disk-usage.js';
import { notFound, SnapshotStore, toInfo, type MetadataDb, type SnapshotRow } from './store.js';
import type { FsInfo, Mount, SnapshotInfo, SnapshotKind, SnapshotOptions, Snapshotter, Usage } from './types.js';

/** Where the kernel's overlay module says whether it has the inodes index feature. */
const OVERLAY_INDEX_PARAM = '/sys/module/overlay/parameters/index';

/** Prefix of the dirs a snapshot is built in before its record exists. */
const NEW_PREFIX = 'new-';

export interface OverlaySnapshotterOptions {
  /** The plugin's root dir; snapshots live in `<root>/snapshots/<id>/{fs,work}`. */
  root: string;
  metadata: MetadataDb;
  log: Logger;
}

/**
 * Snapshots as overlayfs layers. Each snapshot is a dir `snapshots/<id>`
 * holding `fs` (its files: the upper dir while active, a lower dir once
 * committed) and, for active ones, `work` (overlayfs' work dir); its record
 * (key, parent, kind, labels) is a row of the metadata DB.
 *
 * Crash safety: a snapshot's dir is built under a temporary name and renamed
 * to `<id>` inside the transaction that inserts its record, so a kill -9
 * leaves either a complete record with its dir, or no record (and maybe a
 * dir, which `cleanup` removes). Removal deletes the record first and the dir
 * after. `cleanup` runs at init.
 */
export class OverlaySnapshotter implements Snapshotter {
  readonly root: string;
  readonly snapshotsDir: string;
  private readonly store: SnapshotStore;
  private readonly log: Logger;
  /** Temporary dirs of snapshots being created, which cleanup must leave alone. */
  private readonly inFlight = new Set<string>();
  private indexOff = false;

  constructor(opts: OverlaySnapshotterOptions) {
    this.root = opts.root;
    this.snapshotsDir = join(opts.root, 'snapshots');
    this.store = new SnapshotStore(opts.metadata);
    this.log = opts.log;
  }

  /** Creates the snapshots dir and table and removes what a crash left. */
  async init(): Promise<void> {
    if (/[,:\\]/.test(this.root)) {
      throw new BerthError('invalid-argument', 'ERR_SNAPSHOTTER_ROOT', `snapshotter root ${this.root} must not contain ',', ':' or '\\' (they delimit overlay options)`, {
        context: { root: this.root },
      });
    }
    await mkdir(this.snapshotsDir, { recursive: true, mode: 0o700 });
    this.store.migrate();
    this.indexOff = await access(OVERLAY_INDEX_PARAM).then(
      () => true,
      () => false,
    );
    await this.cleanup();
  }

  prepare(key: string, parent?: string, opts?: SnapshotOptions): Promise<Mount[]> {
    return this.create('active', key, parent, opts);
  }

  view(key: string, parent?: string, opts?: SnapshotOptions): Promise<Mount[]> {
    return this.create('view', key, parent, opts);
  }

  async mounts(key: string): Promise<Mount[]> {
    const row = this.store.get(key);
    if (row.kind === 'committed') {
      throw new BerthError('failed-precondition', 'ERR_SNAPSHOT_COMMITTED', `snapshot ${JSON.stringify(key)} is committed: make a view or an active snapshot on it to mount it`, {
        context: { key },
      });
    }
    return this.buildMounts(row, this.store.parentIds(row));
  }

  async commit(name: string, key: string, opts?: SnapshotOptions): Promise<void> {
    checkKey(name);
    const before = this.store.get(key);
    if (before.kind !== 'active') throw notActive(key, before.kind);
    // Measured before the transaction (it is a walk of the tree); the
    // snapshot is no longer written to once its owner commits it.
    const usage = await diskUsage(this.fsDir(before.id));
    this.store.transaction(() => {
      const row = this.store.get(key);
      if (row.id !== before.id || row.kind !== 'active') throw notActive(key, row.kind);
      if (this.store.find(name) !== undefined) throw alreadyExists(name);
      this.store.commit(row.id, name, opts?.labels ?? row.labels, usage, Date.now());
    });
  }

  async remove(key: string): Promise<void> {
    const id = this.store.transaction(() => {
      const row = this.store.get(key);
      const children = this.store.childCount(row.id);
      if (children > 0) {
        throw new BerthError('failed-precondition', 'ERR_SNAPSHOT_HAS_CHILDREN', `snapshot ${JSON.stringify(key)} is the parent of ${children} other snapshot(s)`, {
          context: { key, children },
        });
      }
      this.store.delete(row.id);
      return row.id;
    });
    // The record is gone: if deleting the dir fails or is cut short, it has
    // no record and the next cleanup finishes the job.
    await this.removeDir(String(id));
  }

  async stat(key: string): Promise<SnapshotInfo> {
    return toInfo(this.store.get(key));
  }

  async update(info: Pick<SnapshotInfo, 'key' | 'labels'>, fieldPaths?: readonly string[]): Promise<SnapshotInfo> {
    return this.store.transaction(() => {
      const row = this.store.get(info.key);
      const labels = applyLabelPaths(row.labels, info.labels, fieldPaths);
      const now = Date.now();
      this.store.setLabels(row.id, labels, now);
      return toInfo({ ...row, labels, updatedAt: now });
    });
  }

  async usage(key: string): Promise<Usage> {
    const row = this.store.get(key);
    return row.usage ?? (await diskUsage(this.fsDir(row.id)));
  }

  async *walk(): AsyncIterable<SnapshotInfo> {
    for (const row of this.store.all()) yield toInfo(row);
  }

  async fsInfo(): Promise<FsInfo> {
    let usedBytes = 0;
    let inodesUsed = 0;
    for (const row of this.store.all()) {
      const u = row.usage ?? (await diskUsage(this.fsDir(row.id)));
      usedBytes += u.size;
      inodesUsed += u.inodes;
    }
    return { mountpoint: this.root, usedBytes, inodesUsed };
  }

  async cleanup(): Promise<void> {
    const names = await readdir(this.snapshotsDir);
    const ids = this.store.ids();
    for (const name of names) {
      if (this.inFlight.has(name)) continue;
      if (/^[0-9]+$/.test(name) && ids.has(Number(name))) continue;
      this.log.info({ dir: join(this.snapshotsDir, name) }, 'removing snapshot dir without a record');
      await this.removeDir(name);
    }
  }

  private fsDir(id: number | string): string {
    return join(this.snapshotsDir, String(id), 'fs');
  }

  private workDir(id: number | string): string {
    return join(this.snapshotsDir, String(id), 'work');
  }

  private async create(kind: SnapshotKind, key: string, parent: string | undefined, opts: SnapshotOptions | undefined): Promise<Mount[]> {
    checkKey(key);
    if (this.store.find(key) !== undefined) throw alreadyExists(key);
    const parentRow = parent === undefined ? undefined : this.committedParent(parent);

    const temp = await mkdtemp(join(this.snapshotsDir, NEW_PREFIX));
    const tempName = basename(temp);
    this.inFlight.add(tempName);
    let finalDir: string | undefined;
    try {
      const fs = join(temp, 'fs');
      // Both settle before a failure removes the temp dir, so nothing is made in it afterwards.
      await allSettledOrThrow([
        (async () => {
          await mkdir(fs, { mode: 0o755 });
          // The upper dir's root is the merged root: give it the parent's owner and mode.
          if (parentRow !== undefined) {
            const st = await stat(this.fsDir(parentRow.id));
            await Promise.all([chown(fs, st.uid, st.gid), chmod(fs, st.mode & 0o7777)]);
          }
        })(),
        kind === 'active' ? mkdir(join(temp, 'work'), { mode: 0o700 }) : undefined,
      ]);
      // Not fsynced: a kill -9 keeps the commit, and should power loss drop
      // it, the renamed dir has no record and cleanup() removes it. Whoever
      // uses the snapshot stores its own (fsynced) record after this, which
      // makes this one durable too.
      const row = this.store.unsyncedTransaction(() => {
        if (this.store.find(key) !== undefined) throw alreadyExists(key);
        const p = parent === undefined ? undefined : this.committedParent(parent);
        const id = this.store.insert(key, p?.id ?? null, kind, { ...opts?.labels }, Date.now());
        finalDir = join(this.snapshotsDir, String(id));
        // Inside the transaction: if the rename fails no record is written;
        // if the process dies before the commit, the dir has no record.
        renameSync(temp, finalDir);
        return this.store.get(key);
      });
      return this.buildMounts(row, this.store.parentIds(row));
    } catch (err) {
      await rm(temp, { recursive: true, force: true });
      if (finalDir !== undefined && this.store.find(key) === undefined) await rm(finalDir, { recursive: true, force: true });
      throw err;
    } finally {
      this.inFlight.delete(tempName);
    }
  }

  private committedParent(parent: string): SnapshotRow {
    const row = this.store.find(parent);
    if (row === undefined) {
      throw new BerthError('not-found', 'ERR_SNAPSHOT_PARENT_NOT_FOUND', `parent snapshot ${JSON.stringify(parent)} does not exist`, {
        context: { parent },
      });
    }
    if (row.kind !== 'committed') {
      throw new BerthError('failed-precondition', 'ERR_SNAPSHOT_PARENT_NOT_COMMITTED', `parent snapshot ${JSON.stringify(parent)} is ${row.kind}, not committed`, {
        context: { parent, kind: row.kind },
      });
    }
    return row;
  }

  /**
   * No parent: a bind mount of the snapshot's own dir. A view of one parent:
   * a read-only bind of the parent's dir. Otherwise overlay, lower dirs
   * relative to `snapshotsDir` (the mount's cwd), nearest parent first;
   * views get no upper dir and so are read-only.
   */
  private buildMounts(row: SnapshotRow, parentIds: number[]): Mount[] {
    const readOnly = row.kind === 'view';
    const first = parentIds[0];
    if (first === undefined) {
      return [{ type: 'bind', source: this.fsDir(row.id), options: ['rbind', readOnly ? 'ro' : 'rw'] }];
    }
    if (readOnly && parentIds.length === 1) {
      return [{ type: 'bind', source: this.fsDir(first), options: ['rbind', 'ro'] }];
    }
    const options: string[] = [];
    if (this.indexOff) options.push('index=off');
    if (!readOnly) options.push(`workdir=${this.workDir(row.id)}`, `upperdir=${this.fsDir(row.id)}`);
    options.push(`lowerdir=${parentIds.map((id) => `${id}/fs`).join(':')}`);
    const m: Mount = { type: 'overlay', source: 'overlay', options, cwd: this.snapshotsDir };
    return [m];
  }

  /** Deletes `snapshots/<name>`, unless something is mounted inside it. */
  private async removeDir(name: string): Promise<void> {
    const dir = join(this.snapshotsDir, name);
    try {
      await lstat(dir);
    } catch {
      return;
    }
    const mounted = await mountsUnder(dir);
    if (mounted.length > 0) {
      this.log.error({ dir, mounted }, 'not removing snapshot dir: something is mounted inside it');
      return;
    }
    try {
      await rm(dir, { recursive: true, force: true });
    } catch (err) {
      this.log.warn({ dir, err: errorMessage(err) }, 'cannot remove snapshot dir; cleanup will retry');
    }
  }
}

async function allSettledOrThrow(steps: readonly (Promise<unknown> | undefined)[]): Promise<void> {
  for (const r of await Promise.allSettled(steps)) if (r.status === 'rejected') throw r.reason;
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || key === '' || key.includes('\0')) {
    throw new BerthError('invalid-argument', 'ERR_SNAPSHOT_INVALID_KEY', `invalid snapshot key ${JSON.stringify(key)}`, {
      context: { key: String(key) },
    });
  }
}

function alreadyExists(key: string): BerthError {
  return new BerthError('already-exists', 'ERR_SNAPSHOT_EXISTS', `snapshot ${JSON.stringify(key)} already exists`, { context: { key } });
}

function notActive(key: string, kind: SnapshotKind): BerthError {
  return new BerthError('failed-precondition', 'ERR_SNAPSHOT_NOT_ACTIVE', `snapshot ${JSON.stringify(key)} is ${kind}, not active`, {
    context: { key, kind },
  });
}

function applyLabelPaths(current: Record<string, string>, given: Record<string, string>, fieldPaths: readonly string[] | undefined): Record<string, string> {
  if (fieldPaths === undefined || fieldPaths.length === 0) return { ...given };
  const labels = { ...current };
  for (const path of fieldPaths) {
    if (path === 'labels') return { ...given };
    if (!path.startsWith('labels.') || path.length === 'labels.'.length) {
      throw new BerthError('invalid-argument', 'ERR_SNAPSHOT_FIELD', `cannot update snapshot field ${JSON.stringify(path)}: only labels and labels.<name>`, {
        context: { field: path },
      });
    }
    const name = path.slice('labels.'.length);
    const value = given[name];
    if (value === undefined) delete labels[name];
    else labels[name] = value;
  }
  return labels;
}
