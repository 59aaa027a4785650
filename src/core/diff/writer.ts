import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { copyFile, open } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { BerthError, isErrnoCode } from '../errors.js';
import type { Logger } from '../log.js';
import { getXattr, isPlainXattrName, mknod, setXattrs } from './fs-tools.js';
import type { TarHeader } from './tar-reader.js';
import type { ApplyTarget } from './target.js';

const WHITEOUT_PREFIX = '.wh.';
const WHITEOUT_META_PREFIX = '.wh..wh.';
const WHITEOUT_OPAQUE = '.wh..wh..opq';
const OVERLAY_OPAQUE_XATTR = 'trusted.overlay.opaque';
/** Xattrs that steer overlayfs itself; a layer must not smuggle them in. */
const OVERLAY_XATTR_PREFIXES = ['trusted.overlay.', 'user.overlay.'];
/** Files up to this size are written with synchronous calls (see writeFile). */
const SMALL_FILE = 256 * 1024;
/**
 * Resolving a path gives up at this many symlinks: a loop, or a chain longer
 * than any real image needs (Linux gives up after 40 with ELOOP).
 */
const SYMLINK_LIMIT = 40;
const WRITE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

export function unsafePath(message: string, name: string): BerthError {
  return new BerthError('invalid-argument', 'ERR_LAYER_UNSAFE_PATH', `layer entry ${JSON.stringify(name)}: ${message}`, {
    context: { entry: name },
  });
}

/**
 * A tar path as a clean relative path (`a/b`, `''` for the root): leading
 * slashes and `.` are dropped, `..` is resolved lexically and refused if it
 * would climb above the root.
 */
export function cleanPath(name: string): string {
  const parts: string[] = [];
  for (const seg of name.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (parts.length === 0) throw unsafePath('climbs out of the layer root', name);
      parts.pop();
    } else {
      parts.push(seg);
    }
  }
  return parts.join('/');
}

function isWhiteoutDevice(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

function ancestors(rel: string): string[] {
  const out: string[] = [];
  for (let i = rel.indexOf('/'); i !== -1; i = rel.indexOf('/', i + 1)) out.push(rel.slice(0, i));
  return out;
}

function isUnder(rel: string, dir: string): boolean {
  return dir === '' || rel === dir || rel.startsWith(`${dir}/`);
}

interface Times {
  atime: number;
  mtime: number;
}

/**
 * Writes the entries of one layer into a directory, never outside it.
 *
 * Paths: the parent of an entry is resolved within the root, as Docker and
 * containerd do, since real images write through symlinks of earlier
 * layers (`lib/x86_64-linux-gnu/...` over `lib -> usr/lib` in usrmerge
 * images): a symlink among the parent components, found in the layer's view
 * (the target dir, then on overlay the lower dirs), is replaced by its
 * target read as if the root were `/`, `..` stops at the root, and too many
 * links (a loop) fail. The resolved parents are then checked with lstat
 * (and remembered) to be real directories of the target dir, missing ones
 * created, so nothing is ever written outside it. The last component is
 * never followed: it is created with calls that do not follow symlinks
 * (open O_EXCL|O_NOFOLLOW, mkdir, symlink, link, mknod), after removing
 * whatever was there. Hardlink targets are resolved the same way and must
 * be non-directories inside the target.
 *
 * Overlay targets (writing an upper dir): `.wh.NAME` becomes a 0/0 char
 * device NAME (hardlinks of one device made per layer), `.wh..wh..opq` the
 * xattr `trusted.overlay.opaque=y` on its dir. A parent that exists only in a
 * lower dir is created with the lower dir's owner, mode and times, as
 * overlayfs' copy-up would; a hardlink to a file only in a lower dir copies
 * that file up first. Plain targets (a bind mount's dir): whiteouts delete.
 * Either way, whiteouts only act on what lower layers put there: what this
 * layer itself wrote stays (OCI image-spec, layer.md).
 *
 * Directory times, xattrs and opaque markers are applied by `finish()`, after
 * everything else, so later entries do not disturb them.
 */
export class LayerWriter {
  private readonly root: string;
  private readonly lowers: readonly string[];
  private readonly overlay: boolean;
  private readonly log: Logger;
  /** Relative paths checked or made to be real directories (not symlinks). */
  private readonly knownDirs = new Set<string>(['']);
  /** Paths this layer created, with their ancestors. */
  private readonly written = new Set<string>();
  /** Overlay: dirs this layer made opaque, and paths it whited out. */
  private readonly opaqueDirs = new Set<string>();
  private readonly whiteouts = new Set<string>();
  private readonly dirTimes = new Map<string, Times>();
  private readonly xattrs = new Map<string, Map<string, Buffer>>();
  /** Host paths of lower dirs, and whether each is opaque. */
  private readonly lowerOpaque = new Map<string, boolean>();
  /** Overlay: the 0/0 device every whiteout of this layer is a hardlink of. */
  private template: string | undefined;
  private readonly templateName = `.berth-whiteout-${randomBytes(8).toString('hex')}`;
  private lossyNames = 0;

  constructor(target: ApplyTarget, log: Logger) {
    this.root = target.root;
    this.lowers = target.lowers;
    this.overlay = target.overlay;
    this.log = log;
  }

  private abs(rel: string): string {
    return rel === '' ? this.root : join(this.root, rel);
  }

  /** Applies one entry; `body` is its content (regular files). */
  async entry(h: TarHeader, body: AsyncIterable<Buffer>): Promise<void> {
    const clean = cleanPath(h.name);
    if (clean === '') return; // the root dir itself belongs to the snapshot
    if (clean.includes('\uFFFD') && this.lossyNames++ < 5) {
      this.log.warn({ entry: clean }, 'layer entry name is not valid UTF-8; written with replacement characters');
    }
    const base = posix.basename(clean);
    if (base.startsWith(WHITEOUT_PREFIX)) {
      const parent = posix.dirname(clean) === '.' ? '' : posix.dirname(clean);
      if (base === WHITEOUT_OPAQUE) await this.opaque(parent, h.name);
      else if (base.startsWith(WHITEOUT_META_PREFIX)) this.log.debug({ entry: clean }, 'ignoring whiteout metadata entry');
      else {
        const victim = base.slice(WHITEOUT_PREFIX.length);
        if (victim === '' || victim === '.' || victim === '..') throw unsafePath('whiteout of its own or a parent directory', h.name);
        await this.whiteout(parent === '' ? victim : `${parent}/${victim}`, h.name);
      }
      return;
    }
    if (base === this.templateName) throw unsafePath('reserved name', h.name);

    const rel = (await this.resolve(clean, h.name)).path;
    await this.makeParents(rel, h.name);
    const abs = this.abs(rel);

    if (h.type === 'hardlink') {
      const target = cleanPath(h.linkname);
      if (target === '') throw unsafePath(`hardlink to ${JSON.stringify(h.linkname)}`, h.name);
      const targetAbs = await this.hardlinkTarget(target, rel, h);
      this.replace(rel, undefined);
      linkSync(targetAbs, abs);
      this.markWritten(rel);
      return;
    }

    const wasWhiteout = this.whiteouts.has(rel);
    const existing = this.replace(rel, h.type === 'dir' ? 'keep-dir' : undefined);
    switch (h.type) {
      case 'dir': {
        if (existing === undefined) mkdirSync(abs, { mode: 0o700 });
        this.knownDirs.add(rel);
        lchownSync(abs, h.uid, h.gid);
        chmodSync(abs, h.mode);
        this.dirTimes.set(rel, times(h));
        // A dir made where this layer put a whiteout must hide what is below.
        if (wasWhiteout) this.markOpaque(rel);
        break;
      }
      case 'file':
        await this.writeFile(abs, h, body);
        break;
      case 'symlink': {
        symlinkSync(h.linkname, abs);
        lchownSync(abs, h.uid, h.gid);
        const t = times(h);
        lutimesSync(abs, t.atime, t.mtime);
        break;
      }
      case 'char':
      case 'block':
      case 'fifo': {
        await mknod(abs, h.type, 0o600, h.devmajor, h.devminor);
        lchownSync(abs, h.uid, h.gid);
        chmodSync(abs, h.mode);
        const t = times(h);
        utimesSync(abs, t.atime, t.mtime);
        break;
      }
    }
    this.whiteouts.delete(rel);
    this.markWritten(rel);
    this.queueXattrs(rel, h);
  }

  private async writeFile(abs: string, h: TarHeader, body: AsyncIterable<Buffer>): Promise<void> {
    if (h.size <= SMALL_FILE) {
      // Most files of a layer are small: gathered, then written with
      // synchronous calls, a few microseconds each instead of a thread-pool
      // round trip per call.
      const parts: Buffer[] = [];
      for await (const chunk of body) parts.push(chunk);
      const fd = openSync(abs, WRITE_FLAGS, 0o600);
      try {
        for (const part of parts) {
          for (let off = 0; off < part.length; ) off += writeSync(fd, part, off, part.length - off);
        }
        fchownSync(fd, h.uid, h.gid);
        fchmodSync(fd, h.mode);
        const t = times(h);
        futimesSync(fd, t.atime, t.mtime);
      } finally {
        closeSync(fd);
      }
      return;
    }
    const fh = await open(abs, WRITE_FLAGS, 0o600);
    try {
      for await (const chunk of body) {
        for (let off = 0; off < chunk.length; ) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
      }
      // chown first: it clears setuid/setgid, which chmod then sets.
      await fh.chown(h.uid, h.gid);
      await fh.chmod(h.mode);
      const t = times(h);
      await fh.utimes(t.atime, t.mtime);
    } finally {
      await fh.close();
    }
  }

  /**
   * `rel` (a clean path) with its parent resolved within the root, the way
   * Docker and containerd do (securejoin): each parent component is looked up
   * in the merged view (see mergedEntry) without following anything; a
   * symlink there is replaced by its target, an absolute target starting
   * again at the root, and `..` never climbs above the root. The last
   * component is kept as is: an entry replaces a symlink at its own name.
   * Parts the merged view lacks are kept as named (makeParents creates
   * them); `parentExists` is false when there were any.
   */
  private async resolve(rel: string, name: string): Promise<{ path: string; parentExists: boolean }> {
    const slash = rel.lastIndexOf('/');
    if (slash === -1 || this.knownDirs.has(rel.slice(0, slash))) return { path: rel, parentExists: true };
    /** Parts still to resolve, the next one last. */
    const pending = rel.slice(0, slash).split('/').reverse();
    const current: string[] = [];
    /** Index in `current` of the first part the merged view lacks, or -1. */
    let missingAt = -1;
    let hops = 0;
    for (let part = pending.pop(); part !== undefined; part = pending.pop()) {
      if (part === '' || part === '.') continue;
      if (part === '..') {
        current.pop();
        if (missingAt >= current.length) missingAt = -1;
        continue;
      }
      current.push(part);
      if (missingAt !== -1) continue;
      const path = current.join('/');
      if (this.knownDirs.has(path)) continue;
      const found = await this.mergedEntry(path);
      if (found === undefined) missingAt = current.length - 1;
      else if (found.st.isSymbolicLink()) {
        if (++hops >= SYMLINK_LIMIT) {
          throw new BerthError('invalid-argument', 'ERR_LAYER_SYMLINK_LOOP', `layer entry ${JSON.stringify(name)}: ${SYMLINK_LIMIT} symlinks met resolving its parent (a loop?)`, {
            context: { entry: name, symlink: path },
          });
        }
        const target = readlinkSync(found.path);
        current.pop();
        if (target.startsWith('/')) current.length = 0;
        const parts = target.split('/');
        for (let i = parts.length - 1; i >= 0; i--) pending.push(parts[i]!);
      } else if (!found.st.isDirectory()) {
        throw notADirectory(path, name);
      }
    }
    const base = rel.slice(slash + 1);
    return { path: current.length === 0 ? base : `${current.join('/')}/${base}`, parentExists: missingAt === -1 };
  }

  /**
   * What the layer's view shows at `rel`, all of whose parents it shows as
   * directories: the target dir's entry (on overlay a whiteout there means
   * nothing), else the lower dirs' (lowerEntry).
   */
  private async mergedEntry(rel: string): Promise<{ path: string; st: Stats } | undefined> {
    const path = this.abs(rel);
    const st = lstatOrUndefined(path);
    if (st === undefined) return this.lowerEntry(rel);
    if (this.overlay && isWhiteoutDevice(st)) return undefined;
    return { path, st };
  }

  /**
   * Makes sure every parent of `rel` (a resolved path) is a real directory
   * in the target dir, creating missing ones. Anything else in the way, a
   * symlink included, is refused.
   */
  private async makeParents(rel: string, name: string): Promise<void> {
    for (const dir of ancestors(rel)) {
      if (this.knownDirs.has(dir)) continue;
      const st = lstatOrUndefined(this.abs(dir));
      if (st === undefined) await this.createImplicitDir(dir);
      else if (!st.isDirectory()) throw notADirectory(dir, name);
      this.knownDirs.add(dir);
    }
  }

  /** A parent the layer has no entry for: made like the lower dir's, as overlayfs' copy-up would, else root-owned 0755. */
  private async createImplicitDir(rel: string): Promise<void> {
    const abs = this.abs(rel);
    const lower = await this.lowerEntry(rel);
    mkdirSync(abs, { mode: 0o700 });
    if (lower?.st.isDirectory() === true) {
      lchownSync(abs, lower.st.uid, lower.st.gid);
      chmodSync(abs, lower.st.mode & 0o7777);
      this.dirTimes.set(rel, { atime: lower.st.atimeMs / 1000, mtime: lower.st.mtimeMs / 1000 });
    } else {
      chmodSync(abs, 0o755);
    }
  }

  /**
   * Clears `rel` for a new entry: removes what is there, unless it is a dir
   * and `keep-dir` (a dir entry over a dir only updates its metadata).
   * Returns what stays.
   */
  private replace(rel: string, mode: 'keep-dir' | undefined): Stats | undefined {
    const st = lstatOrUndefined(this.abs(rel));
    if (st === undefined) return undefined;
    if (mode === 'keep-dir' && st.isDirectory()) return st;
    this.removePath(rel, st);
    return undefined;
  }

  private removePath(rel: string, st: Stats): void {
    const abs = this.abs(rel);
    if (st.isDirectory()) rmSync(abs, { recursive: true, force: true });
    else unlinkSync(abs);
    for (const set of [this.knownDirs, this.written, this.opaqueDirs, this.whiteouts]) {
      for (const p of set) if (p !== '' && isUnder(p, rel)) set.delete(p);
    }
    for (const map of [this.dirTimes, this.xattrs]) {
      for (const p of map.keys()) if (isUnder(p, rel)) map.delete(p);
    }
  }

  private markWritten(rel: string): void {
    this.written.add(rel);
    for (const dir of ancestors(rel)) this.written.add(dir);
  }

  /**
   * Resolves the path of a whiteout marker (see resolve) and makes its
   * parents real dirs in the target dir, copied up from the lower dirs on
   * overlay. Undefined when there is nothing to hide: the layer's view has
   * no such parent dir.
   */
  private async markerPath(rel: string, name: string): Promise<string | undefined> {
    const { path, parentExists } = await this.resolve(rel, name);
    if (!parentExists) return undefined;
    await this.makeParents(path, name);
    return path;
  }

  /** `.wh.NAME`: hides NAME of the lower layers. */
  private async whiteout(victim: string, name: string): Promise<void> {
    const rel = await this.markerPath(victim, name);
    if (rel === undefined) return;
    if (this.written.has(rel)) {
      this.log.debug({ entry: name }, 'whiteout of a path this layer wrote: ignored');
      return;
    }
    const st = lstatOrUndefined(this.abs(rel));
    if (st !== undefined) this.removePath(rel, st);
    if (!this.overlay) return;
    if (this.template === undefined) {
      const template = this.abs(this.templateName);
      await mknod(template, 'char', 0, 0, 0);
      this.template = template;
    }
    linkSync(this.template, this.abs(rel));
    this.whiteouts.add(rel);
  }

  /** `.wh..wh..opq` in `dir`: hides everything lower layers have under the dir it resolves to. */
  private async opaque(dir: string, name: string): Promise<void> {
    const marker = await this.markerPath(dir === '' ? this.templateName : `${dir}/${this.templateName}`, name);
    if (marker === undefined) return;
    const resolved = posix.dirname(marker) === '.' ? '' : posix.dirname(marker);
    this.removeUnwritten(resolved);
    if (this.overlay) this.markOpaque(resolved);
  }

  private markOpaque(dir: string): void {
    this.opaqueDirs.add(dir);
    let attrs = this.xattrs.get(dir);
    if (attrs === undefined) this.xattrs.set(dir, (attrs = new Map()));
    attrs.set(OVERLAY_OPAQUE_XATTR, Buffer.from('y'));
  }

  /** Deletes what is under `dir` that this layer did not write. */
  private removeUnwritten(dir: string): void {
    const abs = this.abs(dir);
    for (const child of readdirSync(abs)) {
      const rel = dir === '' ? child : `${dir}/${child}`;
      if (rel === this.templateName) continue;
      const st = lstatSync(join(abs, child));
      if (!this.written.has(rel)) this.removePath(rel, st);
      else if (st.isDirectory()) this.removeUnwritten(rel);
    }
  }

  /**
   * The host path of a hardlink's target (`linkTarget`, a clean path): its
   * parent resolved like an entry's (see resolve), in the target dir, not a
   * directory, not the entry itself (`entry`, resolved). On overlay, a file
   * only a lower dir has is copied up first.
   */
  private async hardlinkTarget(linkTarget: string, entry: string, h: TarHeader): Promise<string> {
    const { path: target, parentExists } = await this.resolve(linkTarget, h.name);
    if (!parentExists) throw missingTarget(h);
    if (target === entry) throw unsafePath(`hardlink to itself (${JSON.stringify(h.linkname)})`, h.name);
    const abs = this.abs(target);
    const st = lstatOrUndefined(abs);
    if (st !== undefined) {
      if (st.isDirectory()) throw unsafePath(`hardlink to directory ${JSON.stringify(h.linkname)}`, h.name);
      if (this.overlay && isWhiteoutDevice(st)) throw missingTarget(h);
      return abs;
    }
    const lower = this.overlay ? await this.lowerEntry(target) : undefined;
    if (lower === undefined || !lower.st.isFile()) throw missingTarget(h);
    await this.makeParents(target, h.name);
    await copyFile(lower.path, abs, constants.COPYFILE_EXCL);
    lchownSync(abs, lower.st.uid, lower.st.gid);
    chmodSync(abs, lower.st.mode & 0o7777);
    utimesSync(abs, lower.st.atimeMs / 1000, lower.st.mtimeMs / 1000);
    this.log.debug({ entry: h.name, target }, 'copied a lower file up for a hardlink');
    return abs;
  }

  /**
   * What the lower dirs show at `rel` (overlay semantics: the nearest lower
   * that has it; whiteouts, non-dirs and opaque dirs on the way hide the
   * ones below), walking each with lstat so no symlink is followed.
   * Undefined if nothing, or if this layer hid it.
   */
  private async lowerEntry(rel: string): Promise<{ path: string; st: Stats } | undefined> {
    if (this.lowers.length === 0) return undefined;
    for (const dir of [...ancestors(rel), rel]) {
      if (this.opaqueDirs.has(dir) && dir !== rel) return undefined;
      if (this.whiteouts.has(dir)) return undefined;
    }
    if (this.opaqueDirs.has('') && rel !== '') return undefined;
    const parts = rel.split('/');
    for (const lower of this.lowers) {
      let path = lower;
      let opaqueOnTheWay = false;
      let found: Stats | undefined;
      for (let i = 0; i < parts.length; i++) {
        path = join(path, parts[i]!);
        const st = lstatOrUndefined(path);
        if (st === undefined) break;
        if (isWhiteoutDevice(st)) return undefined;
        if (i === parts.length - 1) {
          found = st;
          break;
        }
        if (!st.isDirectory()) return undefined;
        if (await this.lowerIsOpaque(path)) opaqueOnTheWay = true;
      }
      if (found !== undefined) return { path, st: found };
      if (opaqueOnTheWay) return undefined;
    }
    return undefined;
  }

  /** Whether a dir of a lower layer is opaque; the lower dirs are committed snapshots, so the answer is kept. */
  private async lowerIsOpaque(path: string): Promise<boolean> {
    let opaque = this.lowerOpaque.get(path);
    if (opaque === undefined) {
      opaque = (await getXattr(path, OVERLAY_OPAQUE_XATTR))?.toString() === 'y';
      this.lowerOpaque.set(path, opaque);
    }
    return opaque;
  }

  private queueXattrs(rel: string, h: TarHeader): void {
    if (h.xattrs.size === 0) return;
    let attrs = this.xattrs.get(rel);
    for (const [name, value] of h.xattrs) {
      if (OVERLAY_XATTR_PREFIXES.some((p) => name.startsWith(p))) {
        this.log.warn({ entry: h.name, xattr: name }, 'dropping an overlayfs xattr from a layer');
        continue;
      }
      if (!isPlainXattrName(name)) {
        this.log.warn({ entry: h.name, xattr: name }, 'dropping an xattr with an unusable name');
        continue;
      }
      if (attrs === undefined) this.xattrs.set(rel, (attrs = new Map()));
      attrs.set(name, value);
    }
  }

  /** Applies what was deferred: whiteout template removal, xattrs, directory times. */
  async finish(): Promise<void> {
    this.removeTemplate();
    const required = new Map<string, Map<string, Buffer>>();
    const optional = new Map<string, Map<string, Buffer>>();
    for (const [rel, attrs] of this.xattrs) {
      for (const [name, value] of attrs) {
        const into = name === OVERLAY_OPAQUE_XATTR ? required : optional;
        let m = into.get(this.abs(rel));
        if (m === undefined) into.set(this.abs(rel), (m = new Map()));
        m.set(name, value);
      }
    }
    const failedRequired = await setXattrs(required);
    if (failedRequired.length > 0) {
      throw new BerthError('internal', 'ERR_DIFF_XATTR', `cannot mark opaque directories: ${failedRequired.map((f) => f.message).join('; ')}`, {
        context: { root: this.root },
      });
    }
    const failed = await setXattrs(optional);
    const fatal = failed.filter((f) => !f.notSupported);
    if (fatal.length > 0) {
      throw new BerthError('internal', 'ERR_DIFF_XATTR', `cannot set xattrs: ${fatal.map((f) => f.message).join('; ')}`, {
        context: { root: this.root },
      });
    }
    for (const f of failed) this.log.warn({ error: f.message }, 'xattr not supported here; skipped');
    for (const [rel, t] of this.dirTimes) utimesSync(this.abs(rel), t.atime, t.mtime);
  }

  /** Removes the whiteout template after a failure (the rest is the snapshot owner's to discard). */
  abort(): void {
    this.removeTemplate();
  }

  private removeTemplate(): void {
    if (this.template === undefined) return;
    try {
      unlinkSync(this.template);
    } catch (err) {
      if (!isErrnoCode(err, 'ENOENT')) throw err;
    }
    this.template = undefined;
  }
}

function times(h: TarHeader): Times {
  return { atime: h.atime ?? h.mtime, mtime: h.mtime };
}

function lstatOrUndefined(path: string): Stats | undefined {
  return lstatSync(path, { throwIfNoEntry: false });
}

function notADirectory(dir: string, name: string): BerthError {
  return new BerthError('invalid-argument', 'ERR_LAYER_INVALID', `layer entry ${JSON.stringify(name)}: parent ${JSON.stringify(dir)} is not a directory`, {
    context: { entry: name, parent: dir },
  });
}

function missingTarget(h: TarHeader): BerthError {
  return new BerthError('invalid-argument', 'ERR_LAYER_HARDLINK', `layer entry ${JSON.stringify(h.name)}: hardlink target ${JSON.stringify(h.linkname)} does not exist`, {
    context: { entry: h.name, linkname: h.linkname },
  });
}
