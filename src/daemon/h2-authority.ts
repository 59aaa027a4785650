/**
 * Makes HTTP/2 requests whose `:authority` is not an RFC 3986 authority
 * acceptable to Node's HTTP/2 server.
 *
 * Old grpc-go clients (crictl/critest v1.26, for one) dial a UNIX socket
 * and send its path as the authority (`:authority: /run/berth/berth.sock`).
 * nghttp2, under Node's http2, resets such a stream with PROTOCOL_ERROR and
 * Node offers no way to turn that check off. containerd's grpc-go server does
 * not check, so those clients work there; to accept them too, this module
 * sits on the client-to-server byte stream and rewrites the authority value:
 * every byte that may not appear in an authority becomes '-'.
 *
 * The rewrite keeps the decoded length of the value, so every HPACK dynamic
 * table entry keeps its size: nghttp2's decoder evicts exactly what the
 * client's encoder evicts, and no other header ever has to be re-encoded.
 * Only header blocks (HEADERS + CONTINUATION frames) are parsed; all other
 * frames, and blocks with nothing to change, pass through byte for byte.
 * Input that does not parse is passed on unchanged (from then on, the whole
 * connection), so nghttp2 rejects it exactly as it would without us.
 */
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER_LENGTH = 9;
const TYPE_HEADERS = 0x1;
const TYPE_CONTINUATION = 0x9;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
const PRIORITY_FIELDS_LENGTH = 5;
/** SETTINGS_MAX_FRAME_SIZE's initial value: every HTTP/2 peer accepts frames this big. */
const MAX_FRAME_PAYLOAD = 16384;
/** A header block bigger than this is not ours to buffer: Node refuses far smaller ones. */
const MAX_BUFFERED_BLOCK = 1 << 20;
/** SETTINGS_HEADER_TABLE_SIZE's initial value: the encoder's table size until it signals another. */
const INITIAL_TABLE_SIZE = 4096;
/** RFC 7541 §4.1: an entry's size is its name and value lengths plus 32. */
const ENTRY_OVERHEAD = 32;
const AUTHORITY = Buffer.from(':authority', 'latin1');
const REPLACEMENT = 0x2d; // '-'

/** RFC 7541 Appendix A: names of the static table entries 1..61 (only names matter here). */
const STATIC_NAMES: readonly string[] = [
  ':authority', ':method', ':method', ':path', ':path', ':scheme', ':scheme', ':status', ':status', ':status',
  ':status', ':status', ':status', ':status', 'accept-charset', 'accept-encoding', 'accept-language',
  'accept-ranges', 'accept', 'access-control-allow-origin', 'age', 'allow', 'authorization', 'cache-control',
  'content-disposition', 'content-encoding', 'content-language', 'content-length', 'content-location',
  'content-range', 'content-type', 'cookie', 'date', 'etag', 'expect', 'expires', 'from', 'host', 'if-match',
  'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since', 'last-modified', 'link', 'location',
  'max-forwards', 'proxy-authenticate', 'proxy-authorization', 'range', 'referer', 'refresh', 'retry-after',
  'server', 'set-cookie', 'strict-transport-security', 'transfer-encoding', 'user-agent', 'vary', 'via',
  'www-authenticate',
];
const STATIC_COUNT = STATIC_NAMES.length;

/**
 * RFC 7541 Appendix B: the code length in bits of symbols 0..255 and EOS
 * (256). The code is canonical: within a length, codes are consecutive in
 * symbol order, and each length starts right after the shorter ones, so the
 * lengths define the codes.
 */
const HUFFMAN_CODE_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];
const EOS = 256;
const MAX_CODE_LENGTH = 30;
const MIN_CODE_LENGTH = 5;

/** Canonical decoding tables: per length, its first code, how many codes, where its symbols start. */
interface HuffmanTables {
  firstCode: Int32Array;
  count: Int32Array;
  firstIndex: Int32Array;
  symbols: Uint16Array;
}

function buildHuffmanTables(): HuffmanTables {
  const count = new Int32Array(MAX_CODE_LENGTH + 1);
  for (const len of HUFFMAN_CODE_LENGTHS) count[len]! += 1;
  const firstCode = new Int32Array(MAX_CODE_LENGTH + 1);
  const firstIndex = new Int32Array(MAX_CODE_LENGTH + 1);
  let code = 0;
  let index = 0;
  for (let len = 1; len <= MAX_CODE_LENGTH; len++) {
    code <<= 1;
    firstCode[len] = code;
    firstIndex[len] = index;
    code += count[len]!;
    index += count[len]!;
  }
  const symbols = new Uint16Array(HUFFMAN_CODE_LENGTHS.length);
  const next = firstIndex.slice();
  HUFFMAN_CODE_LENGTHS.forEach((len, symbol) => {
    symbols[next[len]!++] = symbol;
  });
  return { firstCode, count, firstIndex, symbols };
}

const HUFFMAN = buildHuffmanTables();

/**
 * Decodes the Huffman string in `src[start..end)` into `out` (when given) and
 * returns the decoded length, or -1 when the string is not valid (an EOS
 * symbol, or padding longer than 7 bits or not made of 1 bits: RFC 7541 §5.2).
 */
export function huffmanDecode(src: Uint8Array, start: number, end: number, out: Uint8Array | null): number {
  const { firstCode, count, firstIndex, symbols } = HUFFMAN;
  let code = 0;
  let len = 0;
  let n = 0;
  for (let i = start; i < end; i++) {
    const byte = src[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      code = (code << 1) | ((byte >> bit) & 1);
      len++;
      const k = code - firstCode[len]!;
      if (k < count[len]!) {
        // Canonical code: an unmatched prefix of length `len` is never below firstCode[len].
        const symbol = symbols[firstIndex[len]! + k]!;
        if (symbol === EOS) return -1;
        if (out !== null) out[n] = symbol;
        n++;
        code = 0;
        len = 0;
      }
    }
  }
  return len <= 7 && code === (1 << len) - 1 ? n : -1;
}

/** RFC 3986 authority characters, as nghttp2 checks them (reg-name, IP-literal, port, and '@'). */
const AUTHORITY_CHARS = (() => {
  const ok = new Uint8Array(256);
  const allowed = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@[]%";
  for (let i = 0; i < allowed.length; i++) ok[allowed.charCodeAt(i)] = 1;
  return ok;
})();

/** The value with every byte that may not appear in an authority replaced, or null when it is fine. */
function fixedAuthority(value: Uint8Array): Buffer | null {
  let fixed: Buffer | null = null;
  for (let i = 0; i < value.length; i++) {
    if (AUTHORITY_CHARS[value[i]!] === 1) continue;
    fixed ??= Buffer.from(value);
    fixed[i] = REPLACEMENT;
  }
  return fixed;
}

/**
 * What the client's HPACK encoder holds in its dynamic table, reduced to what
 * we need: each entry's name length, size, and whether its name is :authority.
 * Oldest entry first.
 */
class DynamicTable {
  private nameLengths: number[] = [];
  private sizes: number[] = [];
  private authority: boolean[] = [];
  private size = 0;
  private maxSize = INITIAL_TABLE_SIZE;

  get length(): number {
    return this.sizes.length;
  }

  /** `index` is 1 for the newest entry (HPACK index 62). */
  nameLength(index: number): number {
    return this.nameLengths[this.sizes.length - index]!;
  }

  isAuthority(index: number): boolean {
    return this.authority[this.sizes.length - index]!;
  }

  add(nameLength: number, valueLength: number, isAuthority: boolean): void {
    const entrySize = nameLength + valueLength + ENTRY_OVERHEAD;
    this.evictTo(this.maxSize - entrySize);
    // An entry bigger than the table empties it and is not added (RFC 7541 §4.4).
    if (entrySize > this.maxSize) return;
    this.nameLengths.push(nameLength);
    this.sizes.push(entrySize);
    this.authority.push(isAuthority);
    this.size += entrySize;
  }

  resize(maxSize: number): void {
    this.maxSize = maxSize;
    this.evictTo(maxSize);
  }

  private evictTo(limit: number): void {
    let evicted = 0;
    while (evicted < this.sizes.length && this.size > limit) {
      this.size -= this.sizes[evicted]!;
      evicted++;
    }
    if (evicted > 0) {
      this.nameLengths.splice(0, evicted);
      this.sizes.splice(0, evicted);
      this.authority.splice(0, evicted);
    }
  }
}

/** One representation to replace: `block[start..valueStart)` is kept, the value after it becomes `value`. */
interface Rewrite {
  start: number;
  valueStart: number;
  end: number;
  value: Buffer;
}

class MalformedBlock extends Error {}

/** Walks one header block's HPACK representations, tracking the table and finding bad authorities. */
class BlockWalker {
  private pos = 0;
  private strStart = 0;
  private strEnd = 0;
  private strHuffman = false;

  constructor(
    private readonly block: Buffer,
    private readonly table: DynamicTable,
  ) {}

  walk(): Rewrite[] {
    const { block, table } = this;
    const rewrites: Rewrite[] = [];
    while (this.pos < block.length) {
      const first = block[this.pos]!;
      if (first & 0x80) {
        // Indexed header field: refers to an entry, changes nothing.
        const index = this.readInt(7);
        if (index === 0 || index > STATIC_COUNT + table.length) throw new MalformedBlock('bad index');
        continue;
      }
      if ((first & 0xe0) === 0x20) {
        table.resize(this.readInt(5));
        continue;
      }
      const start = this.pos;
      const indexing = (first & 0xc0) === 0x40;
      const nameIndex = this.readInt(indexing ? 6 : 4);
      let nameLength: number;
      let isAuthority: boolean;
      if (nameIndex === 0) {
        this.readString();
        const name = this.stringBytes();
        nameLength = name.length;
        isAuthority = AUTHORITY.equals(name);
      } else if (nameIndex <= STATIC_COUNT) {
        nameLength = STATIC_NAMES[nameIndex - 1]!.length;
        isAuthority = nameIndex === 1;
      } else {
        const dynamic = nameIndex - STATIC_COUNT;
        if (dynamic > table.length) throw new MalformedBlock('bad name index');
        nameLength = table.nameLength(dynamic);
        isAuthority = table.isAuthority(dynamic);
      }
      const valueStart = this.pos;
      this.readString();
      let valueLength = 0;
      if (isAuthority) {
        const value = this.stringBytes();
        valueLength = value.length;
        const fixed = fixedAuthority(value);
        if (fixed !== null) rewrites.push({ start, valueStart, end: this.pos, value: fixed });
      } else if (indexing) {
        valueLength = this.stringLength();
      }
      if (indexing) table.add(nameLength, valueLength, isAuthority);
    }
    return rewrites;
  }

  /** RFC 7541 §5.1 integer with an N-bit prefix. */
  private readInt(prefixBits: number): number {
    const { block } = this;
    const mask = (1 << prefixBits) - 1;
    let value = block[this.pos++]! & mask;
    if (value < mask) return value;
    let scale = 1;
    for (;;) {
      if (this.pos >= block.length) throw new MalformedBlock('truncated integer');
      const byte = block[this.pos++]!;
      value += (byte & 0x7f) * scale;
      if (value > 0x7fffffff) throw new MalformedBlock('integer too large');
      if ((byte & 0x80) === 0) return value;
      scale *= 128;
    }
  }

  /** RFC 7541 §5.2 string literal: notes where its octets are and whether they are Huffman-coded. */
  private readString(): void {
    if (this.pos >= this.block.length) throw new MalformedBlock('missing string');
    this.strHuffman = (this.block[this.pos]! & 0x80) !== 0;
    const length = this.readInt(7);
    this.strStart = this.pos;
    this.strEnd = this.pos + length;
    if (this.strEnd > this.block.length) throw new MalformedBlock('truncated string');
    this.pos = this.strEnd;
  }

  private stringLength(): number {
    if (!this.strHuffman) return this.strEnd - this.strStart;
    const n = huffmanDecode(this.block, this.strStart, this.strEnd, null);
    if (n < 0) throw new MalformedBlock('bad Huffman string');
    return n;
  }

  private stringBytes(): Uint8Array {
    if (!this.strHuffman) return this.block.subarray(this.strStart, this.strEnd);
    const out = new Uint8Array(Math.floor(((this.strEnd - this.strStart) * 8) / MIN_CODE_LENGTH));
    const n = huffmanDecode(this.block, this.strStart, this.strEnd, out);
    if (n < 0) throw new MalformedBlock('bad Huffman string');
    return out.subarray(0, n);
  }
}

function encodeInt(value: number, prefixBits: number, flags: number): Buffer {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) return Buffer.of(flags | value);
  const bytes = [flags | mask];
  let rest = value - mask;
  while (rest >= 128) {
    bytes.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

function applyRewrites(block: Buffer, rewrites: readonly Rewrite[]): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (const r of rewrites) {
    parts.push(block.subarray(at, r.valueStart), encodeInt(r.value.length, 7, 0), r.value);
    at = r.end;
  }
  parts.push(block.subarray(at));
  return Buffer.concat(parts);
}

function frameHeader(length: number, type: number, flags: number, streamId: Buffer): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_LENGTH);
  h.writeUIntBE(length, 0, 3);
  h[3] = type;
  h[4] = flags;
  streamId.copy(h, 5);
  return h;
}

/**
 * A HEADERS frame carrying `block` (with CONTINUATION frames when it does not
 * fit): the original flags minus PADDED (the padding is dropped), END_HEADERS
 * on the last frame, the priority fields kept.
 */
function frameBlock(block: Buffer, flags: number, streamId: Buffer, priority: Buffer | null): Buffer[] {
  const out: Buffer[] = [];
  const headersFlags = flags & ~(FLAG_PADDED | FLAG_END_HEADERS);
  const room = MAX_FRAME_PAYLOAD - (priority?.length ?? 0);
  let first = block.subarray(0, room);
  let rest = block.subarray(first.length);
  out.push(frameHeader((priority?.length ?? 0) + first.length, TYPE_HEADERS, headersFlags | (rest.length === 0 ? FLAG_END_HEADERS : 0), streamId));
  if (priority !== null) out.push(priority);
  out.push(first);
  while (rest.length > 0) {
    first = rest.subarray(0, MAX_FRAME_PAYLOAD);
    rest = rest.subarray(first.length);
    out.push(frameHeader(first.length, TYPE_CONTINUATION, rest.length === 0 ? FLAG_END_HEADERS : 0, streamId), first);
  }
  return out;
}

const enum State {
  Preface,
  FrameHeader,
  PassPayload,
  BlockPayload,
  Passthrough,
}

/**
 * The client-to-server half of an HTTP/2 connection, with bad :authority
 * values rewritten. Feed it the bytes as they arrive; it returns what to
 * forward, in order. Bytes outside header blocks are returned as views of the
 * input chunk (a chunk that needs nothing is returned as is).
 */
export class AuthorityRewriter {
  private state = State.Preface;
  private prefaceSeen = 0;
  private readonly header = Buffer.alloc(FRAME_HEADER_LENGTH);
  private headerSeen = 0;
  private remaining = 0;
  /** The header block's frames so far, each whole (header and payload), as received. */
  private blockFrames: Buffer[] = [];
  private blockBytes = 0;
  private frameFill = 0;
  private readonly table = new DynamicTable();
  private out: Buffer[] = [];
  /** Start, within the current chunk, of bytes that pass unchanged and are not yet emitted; -1 when none. */
  private runStart = -1;
  private rewrites = 0;

  /** How many :authority values were rewritten so far. */
  get rewritten(): number {
    return this.rewrites;
  }

  write(chunk: Buffer): Buffer[] {
    this.out = [];
    // A block frame being buffered holds its bytes back; anything else starts a run of unchanged bytes.
    this.runStart = this.state === State.BlockPayload ? -1 : 0;
    let pos = 0;
    while (pos < chunk.length) {
      switch (this.state) {
        case State.Passthrough:
          pos = chunk.length;
          break;
        case State.Preface: {
          const n = Math.min(PREFACE.length - this.prefaceSeen, chunk.length - pos);
          if (PREFACE.compare(chunk, pos, pos + n, this.prefaceSeen, this.prefaceSeen + n) !== 0) {
            this.state = State.Passthrough;
            break;
          }
          pos += n;
          this.prefaceSeen += n;
          if (this.prefaceSeen === PREFACE.length) this.state = State.FrameHeader;
          break;
        }
        case State.FrameHeader: {
          const n = Math.min(FRAME_HEADER_LENGTH - this.headerSeen, chunk.length - pos);
          chunk.copy(this.header, this.headerSeen, pos, pos + n);
          this.headerSeen += n;
          pos += n;
          if (this.headerSeen === FRAME_HEADER_LENGTH) this.onFrameHeader(chunk, pos);
          break;
        }
        case State.PassPayload: {
          const n = Math.min(this.remaining, chunk.length - pos);
          pos += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = State.FrameHeader;
          break;
        }
        case State.BlockPayload: {
          const frame = this.blockFrames[this.blockFrames.length - 1]!;
          const n = Math.min(frame.length - this.frameFill, chunk.length - pos);
          chunk.copy(frame, this.frameFill, pos, pos + n);
          this.frameFill += n;
          pos += n;
          if (this.frameFill === frame.length) {
            this.runStart = pos;
            this.onBlockFrame();
          }
          break;
        }
      }
    }
    this.closeRun(chunk, chunk.length);
    const out = this.out;
    this.out = [];
    return out;
  }

  /** The connection's end: whatever was held back (a partial frame) goes on as received. */
  end(): Buffer[] {
    const out: Buffer[] = [];
    if (this.state === State.BlockPayload) {
      const last = this.blockFrames.length - 1;
      out.push(...this.blockFrames.slice(0, last), this.blockFrames[last]!.subarray(0, this.frameFill));
    } else {
      out.push(...this.blockFrames);
      if (this.state === State.FrameHeader && this.headerSeen > 0) out.push(Buffer.from(this.header.subarray(0, this.headerSeen)));
    }
    this.blockFrames = [];
    this.state = State.Passthrough;
    return out;
  }

  /** Emits the pending run of unchanged bytes up to `end` of the chunk. */
  private closeRun(chunk: Buffer, end: number): void {
    if (this.runStart < 0) return;
    // While a frame header is incomplete, its bytes are held back in `header`.
    const stop = this.state === State.FrameHeader ? end - this.headerSeen : end;
    if (stop > this.runStart) {
      this.out.push(this.runStart === 0 && stop === chunk.length ? chunk : chunk.subarray(this.runStart, stop));
    }
    this.runStart = -1;
  }

  private onFrameHeader(chunk: Buffer, pos: number): void {
    const header = this.header;
    this.headerSeen = 0;
    const length = header.readUIntBE(0, 3);
    const type = header[3]!;
    const inBlock = this.blockFrames.length > 0;
    const startsBlock = !inBlock && type === TYPE_HEADERS;
    const continuesBlock = inBlock && type === TYPE_CONTINUATION && header.compare(this.blockFrames[0]!, 5, 9, 5, 9) === 0;
    if (inBlock && !continuesBlock) {
      // Only CONTINUATION frames of the same stream may follow an unfinished block: nghttp2 will refuse this.
      return this.giveUp(pos);
    }
    if (!startsBlock && !continuesBlock) {
      this.passFrameHeader(pos);
      this.remaining = length;
      this.state = length > 0 ? State.PassPayload : State.FrameHeader;
      return;
    }
    if (this.blockBytes + FRAME_HEADER_LENGTH + length > MAX_BUFFERED_BLOCK) return this.giveUp(pos);
    // Hold the frame back: emit what passed before its header.
    this.closeRun(chunk, pos - FRAME_HEADER_LENGTH);
    const frame = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + length);
    header.copy(frame, 0);
    this.blockFrames.push(frame);
    this.blockBytes += frame.length;
    this.frameFill = FRAME_HEADER_LENGTH;
    if (length > 0) {
      this.state = State.BlockPayload;
    } else {
      this.runStart = pos;
      this.onBlockFrame();
    }
  }

  /** The frame header just completed passes unchanged. */
  private passFrameHeader(pos: number): void {
    // A header wholly in this chunk lies in the pending run (which starts at the latest at the header).
    if (pos >= FRAME_HEADER_LENGTH) return;
    // It began in an earlier chunk, which held its first bytes back.
    this.out.push(Buffer.from(this.header));
    this.runStart = pos;
  }

  /** Stops parsing for good: held bytes and the current frame header go on as received. */
  private giveUp(pos: number): void {
    // Held frames end right where this header starts, so they go first.
    this.out.push(...this.blockFrames);
    this.blockFrames = [];
    this.blockBytes = 0;
    this.passFrameHeader(pos);
    this.state = State.Passthrough;
  }

  private onBlockFrame(): void {
    const last = this.blockFrames[this.blockFrames.length - 1]!;
    if ((last[4]! & FLAG_END_HEADERS) === 0) {
      this.state = State.FrameHeader;
      return;
    }
    const frames = this.blockFrames;
    this.blockFrames = [];
    this.blockBytes = 0;
    this.state = State.FrameHeader;
    const rebuilt = this.rewriteBlock(frames);
    if (rebuilt === null) {
      this.out.push(...frames);
    } else {
      this.out.push(...rebuilt);
    }
  }

  /** The block's frames rebuilt with fixed authorities; null when they pass unchanged. */
  private rewriteBlock(frames: Buffer[]): Buffer[] | null {
    const headers = frames[0]!;
    const flags = headers[4]!;
    let start = FRAME_HEADER_LENGTH;
    let end = headers.length;
    if (flags & FLAG_PADDED) {
      if (start >= end) return this.malformed();
      end -= headers[start]!;
      start += 1;
    }
    let priority: Buffer | null = null;
    if (flags & FLAG_PRIORITY) {
      priority = headers.subarray(start, start + PRIORITY_FIELDS_LENGTH);
      start += PRIORITY_FIELDS_LENGTH;
    }
    if (start > end) return this.malformed();
    const fragments = [headers.subarray(start, end), ...frames.slice(1).map((f) => f.subarray(FRAME_HEADER_LENGTH))];
    const block = fragments.length === 1 ? fragments[0]! : Buffer.concat(fragments);
    let rewrites: Rewrite[];
    try {
      rewrites = new BlockWalker(block, this.table).walk();
    } catch (err) {
      if (err instanceof MalformedBlock) return this.malformed();
      throw err;
    }
    if (rewrites.length === 0) return null;
    this.rewrites += rewrites.length;
    return frameBlock(applyRewrites(block, rewrites), flags, headers.subarray(5, 9), priority);
  }

  /** A block we cannot read: it goes on unchanged, and so does the rest of the connection. */
  private malformed(): null {
    this.state = State.Passthrough;
    return null;
  }
}

/**
 * A duplex over a client's socket that delivers the client's bytes with bad
 * :authority values rewritten (see AuthorityRewriter) and writes the
 * server's bytes to the socket untouched. Hand it to an HTTP/2 server in
 * place of the socket.
 */
export class AuthorityFixingStream extends Duplex {
  private readonly rewriter = new AuthorityRewriter();

  constructor(private readonly socket: Socket) {
    super({ allowHalfOpen: false });
    socket.pause();
    socket.on('data', (chunk: Buffer) => {
      for (const piece of this.rewriter.write(chunk)) {
        if (!this.push(piece)) socket.pause();
      }
    });
    socket.on('end', () => {
      for (const piece of this.rewriter.end()) this.push(piece);
      this.push(null);
    });
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
  }

  /** How many :authority values were rewritten on this connection. */
  get rewritten(): number {
    return this.rewriter.rewritten;
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.socket.write(chunk, callback);
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (err?: Error | null) => void): void {
    this.socket.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.socket.write(chunks[i]!.chunk);
    this.socket.write(chunks[chunks.length - 1]!.chunk, callback);
    this.socket.uncork();
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.socket.end(callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.socket.destroy();
    callback(err);
  }
}
