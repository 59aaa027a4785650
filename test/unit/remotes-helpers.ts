// Helpers for the registry client tests: an HTTP forwarder in front of a real registry that can fail the
// way networks do (503s, a connection cut mid-blob), a server that accepts and never answers, and hosts.toml
// directories. Every server listens on 127.0.0.1 only and is closed by its stop().

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey, randomBytes, sign, X509Certificate } from 'node:crypto';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { freePort, openssl, registryConfigYaml } from '../fixtures/registry.js';
import { isBerthError, type BerthError } from '../../src/core/errors.js';
import { RegistryClient, type RegistryClientOptions } from '../../src/core/remotes/index.js';

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
  /** Send this many body bytes of the first full blob GET, then nothing more (the connection stays open). */
  stallBlobAfter?: number;
  /** Answer every request whose path contains this with 404 (a mirror that lacks the image). */
  notFound?: string;
}

export interface FaultyProxy extends Stoppable {
  /** Requests seen, as "METHOD path?query". */
  requests: string[];
  /** Range headers of blob requests, in order ('' when none). */
  blobRanges: string[];
  /** Responses whose client went away before they ended. */
  abandoned: number;
}

/** An HTTP forwarder to `upstream` (http://host:port) that injects the failures asked for. */
export async function startFaultyProxy(upstream: string, o: FaultyProxyOptions = {}): Promise<FaultyProxy> {
  let fail503 = o.fail503Blobs ?? 0;
  let cut = o.cutBlobAfter;
  let stall = o.stallBlobAfter;
  const requests: string[] = [];
  const state = { abandoned: 0 };
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
    const stallThis = isBlob && stall !== undefined && req.headers['range'] === undefined;
    const stallAt = stallThis ? stall : undefined;
    if (stallThis) stall = undefined;
    res.on('close', () => {
      if (!res.writableFinished) state.abandoned++;
    });
    const up = http.request(new URL(url, upstream), { method: req.method, headers: { ...req.headers, host: new URL(upstream).host }, agent }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      if (stallAt !== undefined) {
        let sent = 0;
        upRes.on('data', (chunk: Buffer) => {
          if (sent >= stallAt) return;
          const part = chunk.subarray(0, stallAt - sent);
          sent += part.length;
          res.write(part);
          if (sent >= stallAt) upRes.destroy();
        });
        return;
      }
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
    get abandoned() {
      return state.abandoned;
    },
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

/** An assert.rejects/throws matcher: the error is a BerthError and passes `check`. */
export function berthError(check: (e: BerthError) => void): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(isBerthError(err), `not a BerthError: ${String(err)}`);
    check(err);
    return true;
  };
}

/** Registry clients for one test file: `client()` makes one with a short retry backoff, `closeAll()`
 * (in after()) closes every one made. */
export function registryClients(): { client(o?: RegistryClientOptions): RegistryClient; closeAll(): Promise<void> } {
  const made: RegistryClient[] = [];
  return {
    client(o: RegistryClientOptions = {}): RegistryClient {
      const c = new RegistryClient({ backoffMs: 10, ...o });
      made.push(c);
      return c;
    },
    async closeAll(): Promise<void> {
      for (const c of made) await c.close();
    },
  };
}

/** All bytes of a stream. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

// ---------------------------------------------------------------------------------------------------------
// Registries the fixture does not offer (client-certificate TLS, token auth): docker-registry started on an
// existing storage dir (one the fixture registry filled), plus the PKI and token server they need.

export interface Pki {
  dir: string;
  caCrt: string;
  serverCrt: string;
  serverKey: string;
  clientCrt: string;
  clientKey: string;
  /** Signs registry tokens; issued by the CA without an extended key usage. */
  tokenCrt: string;
  tokenKey: string;
}

/** A P-256 CA with a server cert (127.0.0.1, localhost), a client cert and a token-signing cert. */
export async function makePki(dir: string): Promise<Pki> {
  await mkdir(dir, { recursive: true });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=berth remotes test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  const leaf = async (name: string, ext: string[]): Promise<void> => {
    openssl(['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=berth-${name}`], dir);
    await writeFile(path.join(dir, `${name}.ext`), ['basicConstraints=critical,CA:FALSE', ...ext, ''].join('\n'));
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`,
      '-days', '2', '-sha256', '-extfile', `${name}.ext`], dir);
  };
  await leaf('server', ['keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth', 'subjectAltName=IP:127.0.0.1,DNS:localhost']);
  await leaf('client', ['keyUsage=critical,digitalSignature', 'extendedKeyUsage=clientAuth']);
  await leaf('token', ['keyUsage=critical,digitalSignature']);
  const p = (f: string) => path.join(dir, f);
  return { dir, caCrt: p('ca.crt'), serverCrt: p('server.crt'), serverKey: p('server.key'), clientCrt: p('client.crt'), clientKey: p('client.key'), tokenCrt: p('token.crt'), tokenKey: p('token.key') };
}

export interface CustomRegistryOptions {
  /** Storage root to serve (e.g. `<fixture registry dir>/storage`). */
  storage: string;
  /** Private dir for config and log. */
  dir: string;
  tls?: { cert: string; key: string; clientCa?: string };
  token?: { realm: string; service: string; issuer: string; rootCertBundle: string };
}

const liveRegistries = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of liveRegistries) c.kill('SIGKILL');
});

/** Starts docker-registry on 127.0.0.1 over `storage` and waits until /v2/ answers. */
export async function startCustomRegistry(o: CustomRegistryOptions): Promise<Stoppable> {
  const port = await freePort();
  const config = path.join(o.dir, 'config.yml');
  const log = path.join(o.dir, 'registry.log');
  const yaml = registryConfigYaml({
    port,
    storage: o.storage,
    ...(o.tls ? { tls: { certFile: o.tls.cert, keyFile: o.tls.key, ...(o.tls.clientCa ? { clientCaFile: o.tls.clientCa } : {}) } } : {}),
    ...(o.token ? { token: o.token } : {}),
  });
  await mkdir(o.dir, { recursive: true });
  await writeFile(config, yaml);
  const out = await open(log, 'a');
  const child = spawn('docker-registry', ['serve', config], {
    stdio: ['ignore', out.fd, out.fd],
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: o.dir },
  });
  await out.close();
  liveRegistries.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (!liveRegistries.delete(child)) return;
    child.kill('SIGTERM');
    const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(kill);
  };
  const host = `127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && child.exitCode === null) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (up) return { host, url: `${o.tls ? 'https' : 'http'}://${host}`, stop };
    await new Promise((r) => setTimeout(r, 50));
  }
  await stop();
  throw new Error(`docker-registry did not start on ${host}: ${await readFile(log, 'utf8').catch(() => '')}`);
}

export interface TokenServerOptions {
  pki: Pki;
  service: string;
  issuer: string;
  /** username → password for Basic-authenticated token requests. */
  users: Record<string, string>;
  /** refresh token → username, for OAuth2 refresh_token grants (POST). */
  refreshTokens: Record<string, string>;
  /** Repositories anonymous requests may pull. */
  anonymousPull: (repository: string) => boolean;
}

export interface TokenServer extends Stoppable {
  realm: string;
  /** One entry per token request: "GET user=<name|anonymous> scope=<...>" or "POST refresh=<name|bad>". */
  log: string[];
  /** A token for `subject` granting `actions` on repository `name`, as the server would issue. */
  mint(subject: string, name: string, actions: string[]): string;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/** A Docker token-auth server (JWT ES256 with x5c) on loopback, for docker-registry's `auth.token`. */
export async function startTokenServer(o: TokenServerOptions): Promise<TokenServer> {
  const key = createPrivateKey(await readFile(o.pki.tokenKey));
  const certDer = new X509Certificate(await readFile(o.pki.tokenCrt)).raw;
  const log: string[] = [];
  const mint = (subject: string, name: string, actions: string[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'ES256', x5c: [certDer.toString('base64')] };
    const claims = { iss: o.issuer, sub: subject, aud: o.service, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access: actions.length > 0 ? [{ type: 'repository', name, actions }] : [] };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    return `${input}.${b64url(sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }))}`;
  };
  // "repository:a/b:pull,push" scopes → one pull grant (the tests use one repository at a time).
  const grant = (subject: string, scopes: string[]): string => {
    const repo = scopes.map((s) => /^repository:(.+):([a-z,]+)$/.exec(s)?.[1]).find((r) => r !== undefined) ?? '';
    return mint(subject, repo, subject !== '' || o.anonymousPull(repo) ? ['pull'] : []);
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname !== '/token') return reply(404, {});
    if (req.method === 'GET') {
      const scopes = url.searchParams.getAll('scope');
      const auth = req.headers['authorization'];
      if (auth === undefined) {
        log.push(`GET user=anonymous scope=${scopes.join(' ')}`);
        return reply(200, { token: grant('', scopes), expires_in: 300, issued_at: new Date().toISOString() });
      }
      const [user, ...rest] = Buffer.from(auth.replace(/^Basic /, ''), 'base64').toString('utf8').split(':');
      log.push(`GET user=${user ?? ''} scope=${scopes.join(' ')}`);
      if (user === undefined || o.users[user] !== rest.join(':')) return reply(401, { details: 'incorrect username or password' });
      return reply(200, { token: grant(user, scopes), expires_in: 300, issued_at: new Date().toISOString() });
    }
    if (req.method === 'POST') {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        const form = new URLSearchParams(body);
        const user = o.refreshTokens[form.get('refresh_token') ?? ''];
        log.push(`POST refresh=${user ?? 'bad'} grant=${form.get('grant_type')} service=${form.get('service')} scope=${form.get('scope')}`);
        if (form.get('grant_type') !== 'refresh_token' || user === undefined) return reply(401, { error: 'invalid_grant' });
        reply(200, { access_token: grant(user, (form.get('scope') ?? '').split(' ')), expires_in: 300, scope: form.get('scope') });
      });
      return;
    }
    reply(405, {});
  });
  const sockets = track(server);
  const host = await listen(server);
  return { host, url: `http://${host}`, realm: `http://${host}/token`, log, mint, stop: () => closeServer(server, sockets) };
}
