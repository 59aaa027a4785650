// Helpers for the registry client tests: an HTTP forwarder in front of a real registry that can fail the
// way networks do (503s, a connection cut mid-blob), a server that accepts and never answers, and hosts.toml
// directories. Every server listens on 127.0.0.1 only and is closed by its stop().

import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { Readable } from 'node:stream';

export interface Stoppable {
  host: string;
  url: string;
  stop(): Promise<void>;
}

function listen(server: net.Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      if (typeof addr !== 'object' || addr === null) return reject(new Error('no address'));
      resolve(`127.0.0.1:${addr.port}`);
    });
  });
}

function closeServer(server: net.Server, sockets: Set<net.Socket>): Promise<void> {
  for (const s of sockets) s.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}

function track(server: net.Server): Set<net.Socket> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return sockets;
}

export interface FaultyProxyOptions {
  /** Answer this many blob GETs with 503 before forwarding any. */
  fail503Blobs?: number;
  /** Cut the connection of the first full blob GET after this many body bytes. */
  cutBlobAfter?: number;
  /** Answer every request whose path contains this with 404 (a mirror that lacks the image). */
  notFound?: string;
}

export interface FaultyProxy extends Stoppable {
  /** Requests seen, as "METHOD path?query". */
  requests: string[];
  /** Range headers of blob requests, in order ('' when none). */
  blobRanges: string[];
}

/** An HTTP forwarder to `upstream` (http://host:port) that injects the failures asked for. */
export async function startFaultyProxy(upstream: string, o: FaultyProxyOptions = {}): Promise<FaultyProxy> {
  let fail503 = o.fail503Blobs ?? 0;
  let cut = o.cutBlobAfter;
  const requests: string[] = [];
  const blobRanges: string[] = [];
  const agent = new http.Agent({ keepAlive: false });
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    requests.push(`${req.method} ${url}`);
    const isBlob = req.method === 'GET' && url.includes('/blobs/sha256:');
    if (isBlob) blobRanges.push(String(req.headers['range'] ?? ''));
    if (o.notFound !== undefined && url.includes(o.notFound)) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'mirror does not have it' }] }));
      return;
    }
    if (isBlob && fail503 > 0) {
      fail503--;
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('try again');
      return;
    }
    const cutThis = isBlob && cut !== undefined && req.headers['range'] === undefined;
    const cutAt = cutThis ? cut : undefined;
    if (cutThis) cut = undefined;
    const up = http.request(new URL(url, upstream), { method: req.method, headers: { ...req.headers, host: new URL(upstream).host }, agent }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      if (cutAt === undefined) {
        upRes.pipe(res);
        return;
      }
      let sent = 0;
      upRes.on('data', (chunk: Buffer) => {
        if (sent >= cutAt) return;
        const part = chunk.subarray(0, cutAt - sent);
        sent += part.length;
        res.write(part);
        if (sent >= cutAt) {
          upRes.destroy();
          // Let the bytes leave, then drop the connection without finishing the response.
          res.socket?.end(() => res.socket?.destroy());
          setTimeout(() => res.socket?.destroy(), 50);
        }
      });
      upRes.on('end', () => res.end());
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  const sockets = track(server);
  const host = await listen(server);
  return {
    host,
    url: `http://${host}`,
    requests,
    blobRanges,
    stop: async () => {
      agent.destroy();
      await closeServer(server, sockets);
    },
  };
}

/** A TCP server that accepts connections and never says anything. */
export async function startSilentServer(): Promise<Stoppable> {
  const server = net.createServer(() => {
    // hold the connection open, say nothing
  });
  const sockets = track(server);
  const host = await listen(server);
  return { host, url: `http://${host}`, stop: () => closeServer(server, sockets) };
}

/** Writes `<root>/<host>/hosts.toml` with `text`; returns the host dir. */
export async function writeHostsToml(root: string, host: string, text: string): Promise<string> {
  const dir = path.join(root, host);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'hosts.toml'), text);
  return dir;
}

/** All bytes of a stream. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
