/**
 * Network namespaces for pod sandboxes, each pinned by a bind mount of its
 * nsfs inode onto a file in berthd's own dir (not /var/run/netns, so
 * `ip netns` does not list them and nothing else manages them).
 *
 * A namespace lives while something holds it: the bind mount keeps it alive
 * with no process in it, so CNI plugins can set it up before the pause
 * container starts and it survives container restarts. util-linux
 * `unshare --net=<file> true` makes one: it unshares a new network namespace
 * and bind-mounts it onto the file (one spawn, a few ms; another command than
 * `true` can ride along).
 *
 * Such a bind only works when the file's mount is not shared (a shared parent
 * would propagate the nsfs mount and the kernel refuses it), so the dir is
 * made a private bind mount of itself at open, as containerd does for its
 * netns dir, and unmounted again at close once no namespace is pinned in it
 * (also a mount an earlier, killed berthd left).
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, realpath, statfs, unlink } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { BerthError, errorMessage, isErrnoCode } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { listMountPoints, unmount } from '../core/mountinfo.js';

const run = promisify(execFile);

/** `f_type` statfs reports for a bind-mounted namespace file (NSFS_MAGIC). */
export const NSFS_MAGIC = 0x6e736673;

/** Names of namespace files: one path component, no hidden files. */
const NETNS_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** A name/path that cannot be used; from bad input, so an invalid argument. */
function invalid(message: string, context: Record<string, string>): never {
  throw new BerthError('invalid-argument', 'ERR_NETNS_INVALID', message, { context });
}

/** Whether `file` is a pinned namespace (an nsfs mount); false when it is missing or a plain file. */
export async function isNetnsPinned(file: string): Promise<boolean> {
  try {
    return Number((await statfs(file)).type) === NSFS_MAGIC;
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR')) return false;
    throw err;
  }
}

export interface NetnsManagerOptions {
  log?: Logger;
}

/** Creates, lists and removes the pinned network namespaces of one dir. */
export class NetnsManager {
  /** Absolute, symlink-free path of the dir holding the namespace files. */
  readonly dir: string;
  private readonly log: Logger | undefined;
  private closed = false;

  private constructor(dir: string, opts: NetnsManagerOptions) {
    this.dir = dir;
    this.log = opts.log;
  }

  /** Create the dir if needed and make it a private mount point. */
  static async open(dir: string, opts: NetnsManagerOptions = {}): Promise<NetnsManager> {
    let real: string;
    try {
      await mkdir(dir, { recursive: true, mode: 0o711 });
      // Mountinfo shows resolved paths: compare and mount with the real one.
      real = await realpath(dir);
    } catch (err) {
      throw new BerthError('internal', 'ERR_NETNS_DIR', `cannot create netns dir ${dir}: ${errorMessage(err)}`, {
        context: { dir },
        cause: err,
      });
    }
    const manager = new NetnsManager(real, opts);
    await manager.prepareDir();
    return manager;
  }

  private async prepareDir(): Promise<void> {
    const dir = this.dir;
    try {
      // A mount left by an earlier run (pods still pinned under it) is kept as it is.
      if (!(await listMountPoints()).includes(dir)) {
        await run('mount', ['--bind', dir, dir]);
      }
      await run('mount', ['--make-private', dir]);
    } catch (err) {
      throw new BerthError('internal', 'ERR_NETNS_DIR', `cannot prepare netns dir ${dir}: ${errorMessage(err)}`, {
        context: { dir },
        cause: err,
      });
    }
  }

  private pathOf(name: string): string {
    if (!NETNS_NAME.test(name)) invalid(`invalid netns name ${JSON.stringify(name)}`, { dir: this.dir, name });
    return path.join(this.dir, name);
  }

  /** The absolute path of `file` when it is an entry of the dir. */
  private entry(file: string): string {
    const abs = path.resolve(file);
    if (path.dirname(abs) !== this.dir || !NETNS_NAME.test(path.basename(abs))) {
      invalid(`${file} is not a netns file of ${this.dir}`, { dir: this.dir, path: file });
    }
    return abs;
  }

  /**
   * Create a new network namespace pinned at `<dir>/<name>` (a random
   * `cni-<uuid>` name when none is given); returns its path. Fails with
   * ERR_NETNS_EXISTS when the file is already there.
   *
   * `alsoRun` is a command line run in the same spawn once the namespace is
   * pinned (unshare execs it instead of `true`; it runs inside the new
   * namespace, so it must not depend on the host's network), to spare the
   * daemon a second spawn: each fork of a daemon this size blocks its event
   * loop for milliseconds. If it fails, the namespace is removed and the
   * error carries its stderr; undoing what it did is the caller's.
   */
  async create(name: string = `cni-${randomUUID()}`, options: { alsoRun?: readonly string[] } = {}): Promise<string> {
    if (this.closed) throw new BerthError('failed-precondition', 'ERR_NETNS_CLOSED', 'netns manager is closed', { context: { dir: this.dir } });
    const file = this.pathOf(name);
    try {
      // The mount point: created exclusively, so two creates never share a file.
      await (await open(file, 'wx', 0o444)).close();
    } catch (err) {
      if (isErrnoCode(err, 'EEXIST')) {
        throw new BerthError('already-exists', 'ERR_NETNS_EXISTS', `netns ${file} already exists`, { context: { path: file } });
      }
      throw new BerthError('internal', 'ERR_NETNS_CREATE', `cannot create netns file ${file}: ${errorMessage(err)}`, {
        context: { path: file },
        cause: err,
      });
    }
    try {
      const command = options.alsoRun !== undefined && options.alsoRun.length > 0 ? options.alsoRun : ['true'];
      await run('unshare', [`--net=${file}`, ...command]);
      if (!(await isNetnsPinned(file))) throw new Error('unshare exited without pinning the namespace');
    } catch (err) {
      const stderr = (err as { stderr?: unknown }).stderr;
      const detail = typeof stderr === 'string' && stderr.trim() !== '' ? stderr.trim() : errorMessage(err);
      await this.remove(file).catch((cleanup: unknown) =>
        this.log?.warn({ path: file, err: errorMessage(cleanup) }, 'cannot remove half-made netns'),
      );
      throw new BerthError('internal', 'ERR_NETNS_CREATE', `cannot create network namespace ${file}: ${detail}`, {
        context: { path: file },
        cause: err,
      });
    }
    return file;
  }

  /**
   * Unpin and delete a namespace file of this dir (a busy mount is detached
   * lazily). Removing a missing one succeeds: callers retry after crashes.
   * The namespace itself goes once no process is left in it.
   */
  async remove(file: string): Promise<void> {
    const abs = this.entry(file);
    try {
      // A file can be mounted over more than once; each unmount peels one.
      for (let i = 0; i < 8 && (await isNetnsPinned(abs)); i++) await unmount(abs);
      await unlink(abs);
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) return;
      if (err instanceof BerthError) throw err;
      throw new BerthError('internal', 'ERR_NETNS_REMOVE', `cannot remove network namespace ${abs}: ${errorMessage(err)}`, {
        context: { path: abs },
        cause: err,
      });
    }
  }

  /** Whether `file` is a live namespace pinned in this dir. */
  async exists(file: string): Promise<boolean> {
    return isNetnsPinned(this.entry(file));
  }

  /** Paths of the dir's namespace files, sorted (half-made ones included: `remove` them). */
  async list(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) return [];
      throw err;
    }
    return names
      .filter((n) => NETNS_NAME.test(n))
      .sort()
      .map((n) => path.join(this.dir, n));
  }

  /**
   * Undo the dir's bind mount (every one stacked on it, whoever made it: a
   * berthd killed earlier leaves its mount behind) unless a namespace is
   * still pinned under it (pinned ones belong to pods that outlive the
   * daemon, and the next open reuses the mount).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (;;) {
      const points = await listMountPoints();
      const pinned = points.filter((p) => path.dirname(p) === this.dir);
      if (pinned.length > 0) {
        this.log?.info({ dir: this.dir, pinned: pinned.length }, 'netns dir keeps its mount: namespaces are still pinned');
        return;
      }
      if (!points.includes(this.dir)) return;
      await unmount(this.dir);
    }
  }
}
