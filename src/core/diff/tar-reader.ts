import { BerthError } from '../errors.js';

/**
 * A streaming reader of tar archives as image layers use them: POSIX ustar
 * and pax (per-entry `x` records: path, linkpath, size, uid, gid, mtime,
 * atime, `SCHILY.xattr.*` and `LIBARCHIVE.xattr.*`), GNU (`L`/`K` long names,
 * base-256 numbers, atime) and old v7 headers. Global pax records are ignored,
 * as containerd does. Sparse and multi-volume entries are refused.
 */

export type TarEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface TarHeader {
  /** The path as stored (pax or GNU long name applied), not normalised. */
  name: string;
  type: TarEntryType;
  /** Permission bits with setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of content (regular files only; 0 for every other type). */
  size: number;
  /** Seconds since the epoch, with fractions from pax. */
  mtime: number;
  atime?: number;
  /** Symlink target or hardlink target path. */
  linkname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes, name → raw value. */
  xattrs: Map<string, Buffer>;
  /** Offset of the entry's header in the archive, for error messages. */
  offset: number;
}

const BLOCK = 512;
/** Bounds on the metadata records read into memory. */
const MAX_PAX_BYTES = 1024 * 1024;
const MAX_LONG_NAME_BYTES = 64 * 1024;

export function tarError(message: string, offset: number): BerthError {
  return new BerthError('invalid-argument', 'ERR_LAYER_TAR_INVALID', `layer tar: ${message}`, { context: { offset } });
}

function cString(buf: Buffer, start: number, length: number): Buffer {
  const field = buf.subarray(start, start + length);
  const nul = field.indexOf(0);
  return nul === -1 ? field : field.subarray(0, nul);
}

function text(buf: Buffer, start: number, length: number): string {
  return cString(buf, start, length).toString('utf8');
}

/** An octal (NUL/space terminated) or GNU base-256 number field. */
function numeric(buf: Buffer, start: number, length: number, offset: number): number {
  const field = buf.subarray(start, start + length);
  const first = field[0] ?? 0;
  if (first & 0x80) {
    if (first === 0xff) throw tarError('negative base-256 number', offset);
    let v = BigInt(first & 0x7f);
    for (let i = 1; i < field.length; i++) v = (v << 8n) | BigInt(field[i] ?? 0);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw tarError('number too large', offset);
    return Number(v);
  }
  const s = field.toString('latin1').replace(/^[\0 ]+/, '');
  const end = s.search(/[\0 ]/);
  const digits = end === -1 ? s : s.slice(0, end);
  if (digits === '') return 0;
  if (!/^[0-7]+$/.test(digits)) throw tarError(`bad octal field ${JSON.stringify(digits)}`, offset);
  return parseInt(digits, 8);
}

function decimal(value: Buffer, key: string, offset: number): number {
  const s = value.toString('latin1');
  if (!/^[0-9]+$/.test(s) || s.length > 15) throw tarError(`bad pax ${key} ${JSON.stringify(s)}`, offset);
  return parseInt(s, 10);
}

function seconds(value: Buffer, key: string, offset: number): number {
  const s = value.toString('latin1');
  if (!/^-?[0-9]+(\.[0-9]*)?$/.test(s)) throw tarError(`bad pax ${key} ${JSON.stringify(s)}`, offset);
  return parseFloat(s);
}

/** Pax records `<len> <key>=<value>\n`; values stay bytes (xattr values are binary). */
function parsePax(data: Buffer, offset: number): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // NUL padding some writers leave
    const space = data.indexOf(0x20, pos);
    if (space === -1 || space - pos > 10) throw tarError('malformed pax record', offset);
    const len = Number(data.subarray(pos, space).toString('latin1'));
    if (!Number.isInteger(len) || len <= space - pos + 1 || pos + len > data.length || data[pos + len - 1] !== 0x0a) {
      throw tarError('malformed pax record length', offset);
    }
    const record = data.subarray(space + 1, pos + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw tarError('pax record without key', offset);
    records.set(record.subarray(0, eq).toString('utf8'), Buffer.from(record.subarray(eq + 1)));
    pos += len;
  }
  return records;
}

/**
 * Pulls entries from `source` one at a time: `next()` gives the next header
 * (skipping whatever of the previous entry's content was not read), `body()`
 * the current entry's content. After the end-of-archive block, `drain()`
 * consumes the rest of the stream (so a hash of it sees every byte).
 */
export class TarReader {
  private readonly source: AsyncIterator<Uint8Array>;
  private pending: Buffer = Buffer.alloc(0);
  private pos = 0;
  /** Absolute offset of `pending[pos]` in the archive. */
  private offset = 0;
  private ended = false;
  /** Content bytes of the current entry not read yet, and its padding. */
  private bodyLeft = 0;
  private padLeft = 0;
  private done = false;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.source = source[Symbol.asyncIterator]();
  }

  private available(): number {
    return this.pending.length - this.pos;
  }

  /** Reads another chunk into `pending`; false at the end of the stream. */
  private async fill(): Promise<boolean> {
    if (this.ended) return false;
    for (;;) {
      const r = await this.source.next();
      if (r.done === true) {
        this.ended = true;
        return false;
      }
      if (r.value.length === 0) continue;
      const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.length);
      this.pending = this.available() === 0 ? chunk : Buffer.concat([this.pending.subarray(this.pos), chunk]);
      this.pos = 0;
      return true;
    }
  }

  /** Exactly `n` bytes, or undefined if the stream ends first (after `partial` bytes). */
  private async read(n: number): Promise<{ data?: Buffer; partial: number }> {
    while (this.available() < n) {
      if (!(await this.fill())) return { partial: this.available() };
    }
    const data = this.pending.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.offset += n;
    return { data, partial: n };
  }

  private async readExact(n: number, what: string): Promise<Buffer> {
    const start = this.offset;
    const r = await this.read(n);
    if (r.data === undefined) throw tarError(`archive ends inside ${what}`, start);
    return r.data;
  }

  private async skip(n: number, what: string): Promise<void> {
    let left = n;
    while (left > 0) {
      if (this.available() === 0 && !(await this.fill())) throw tarError(`archive ends inside ${what}`, this.offset);
      const take = Math.min(left, this.available());
      this.pos += take;
      this.offset += take;
      left -= take;
    }
  }

  /** The content of the entry `next()` returned last; read it before calling `next()` again, or not at all. */
  async *body(): AsyncGenerator<Buffer> {
    while (this.bodyLeft > 0) {
      if (this.available() === 0 && !(await this.fill())) throw tarError('archive ends inside file content', this.offset);
      const take = Math.min(this.bodyLeft, this.available());
      const chunk = this.pending.subarray(this.pos, this.pos + take);
      this.pos += take;
      this.offset += take;
      this.bodyLeft -= take;
      yield chunk;
    }
  }

  /** The next entry, or undefined at the end of the archive. */
  async next(): Promise<TarHeader | undefined> {
    if (this.done) return undefined;
    await this.skip(this.bodyLeft, 'file content');
    this.bodyLeft = 0;
    await this.skip(this.padLeft, 'padding');
    this.padLeft = 0;

    let pax: Map<string, Buffer> | undefined;
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      const start = this.offset;
      const r = await this.read(BLOCK);
      if (r.data === undefined) {
        // A stream that stops at a block boundary without the end-of-archive
        // blocks is accepted (as Go's archive/tar does); a torn header is not.
        if (r.partial === 0 && pax === undefined && longName === undefined && longLink === undefined) {
          this.done = true;
          return undefined;
        }
        throw tarError('archive ends inside a header', start);
      }
      const h = r.data;
      if (h.every((b) => b === 0)) {
        this.done = true;
        return undefined;
      }
      this.verifyChecksum(h, start);
      const flag = String.fromCharCode(h[156] ?? 0);
      const magic = h.toString('latin1', 257, 263);
      const ustar = magic === 'ustar\0';
      const gnu = magic === 'ustar ';
      let size = numeric(h, 124, 12, start);

      switch (flag) {
        case 'x': {
          pax = parsePax(await this.readMeta(size, MAX_PAX_BYTES, 'pax header'), start);
          for (const key of pax.keys()) {
            if (key.startsWith('GNU.sparse.')) throw unsupported('GNU sparse file', start);
          }
          continue;
        }
        case 'g':
          await this.readMeta(size, MAX_PAX_BYTES, 'global pax header');
          continue;
        case 'L':
          longName = cString(await this.readMeta(size, MAX_LONG_NAME_BYTES, 'GNU long name'), 0, size).toString('utf8');
          continue;
        case 'K':
          longLink = cString(await this.readMeta(size, MAX_LONG_NAME_BYTES, 'GNU long link name'), 0, size).toString('utf8');
          continue;
        case 'V':
          await this.skip(padded(size), 'volume header');
          continue;
        case 'S':
          throw unsupported('GNU sparse file', start);
        case 'M':
        case 'N':
          throw unsupported(`entry type '${flag}'`, start);
      }

      let name = text(h, 0, 100);
      if (ustar) {
        const prefix = text(h, 345, 155);
        if (prefix !== '') name = `${prefix}/${name}`;
      }
      let type: TarEntryType;
      switch (flag) {
        case '0':
        case '\0':
        case '7':
          type = name.endsWith('/') ? 'dir' : 'file';
          break;
        case '1':
          type = 'hardlink';
          break;
        case '2':
          type = 'symlink';
          break;
        case '3':
          type = 'char';
          break;
        case '4':
          type = 'block';
          break;
        case '5':
        case 'D': // GNU dumpdir: a directory plus a listing we do not need
          type = 'dir';
          break;
        case '6':
          type = 'fifo';
          break;
        default:
          throw unsupported(`entry type '${flag}' (0x${(h[156] ?? 0).toString(16)})`, start);
      }

      const header: TarHeader = {
        name: longName ?? name,
        type,
        mode: numeric(h, 100, 8, start) & 0o7777,
        uid: numeric(h, 108, 8, start),
        gid: numeric(h, 116, 8, start),
        size: 0,
        mtime: numeric(h, 136, 12, start),
        linkname: longLink ?? text(h, 157, 100),
        devmajor: ustar || gnu ? numeric(h, 329, 8, start) : 0,
        devminor: ustar || gnu ? numeric(h, 337, 8, start) : 0,
        xattrs: new Map(),
        offset: start,
      };
      if (gnu) {
        const atime = numeric(h, 345, 12, start);
        if (atime !== 0) header.atime = atime;
      }
      if (pax !== undefined) {
        for (const [key, value] of pax) applyPax(header, key, value, start);
        const paxSize = pax.get('size');
        if (paxSize !== undefined) size = decimal(paxSize, 'size', start);
      }
      // Only regular files carry content: for other types the size field is
      // not a content length (Go's archive/tar agrees), except that a GNU
      // dumpdir's listing, which we skip, follows its header.
      if (type === 'file') header.size = size;
      if (header.name.includes('\0') || header.linkname.includes('\0')) throw tarError('NUL in a path', start);
      this.bodyLeft = header.size;
      this.padLeft = flag === 'D' ? padded(size) : padded(header.size) - header.size;
      return header;
    }
  }

  /** Reads the rest of the stream (after the end-of-archive blocks). */
  async drain(): Promise<void> {
    this.done = true;
    this.pos = this.pending.length;
    while (await this.fill()) this.pos = this.pending.length;
  }

  private async readMeta(size: number, max: number, what: string): Promise<Buffer> {
    if (size > max) throw tarError(`${what} of ${size} bytes is larger than ${max}`, this.offset);
    const data = Buffer.from(await this.readExact(size, what));
    await this.skip(padded(size) - size, what);
    return data;
  }

  private verifyChecksum(h: Buffer, offset: number): void {
    const stored = numeric(h, 148, 8, offset);
    let unsigned = 0;
    let signed = 0;
    for (let i = 0; i < BLOCK; i++) {
      const b = i >= 148 && i < 156 ? 0x20 : (h[i] ?? 0);
      unsigned += b;
      signed += b > 127 ? b - 256 : b;
    }
    if (stored !== unsigned && stored !== signed) throw tarError('header checksum mismatch', offset);
  }
}

function padded(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

function unsupported(what: string, offset: number): BerthError {
  return new BerthError('invalid-argument', 'ERR_LAYER_TAR_UNSUPPORTED', `layer tar: ${what} is not supported`, { context: { offset } });
}

function applyPax(h: TarHeader, key: string, value: Buffer, offset: number): void {
  switch (key) {
    case 'path':
      h.name = value.toString('utf8');
      return;
    case 'linkpath':
      h.linkname = value.toString('utf8');
      return;
    case 'uid':
      h.uid = decimal(value, key, offset);
      return;
    case 'gid':
      h.gid = decimal(value, key, offset);
      return;
    case 'mtime':
      h.mtime = seconds(value, key, offset);
      return;
    case 'atime':
      h.atime = seconds(value, key, offset);
      return;
  }
  if (key.startsWith('SCHILY.xattr.')) {
    h.xattrs.set(key.slice('SCHILY.xattr.'.length), value);
  } else if (key.startsWith('LIBARCHIVE.xattr.')) {
    // libarchive: the name is URL-encoded, the value base64.
    let name: string;
    try {
      name = decodeURIComponent(key.slice('LIBARCHIVE.xattr.'.length));
    } catch {
      throw tarError(`bad xattr name in ${JSON.stringify(key)}`, offset);
    }
    h.xattrs.set(name, Buffer.from(value.toString('latin1'), 'base64'));
  }
}
