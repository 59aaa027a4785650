// The :authority rewriter (src/daemon/h2-authority.ts) and the gRPC UNIX listener built on it.
// Hand-built HTTP/2 bytes are checked byte for byte and then fed to Node's own HTTP/2 server
// (nghttp2), which is the decoder that must accept them and stay in HPACK sync with the client.
// Huffman strings are fixed vectors from independent encoders (RFC 7541 Appendix C and the
// Go x/net hpack encoder), so the decoder is not checked against itself.

import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { duplexPair } from 'node:stream';
import { after, before, describe, test, type TestContext } from 'node:test';
import { createLogger } from '../../src/core/log.js';
import { listenGrpcUnix } from '../../src/daemon/grpc-listener.js';
import { AuthorityRewriter, huffmanDecode } from '../../src/daemon/h2-authority.js';

// ---- HTTP/2 and HPACK building blocks ----

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const DATA = 0x0;
const HEADERS = 0x1;
const SETTINGS = 0x4;
const PING = 0x6;
const CONTINUATION = 0x9;
const RST_STREAM = 0x3;
const GOAWAY = 0x7;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;
const ACK = 0x1;

function frame(type: number, flags: number, streamId: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return Buffer.concat([h, payload]);
}

/** RFC 7541 §5.1 integer. */
function int(value: number, prefixBits: number, flags: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [flags | value];
  const out = [flags | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/** A string literal: raw text, or Huffman octets given as hex. */
type Str = string | { huffman: string };
function str(s: Str): number[] {
  if (typeof s === 'string') {
    const bytes = Buffer.from(s, 'latin1');
    return [...int(bytes.length, 7, 0), ...bytes];
  }
  const bytes = Buffer.from(s.huffman, 'hex');
  return [...int(bytes.length, 7, 0x80), ...bytes];
}

const indexed = (i: number) => int(i, 7, 0x80);
/** Literal with incremental indexing; name as a table index or a string. */
const incremental = (name: number | Str, value: Str) =>
  typeof name === 'number' ? [...int(name, 6, 0x40), ...str(value)] : [0x40, ...str(name), ...str(value)];
const withoutIndexing = (name: number | Str, value: Str) =>
  typeof name === 'number' ? [...int(name, 4, 0x00), ...str(value)] : [0x00, ...str(name), ...str(value)];
const neverIndexed = (name: number | Str, value: Str) =>
  typeof name === 'number' ? [...int(name, 4, 0x10), ...str(value)] : [0x10, ...str(name), ...str(value)];
const sizeUpdate = (size: number) => int(size, 5, 0x20);
const block = (...reps: number[][]) => Buffer.from(reps.flat());

// Static table indices used below.
const AUTHORITY = 1;
const METHOD_POST = 3;
const PATH = 4;
const SCHEME_HTTP = 6;

// Huffman vectors (Go x/net/http2/hpack AppendHuffmanString).
const H_TMP_SOCK = { huffman: '6134d6c4696235d07275' }; // "/tmp/bt/b.sock"
const H_SOME_SOCK = { huffman: '6107a4ac5634ceba0e4ebf' }; // "/some/path.sock"
const H_AUTHORITY_NAME = { huffman: 'b83b5339ec327d7f' }; // ":authority"
const H_LOCALHOST = { huffman: 'a0e41d139d09b81132d7' }; // "localhost:1234"

const connectionStart = () => Buffer.concat([PREFACE, frame(SETTINGS, 0, 0)]);

/** A POST request's header block: method and scheme indexed, then the given representations. */
const request = (...reps: number[][]) => block(indexed(METHOD_POST), indexed(SCHEME_HTTP), ...reps);

function rewriteAll(input: Buffer, chunkSizes?: number[]): { out: Buffer; rewritten: number } {
  const r = new AuthorityRewriter();
  const pieces: Buffer[] = [];
  let at = 0;
  for (const size of chunkSizes ?? [input.length]) {
    pieces.push(...r.write(input.subarray(at, at + size)));
    at += size;
  }
  if (at < input.length) pieces.push(...r.write(input.subarray(at)));
  pieces.push(...r.end());
  return { out: Buffer.concat(pieces), rewritten: r.rewritten };
}

interface Served {
  /** Header sets of the streams nghttp2 accepted, in order. */
  streams: Record<string, string>[];
  /** RST_STREAM frames it sent (a refused request) and whether it sent GOAWAY (a connection error). */
  resets: number;
  goaway: boolean;
}

/**
 * Feeds client bytes to a Node HTTP/2 server, then a PING; once the PING's
 * ACK (or a GOAWAY) comes back, everything before it has been processed.
 */
async function serve(clientBytes: Buffer): Promise<Served> {
  const server = http2.createServer();
  const streams: Record<string, string>[] = [];
  server.on('stream', (stream, headers) => {
    const copy: Record<string, string> = {};
    for (const [k, v] of Object.entries(headers)) if (typeof v === 'string') copy[k] = v;
    streams.push(copy);
    stream.on('error', () => {});
  });
  const [serverSide, clientSide] = duplexPair();
  server.on('session', (session) => session.on('error', () => {}));
  server.emit('connection', serverSide);
  // Frames nghttp2 queues while processing one read go out together, though not in order (PING
  // ACKs first): after the second PING's ACK, all that the client bytes caused has arrived.
  const ping = (n: number) => frame(PING, 0, 0, Buffer.from(`berthts${n}`));
  try {
    return await new Promise<Served>((resolve, reject) => {
      let received = Buffer.alloc(0);
      let resets = 0;
      let goaway = false;
      const timer = setTimeout(() => reject(new Error('no PING ACK from the server')), 5000);
      const done = () => {
        clearTimeout(timer);
        resolve({ streams, resets, goaway });
      };
      clientSide.on('data', (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        while (received.length >= 9) {
          const length = received.readUIntBE(0, 3);
          if (received.length < 9 + length) break;
          const type = received[3];
          const flags = received[4]!;
          const payload = received.subarray(9, 9 + length);
          received = received.subarray(9 + length);
          if (type === RST_STREAM) resets++;
          if (type === GOAWAY) {
            goaway = true;
            done();
          }
          if (type === PING && flags & ACK) {
            if (payload.toString() === 'berthts1') clientSide.write(ping(2));
            else done();
          }
        }
      });
      clientSide.on('error', () => {});
      clientSide.write(Buffer.concat([clientBytes, ping(1)]));
    });
  } finally {
    clientSide.destroy();
    serverSide.destroy();
    server.close();
  }
}

describe('huffmanDecode', () => {
  const decode = (hex: string) => {
    const src = Buffer.from(hex, 'hex');
    const out = new Uint8Array(src.length * 2);
    const n = huffmanDecode(src, 0, src.length, out);
    return n < 0 ? null : Buffer.from(out.subarray(0, n)).toString('latin1');
  };

  test('decodes RFC 7541 Appendix C vectors', () => {
    assert.equal(decode('f1e3c2e5f23a6ba0ab90f4ff'), 'www.example.com');
    assert.equal(decode('a8eb10649cbf'), 'no-cache');
    assert.equal(decode('25a849e95ba97d7f'), 'custom-key');
    assert.equal(decode('25a849e95bb8e8b4bf'), 'custom-value');
    assert.equal(decode('6402'), '302');
    assert.equal(decode('aec3771a4b'), 'private');
    assert.equal(decode('9d29ad171863c78f0b97c8e9ae82ae43d3'), 'https://www.example.com');
    assert.equal(decode(''), '');
  });

  test('decodes a socket path and counts without an output buffer', () => {
    assert.equal(decode(H_TMP_SOCK.huffman), '/tmp/bt/b.sock');
    const src = Buffer.from(H_SOME_SOCK.huffman, 'hex');
    assert.equal(huffmanDecode(src, 0, src.length, null), '/some/path.sock'.length);
  });

  test('refuses bad padding and EOS', () => {
    assert.equal(decode('07'), '0'); // '0' (00000) + padding 111
    assert.equal(decode('00'), null); // padding 000 is not EOS's prefix
    assert.equal(decode('f1e3c2e5f23a6ba0ab90f4ffff'), null); // padding longer than 7 bits
    assert.equal(decode('ffffffff'), null); // EOS inside a string
  });
});

describe('AuthorityRewriter', { timeout: 30_000 }, () => {
  test('rewrites a raw authority in a literal with indexing, same length, one HEADERS frame', async () => {
    const input = Buffer.concat([
      connectionStart(),
      frame(HEADERS, END_HEADERS | END_STREAM, 1, request(incremental(PATH, '/a'), incremental(AUTHORITY, '/some/path.sock'))),
    ]);
    const { out, rewritten } = rewriteAll(input);
    assert.equal(rewritten, 1);
    const expected = Buffer.concat([
      connectionStart(),
      frame(HEADERS, END_HEADERS | END_STREAM, 1, request(incremental(PATH, '/a'), incremental(AUTHORITY, '-some-path.sock'))),
    ]);
    assert.deepEqual(out, expected);
    const served = await serve(out);
    assert.equal(served.resets, 0);
    assert.equal(served.streams[0]?.[':authority'], '-some-path.sock');
    assert.equal(served.streams[0]?.[':path'], '/a');
  });

  test('without the rewrite nghttp2 refuses the same request (what the rewriter is for)', async () => {
    const input = Buffer.concat([
      connectionStart(),
      frame(HEADERS, END_HEADERS | END_STREAM, 1, request(incremental(PATH, '/a'), incremental(AUTHORITY, '/some/path.sock'))),
    ]);
    const served = await serve(input);
    assert.equal(served.streams.length, 0);
    assert.equal(served.resets, 1);
  });

  test('rewrites a Huffman-coded authority into a raw string literal', async () => {
    const input = Buffer.concat([
      connectionStart(),
      frame(HEADERS, END_HEADERS, 1, request(incremental(PATH, '/a'), incremental(AUTHORITY, H_TMP_SOCK))),
    ]);
    const { out } = rewriteAll(input);
    const expected = Buffer.concat([
      connectionStart(),
      frame(HEADERS, END_HEADERS, 1, request(incremental(PATH, '/a'), incremental(AUTHORITY, '-tmp-bt-b.sock'))),
    ]);
    assert.deepEqual(out, expected);
    assert.equal((await serve(out)).streams[0]?.[':authority'], '-tmp-bt-b.sock');
  });

  test('rewrites literal :authority names, raw and Huffman, in never-indexed and unindexed fields', async () => {
    const input = Buffer.concat([
      connectionStart(),
      frame(HEADERS, END_HEADERS | END_STREAM, 1, request(incremental(PATH, '/a'), neverIndexed(':authority', '/x.sock'))),
      frame(HEADERS, END_HEADERS | END_STREAM, 3, request(indexed(62), withoutIndexing(H_AUTHORITY_NAME, H_SOME_SOCK))),
    ]);
    const { out, rewritten } = rewriteAll(input);
    assert.equal(rewritten, 2);
    const expected = Buffer.concat([
      connectionStart(),
      frame(HEADERS, END_HEADERS | END_STREAM, 1, request(incremental(PATH, '/a'), neverIndexed(':authority', '-x.sock'))),
      frame(HEADERS, END_HEADERS | END_STREAM, 3, request(indexed(62), withoutIndexing(H_AUTHORITY_NAME, '-some-path.sock'))),
    ]);
    assert.deepEqual(out, expected);
    const served = await serve(out);
    assert.deepEqual(served.streams.map((s) => s[':authority']), ['-x.sock', '-some-path.sock']);
  });

  test('follows the dynamic table: indexed references, and :authority names taken from it', async () => {
    const input = Buffer.concat([
      connectionStart(),
      // Table after: 62 = :authority, 63 = :path /a.
      frame(HEADERS, END_HEADERS | END_STREAM, 1, request(incremental(PATH, '/a'), incremental(AUTHORITY, H_TMP_SOCK))),
      // Only references: nothing to change.
      frame(HEADERS, END_HEADERS | END_STREAM, 3, request(indexed(63), indexed(62))),
      // Name from dynamic entry 62 (an :authority), and a literal header whose value is not ours to judge.
      frame(HEADERS, END_HEADERS | END_STREAM, 5, request(indexed(63), withoutIndexing(62, '/other.sock'), incremental('x-dir', '/a/b'))),
      // Table now: 62 = x-dir, 63 = :authority, 64 = :path. Name from 64 is :path, not :authority.
      frame(HEADERS, END_HEADERS | END_STREAM, 7, request(withoutIndexing(64, '/c'), withoutIndexing(63, 'ok.example:80'))),
    ]);
    const { out, rewritten } = rewriteAll(input);
    assert.equal(rewritten, 2);
    const expected = Buffer.concat([
      connectionStart(),
      frame(HEADERS, END_HEADERS | END_STREAM, 1, request(incremental(PATH, '/a'), incremental(AUTHORITY, '-tmp-bt-b.sock'))),
      frame(HEADERS, END_HEADERS | END_STREAM, 3, request(indexed(63), indexed(62))),
      frame(HEADERS, END_HEADERS | END_STREAM, 5, request(indexed(63), withoutIndexing(62, '-other.sock'), incremental('x-dir', '/a/b'))),
      frame(HEADERS, END_HEADERS | END_STREAM, 7, request(withoutIndexing(64, '/c'), withoutIndexing(63, 'ok.example:80'))),
    ]);
    assert.deepEqual(out, expected);
    const served = await serve(out);
    assert.equal(served.resets, 0);
    assert.deepEqual(
      served.streams.map((s) => [s[':authority'], s[':path'], s['x-dir']]),
      [
        ['-tmp-bt-b.sock', '/a', undefined],
        ['-tmp-bt-b.sock', '/a', undefined],
        ['-other.sock', '/a', '/a/b'],
        ['ok.example:80', '/c', undefined],
      ],
    );
  });

  test('tracks evictions: a reference to an evicted :authority entry is left for nghttp2 to refuse', async () => {
    // Table of 100 octets: :path /a (39), :authority (56); x-a (36) evicts :path, x-b (36) evicts :authority.
    const first = (authority: string) => frame(HEADERS, END_HEADERS | END_STREAM, 1, block(sizeUpdate(100), indexed(METHOD_POST),
      indexed(SCHEME_HTTP), incremental(PATH, '/a'), incremental(AUTHORITY, authority), incremental('x-a', '1'), incremental('x-b', '2')));
    const rest = Buffer.concat([
      // 62 = x-b, 63 = x-a: index 64 (where :authority would be without eviction) is out of range.
      frame(HEADERS, END_HEADERS | END_STREAM, 3, request(indexed(PATH), withoutIndexing(64, '/y.sock'))),
      // Unreadable from here on: passed on as is.
      frame(HEADERS, END_HEADERS | END_STREAM, 5, request(indexed(PATH), incremental(AUTHORITY, '/z.sock'))),
    ]);
    const { out, rewritten } = rewriteAll(Buffer.concat([connectionStart(), first('/tmp/bt/b.sock'), rest]));
    assert.equal(rewritten, 1);
    assert.deepEqual(out, Buffer.concat([connectionStart(), first('-tmp-bt-b.sock'), rest]));
    const served = await serve(out);
    assert.equal(served.streams.length, 1);
    assert.equal(served.goaway, true); // COMPRESSION_ERROR: nghttp2 agrees the index is gone
  });

  test('an entry bigger than the table empties it; size updates evict', () => {
    // Once the table is empty, a reference to entry 62 is unreadable and the rest passes unchanged,
    // the bad authority in the third block included. Had we kept an entry, we would go on parsing.
    const rest = Buffer.concat([
      frame(HEADERS, END_HEADERS, 3, request(withoutIndexing(62, 'x'))),
      frame(HEADERS, END_HEADERS, 5, request(incremental(AUTHORITY, '/c.sock'))),
    ]);
    const tooBig = rewriteAll(Buffer.concat([
      connectionStart(),
      // :authority (49) fits in 60 octets; x-big (77) does not and empties the table.
      frame(HEADERS, END_HEADERS, 1, block(sizeUpdate(60), indexed(METHOD_POST), incremental(AUTHORITY, '/a.sock'),
        incremental('x-big', 'v'.repeat(40)))),
      rest,
    ]));
    assert.equal(tooBig.rewritten, 1);
    assert.deepEqual(tooBig.out.subarray(tooBig.out.length - rest.length), rest);

    const resized = rewriteAll(Buffer.concat([
      connectionStart(),
      frame(HEADERS, END_HEADERS, 1, request(incremental(AUTHORITY, '/a.sock'), incremental('x-a', 'b'))),
      // Down to 0 and back: both entries are gone.
      frame(HEADERS, END_HEADERS, 3, block(sizeUpdate(0), sizeUpdate(4096), indexed(METHOD_POST), indexed(62))),
      rest,
    ]));
    assert.equal(resized.rewritten, 1);
    assert.deepEqual(resized.out.subarray(resized.out.length - rest.length), rest);
  });

  test('keeps nghttp2 in sync through many evictions of rewritten entries', async () => {
    const frames: Buffer[] = [connectionStart()];
    const expected: Record<string, string>[] = [];
    for (let i = 0; i < 40; i++) {
      const value = String.fromCharCode(97 + (i % 26)).repeat(100 + 13 * i);
      const authority = i % 3 === 0 ? H_TMP_SOCK : `/sock/${i}.sock`;
      const reps = [incremental(PATH, `/p${i}`), incremental(AUTHORITY, authority), incremental(`x-h${i}`, value)];
      const want: Record<string, string> = {
        ':path': `/p${i}`,
        ':authority': i % 3 === 0 ? '-tmp-bt-b.sock' : `-sock-${i}.sock`,
        [`x-h${i}`]: value,
      };
      if (i > 0) {
        // The previous request's x-h entry: three entries were added since.
        reps.push(indexed(65));
        want[`x-h${i - 1}`] = String.fromCharCode(97 + ((i - 1) % 26)).repeat(100 + 13 * (i - 1));
      }
      frames.push(frame(HEADERS, END_HEADERS | END_STREAM, 1 + 2 * i, request(...reps)));
      expected.push(want);
    }
    const { out, rewritten } = rewriteAll(Buffer.concat(frames));
    assert.equal(rewritten, 40);
    const served = await serve(out);
    assert.equal(served.resets, 0);
    assert.equal(served.goaway, false);
    assert.equal(served.streams.length, 40);
    served.streams.forEach((s, i) => {
      for (const [k, v] of Object.entries(expected[i]!)) assert.equal(s[k], v, `request ${i} header ${k}`);
    });
  });

  test('joins HEADERS + CONTINUATION into one frame when the block fits', async () => {
    const whole = request(incremental(PATH, '/a'), incremental(AUTHORITY, '/split/over/frames.sock'), incremental('x-k', 'v'));
    const input = Buffer.concat([
      connectionStart(),
      frame(HEADERS, END_STREAM, 1, whole.subarray(0, 5)),
      frame(CONTINUATION, 0, 1, whole.subarray(5, 12)),
      frame(CONTINUATION, 0, 1, whole.subarray(12, 20)),
      frame(CONTINUATION, END_HEADERS, 1, whole.subarray(20)),
      frame(DATA, END_STREAM, 3, Buffer.from('after')),
    ]);
    const { out } = rewriteAll(input);
    const fixed = request(incremental(PATH, '/a'), incremental(AUTHORITY, '-split-over-frames.sock'), incremental('x-k', 'v'));
    assert.deepEqual(out, Buffer.concat([
      connectionStart(),
      frame(HEADERS, END_STREAM | END_HEADERS, 1, fixed),
      frame(DATA, END_STREAM, 3, Buffer.from('after')),
    ]));
    const served = await serve(out.subarray(0, out.length - 14)); // without the DATA for an idle stream
    assert.equal(served.streams[0]?.[':authority'], '-split-over-frames.sock');
    assert.equal(served.streams[0]?.['x-k'], 'v');
  });

  test('a block bigger than 16384 octets goes out as HEADERS + CONTINUATION', async () => {
    const big = 'b'.repeat(20000);
    // Pseudo-header fields come first, or nghttp2 refuses the request.
    const whole = request(indexed(PATH), incremental(AUTHORITY, H_SOME_SOCK), withoutIndexing('x-big', big));
    const input = Buffer.concat([
      connectionStart(),
      frame(HEADERS, 0, 1, whole.subarray(0, 16384)),
      frame(CONTINUATION, END_HEADERS, 1, whole.subarray(16384)),
    ]);
    const { out } = rewriteAll(input);
    const fixed = request(indexed(PATH), incremental(AUTHORITY, '-some-path.sock'), withoutIndexing('x-big', big));
    assert.deepEqual(out, Buffer.concat([
      connectionStart(),
      frame(HEADERS, 0, 1, fixed.subarray(0, 16384)),
      frame(CONTINUATION, END_HEADERS, 1, fixed.subarray(16384)),
    ]));
    const served = await serve(out);
    assert.equal(served.streams[0]?.[':authority'], '-some-path.sock');
    assert.equal(served.streams[0]?.['x-big'], big);
  });

  test('drops padding and keeps priority fields when rebuilding; a valid block keeps both', async () => {
    const priority = Buffer.from([0x00, 0x00, 0x00, 0x00, 0x0f]); // depends on stream 0, weight 16
    const padded = (b: Buffer) => Buffer.concat([Buffer.from([3]), priority, b, Buffer.alloc(3)]);
    const bad = request(indexed(PATH), incremental(AUTHORITY, '/p.sock'));
    const good = request(indexed(PATH), incremental(AUTHORITY, H_LOCALHOST));
    const badFrame = frame(HEADERS, END_HEADERS | END_STREAM | PADDED | PRIORITY, 1, padded(bad));
    const goodFrame = frame(HEADERS, END_HEADERS | END_STREAM | PADDED | PRIORITY, 3, padded(good));
    const { out } = rewriteAll(Buffer.concat([connectionStart(), badFrame, goodFrame]));
    const fixed = request(indexed(PATH), incremental(AUTHORITY, '-p.sock'));
    assert.deepEqual(out, Buffer.concat([
      connectionStart(),
      frame(HEADERS, END_HEADERS | END_STREAM | PRIORITY, 1, Buffer.concat([priority, fixed])),
      goodFrame,
    ]));
    const served = await serve(out);
    assert.deepEqual(served.streams.map((s) => s[':authority']), ['-p.sock', 'localhost:1234']);
  });

  test('valid authorities and other frames pass byte-identical; data chunks are not copied', () => {
    const input = Buffer.concat([
      connectionStart(),
      frame(HEADERS, END_HEADERS, 1, request(indexed(PATH), incremental(AUTHORITY, H_LOCALHOST), incremental('x-path', '/not/authority'))),
      frame(DATA, END_STREAM, 1, Buffer.from('payload')),
      frame(HEADERS, END_HEADERS, 3, request(indexed(PATH), withoutIndexing(AUTHORITY, "[::1]:80"), withoutIndexing(AUTHORITY, "u@h.x-y_z~!$&'()*+,;=%20"))),
    ]);
    const { out, rewritten } = rewriteAll(input);
    assert.equal(rewritten, 0);
    assert.deepEqual(out, input);

    const r = new AuthorityRewriter();
    r.write(connectionStart());
    const data = Buffer.concat([frame(DATA, 0, 1, Buffer.alloc(1000, 1)), frame(PING, 0, 0, Buffer.alloc(8)), frame(DATA, 0, 1, Buffer.alloc(10))]);
    const pieces = r.write(data);
    assert.equal(pieces.length, 1);
    assert.equal(pieces[0], data);
  });

  test('gives the same output whatever the chunking', () => {
    const whole = request(incremental(PATH, '/a'), incremental(AUTHORITY, H_TMP_SOCK));
    const input = Buffer.concat([
      connectionStart(),
      frame(DATA, 0, 1, Buffer.alloc(50, 7)),
      frame(HEADERS, END_STREAM, 1, whole.subarray(0, 6)),
      frame(CONTINUATION, END_HEADERS, 1, whole.subarray(6)),
      frame(DATA, 0, 3, Buffer.alloc(30, 8)),
      frame(HEADERS, END_HEADERS, 5, request(indexed(63), incremental(AUTHORITY, 'fine:1'))),
      frame(HEADERS, END_HEADERS | PADDED, 7, Buffer.concat([Buffer.from([2]), request(indexed(62), neverIndexed(AUTHORITY, '/q')), Buffer.alloc(2)])),
      frame(SETTINGS, ACK, 0),
    ]);
    const reference = rewriteAll(input);
    assert.equal(reference.rewritten, 2);
    assert.deepEqual(rewriteAll(input, new Array<number>(input.length).fill(1)).out, reference.out);
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    for (let round = 0; round < 200; round++) {
      const sizes: number[] = [];
      for (let left = input.length; left > 0;) {
        const size = Math.min(left, 1 + Math.floor(random() * 40));
        sizes.push(size);
        left -= size;
      }
      assert.deepEqual(rewriteAll(input, sizes).out, reference.out, `chunks ${sizes.join(',')}`);
    }
  });

  test('passes garbage and broken framing on unchanged', () => {
    const http1 = Buffer.from('GET / HTTP/1.1\r\nHost: /a/b\r\n\r\n');
    assert.deepEqual(rewriteAll(http1).out, http1);

    // Index 0 is not a valid reference: this block and every later one pass as received.
    const badIndex = Buffer.concat([
      connectionStart(),
      frame(HEADERS, END_HEADERS, 1, block([0x80], incremental(AUTHORITY, '/a.sock'))),
      frame(HEADERS, END_HEADERS, 3, request(incremental(AUTHORITY, '/b.sock'))),
    ]);
    assert.deepEqual(rewriteAll(badIndex).out, badIndex);

    // A frame of another kind inside an unfinished block, truncated strings and bad Huffman.
    const interleaved = Buffer.concat([
      connectionStart(),
      frame(HEADERS, 0, 1, request(incremental(AUTHORITY, '/a.sock'))),
      frame(DATA, 0, 1, Buffer.from('x')),
      frame(HEADERS, END_HEADERS, 3, request(incremental(AUTHORITY, '/b.sock'))),
    ]);
    assert.deepEqual(rewriteAll(interleaved).out, interleaved);
    const otherStream = Buffer.concat([
      connectionStart(),
      frame(HEADERS, 0, 1, request(incremental(AUTHORITY, '/a.sock'))),
      frame(CONTINUATION, END_HEADERS, 3, request()),
    ]);
    assert.deepEqual(rewriteAll(otherStream).out, otherStream);
    const truncated = Buffer.concat([connectionStart(), frame(HEADERS, END_HEADERS, 1, block([0x41, 0x0a], [...'/a'].map((c) => c.charCodeAt(0))))]);
    assert.deepEqual(rewriteAll(truncated).out, truncated);
    const badHuffman = Buffer.concat([connectionStart(), frame(HEADERS, END_HEADERS, 1, block([0x41, 0x81, 0x00]))]);
    assert.deepEqual(rewriteAll(badHuffman).out, badHuffman);
    const badPadding = Buffer.concat([connectionStart(), frame(HEADERS, END_HEADERS | PADDED, 1, Buffer.from([9, 0x82]))]);
    assert.deepEqual(rewriteAll(badPadding).out, badPadding);

    // A connection cut mid-frame: what was held back comes out at the end.
    const cut = Buffer.concat([connectionStart(), frame(HEADERS, END_HEADERS, 1, request(incremental(AUTHORITY, '/a.sock')))]);
    for (const at of [cut.length - 1, cut.length - 12, PREFACE.length + 13]) {
      assert.deepEqual(rewriteAll(cut.subarray(0, at)).out, cut.subarray(0, at));
    }
    const awaitingContinuation = Buffer.concat([connectionStart(), frame(HEADERS, 0, 1, request(incremental(AUTHORITY, '/a.sock')))]);
    assert.deepEqual(rewriteAll(awaitingContinuation).out, awaitingContinuation);
  });
});

// ---- The listener, with grpc-js behind it ----

const ECHO: grpc.ServiceDefinition = {
  say: {
    path: '/berth.test.Echo/Say',
    requestStream: false,
    responseStream: false,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
  },
};

/** A unary gRPC call made with Node's HTTP/2 client, so that :authority can be anything. */
function call(session: http2.ClientHttp2Session, authority: string, message: string): Promise<{ status: string | undefined; reply: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request({
      ':method': 'POST',
      ':path': '/berth.test.Echo/Say',
      ':authority': authority,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const body = Buffer.from(message);
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(body.length, 1);
    req.end(Buffer.concat([prefix, body]));
    const chunks: Buffer[] = [];
    let status: string | undefined;
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('trailers', (t) => {
      status = t['grpc-status'] as string | undefined;
    });
    req.on('error', reject);
    req.on('close', () => {
      if (status === undefined) reject(new Error(`stream closed without a status (RST_STREAM code ${req.rstCode})`));
      else resolve({ status, reply: Buffer.concat(chunks).subarray(5).toString() });
    });
  });
}

function connect(socketPath: string): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

describe('listenGrpcUnix', { timeout: 30_000 }, () => {
  let tmp: string;
  const log = createLogger('silent');
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'berth-h2-authority-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  /** Starts `server` behind a listener; cleanup (also after a failure or timeout) is registered on `t`. */
  async function start(t: TestContext, server: grpc.Server, name: string) {
    const socketPath = path.join(tmp, name);
    const listener = await listenGrpcUnix(server, socketPath, log);
    t.after(async () => {
      await listener.close(0);
      server.forceShutdown();
    });
    const session = await connect(socketPath);
    session.on('error', () => {});
    t.after(() => session.destroy());
    return { socketPath, listener, session };
  }

  test('serves gRPC calls whose :authority is a socket path; plain bindAsync refuses them', async (t) => {
    const echo = (c: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, c.request);
    const server = new grpc.Server();
    server.addService(ECHO, { say: echo });
    const { socketPath, session } = await start(t, server, 'fixed.sock');
    assert.equal((await stat(socketPath)).mode & 0o777, 0o660);
    // The second call finds :authority in nghttp2's client dynamic table and sends an index.
    assert.deepEqual(await call(session, socketPath, 'one'), { status: '0', reply: 'one' });
    assert.deepEqual(await call(session, socketPath, 'two'), { status: '0', reply: 'two' });
    assert.deepEqual(await call(session, '/other/path.sock', 'three'), { status: '0', reply: 'three' });

    const plain = new grpc.Server();
    plain.addService(ECHO, { say: echo });
    const plainPath = path.join(tmp, 'plain.sock');
    t.after(() => plain.forceShutdown());
    await new Promise<void>((resolve, reject) =>
      plain.bindAsync(`unix://${plainPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
    const plainSession = await connect(plainPath);
    t.after(() => plainSession.destroy());
    await assert.rejects(call(plainSession, plainPath, 'one'), /NGHTTP2_PROTOCOL_ERROR/);
  });

  test('a socket that cannot be created is ERR_SOCKET_BIND', async () => {
    const server = new grpc.Server();
    await assert.rejects(listenGrpcUnix(server, path.join(tmp, 'missing', 'x.sock'), log), { code: 'ERR_SOCKET_BIND' });
    server.forceShutdown();
  });

  /** A server whose calls wait until released; `started` settles when the first call arrives. */
  function slowServer() {
    const server = new grpc.Server();
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let onStart!: () => void;
    const started = new Promise<void>((resolve) => (onStart = resolve));
    server.addService(ECHO, {
      say: (c: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        onStart();
        void released.then(() => cb(null, c.request));
      },
    });
    return { server, started, release };
  }

  test('close lets an in-flight call finish and refuses new connections meanwhile', async (t) => {
    const { server, started, release } = slowServer();
    const { socketPath, listener, session } = await start(t, server, 'drain.sock');
    const pending = call(session, socketPath, 'slow');
    await started;
    let closed = false;
    const closing = listener.close(10_000).then(() => (closed = true));
    await assert.rejects(connect(socketPath), /ENOENT|ECONNREFUSED/);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(closed, false, 'close waits for the call');
    release();
    assert.deepEqual(await pending, { status: '0', reply: 'slow' });
    await closing;
  });

  test('close cancels calls still running after the grace period', async (t) => {
    const { server, started } = slowServer();
    const { socketPath, listener, session } = await start(t, server, 'cut.sock');
    const pending = call(session, socketPath, 'hung');
    pending.catch(() => {});
    await started;
    const t0 = Date.now();
    await listener.close(200);
    const took = Date.now() - t0;
    assert.ok(took >= 190 && took < 5000, `closed after ${took} ms`);
    await assert.rejects(pending, /without a status/);
  });
});
