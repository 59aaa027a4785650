/**
 * A mount a caller performs to see a snapshot's filesystem. `mount()` in
 * mount.ts performs a list of them; read its comment before mounting these
 * any other way.
 */
export interface Mount {
  /** `bind` or a kernel filesystem type (`overlay`). */
  type: string;
  /** bind: the directory to bind; overlay: the string `overlay`. */
  source: string;
  /** Sub-path below the mount target, when a mount is not for the target itself. */
  target?: string;
  /**
   * mount(8) `-o` options. bind: `rbind` and `rw` or `ro`. overlay:
   * `lowerdir=` (nearest parent first), `upperdir=` and `workdir=` (absent
   * on read-only views), `index=off` where the kernel has the index feature.
   */
  options: string[];
  /**
   * The directory relative paths in `options` resolve against. Overlay
   * mounts name their lower dirs relative to the snapshotter's
   * `snapshots` dir (`12/fs:11/fs`), which keeps the option string, which
   * the kernel takes in one page (4096 bytes), short for hundreds of
   * layers. The mount(2) call must be made by a process whose working
   * directory is `cwd`: `mount()` in mount.ts spawns mount(8) there.
   */
  cwd?: string;
}

/**
 * active: writable, made by `prepare`; view: read-only, made by `view`;
 * committed: immutable, made by `commit`, the only kind that can be a parent.
 */
export type SnapshotKind = 'active' | 'view' | 'committed';

export interface SnapshotInfo {
  /** The caller's key (for committed snapshots the commit name). */
  key: string;
  /** Key of the committed parent, if any. */
  parent?: string;
  kind: SnapshotKind;
  labels: Record<string, string>;
  createdAt: Date;
  updatedAt: Date;
}

export interface SnapshotOptions {
  labels?: Record<string, string>;
}

/** Bytes of disk blocks and distinct inodes a snapshot's own dir uses (hardlinks count once). */
export interface Usage {
  size: number;
  inodes: number;
}

/** What CRI's ImageFsInfo reports for the snapshotter's filesystem. */
export interface FsInfo {
  /** The snapshotter's root dir; the filesystem holding it is the image filesystem. */
  mountpoint: string;
  usedBytes: number;
  inodesUsed: number;
}

export interface Snapshotter {
  /**
   * Makes an active (writable) snapshot `key` on top of the committed
   * `parent` and returns the mounts that show it. Throws already-exists
   * if `key` is taken, not-found if `parent` does not exist,
   * failed-precondition if `parent` is not committed.
   */
  prepare(key: string, parent?: string, opts?: SnapshotOptions): Promise<Mount[]>;
  /** Like `prepare`, but the snapshot and its mounts are read-only. */
  view(key: string, parent?: string, opts?: SnapshotOptions): Promise<Mount[]>;
  /** The mounts of an active snapshot or view (failed-precondition for committed ones). */
  mounts(key: string): Promise<Mount[]>;
  /**
   * Turns the active snapshot `key` into the committed snapshot `name`
   * (its labels replaced by `opts.labels` when given). `key` stops existing.
   */
  commit(name: string, key: string, opts?: SnapshotOptions): Promise<void>;
  /** Removes a snapshot; failed-precondition while another snapshot has it as parent. */
  remove(key: string): Promise<void>;
  stat(key: string): Promise<SnapshotInfo>;
  /**
   * Changes labels. Without `fieldPaths` all labels are replaced by
   * `info.labels`; with them only the named ones: `labels` (all) or
   * `labels.<name>` (set from `info.labels`, or deleted if absent there).
   */
  update(info: Pick<SnapshotInfo, 'key' | 'labels'>, fieldPaths?: readonly string[]): Promise<SnapshotInfo>;
  usage(key: string): Promise<Usage>;
  walk(): AsyncIterable<SnapshotInfo>;
  fsInfo(): Promise<FsInfo>;
  /** Removes snapshot dirs that have no record (left by a crash or a failed removal). */
  cleanup(): Promise<void>;
}
