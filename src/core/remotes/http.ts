import { readFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { rootCertificates } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, type Dispatcher } from 'undici';
import { BerthError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { RegistryEndpoint } from './hosts.js';

/**
 * HTTP(S) to registry endpoints over undici: one Agent (connection pool)
 * per distinct TLS setup, manual redirects (credentials never cross to
 * another origin), retries with backoff for transient failures, and
 * network/TLS/abort errors turned into BerthErrors that say what to do.
 */

export type ResponseBody = Dispatcher.ResponseData['body'];

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: ResponseBody;
  /** The URL that answered (after redirects). */
  url: URL;
}

export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'POST';
  url: URL;
  headers: Record<string, string | string[]>;
  body?: string;
  signal?: AbortSignal | undefined;
}

export interface TransportOptions {
  log?: Logger | undefined;
  userAgent?: string | undefined;
  /** TCP+TLS connect timeout; an endpoint's dial_timeout wins. Default 30 s. */
  connectTimeoutMs?: number | undefined;
  /** Time to wait for response headers. Default 60 s. */
  headersTimeoutMs?: number | undefined;
  /** Longest pause between two body chunks. Default 60 s. */
  bodyTimeoutMs?: number | undefined;
  /** Attempts for one request when failures are transient. Default 4. */
  attempts?: number | undefined;
  /** First backoff delay, doubled each retry up to maxBackoffMs. Default 250 ms. */
  backoffMs?: number | undefined;
  /** Default 5 s. */
  maxBackoffMs?: number | undefined;
}

const MAX_REDIRECTS = 10;
/** Statuses worth retrying: the registry or a proxy in front of it is overloaded or restarting. */
const RETRY_STATUSES = new Set([408, 429, 500, 502, 503, 504]);
/** Network error codes worth retrying: the connection broke or stalled after it was made. */
const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'ERR_REGISTRY_SHORT_BODY',
]);
const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_|CERT_|HOSTNAME_MISMATCH|EPROTO$)/;

/** `scheme://host` of an endpoint, for messages and per-origin state. */
export function endpointOrigin(ep: RegistryEndpoint): string {
  return `${ep.scheme}://${ep.host}`;
}

/** A BerthError for an aborted operation: deadline-exceeded for timeouts, else cancelled. */
export function abortError(signal: AbortSignal, what: string): BerthError {
  const reason: unknown = signal.reason;
  if (reason instanceof BerthError) return reason;
  const timeout = reason instanceof Error && reason.name === 'TimeoutError';
  return new BerthError(
    timeout ? 'deadline-exceeded' : 'cancelled',
    timeout ? 'ERR_DEADLINE_EXCEEDED' : 'ERR_CANCELLED',
    `${what}: ${timeout ? 'deadline exceeded' : 'cancelled'}`,
    { cause: reason },
  );
}

function codesOf(err: unknown): string[] {
  const codes: string[] = [];
  for (let e: unknown = err, depth = 0; e !== null && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') codes.push(code);
  }
  return codes;
}

function deepestMessage(err: unknown): string {
  let msg = errorMessage(err);
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) msg = e.message;
  return msg;
}

/** Whether a failure of a request is worth another attempt. */
export function isTransient(err: unknown): boolean {
  if (err instanceof BerthError) return err.context['transient'] === true;
  return codesOf(err).some((c) => TRANSIENT_CODES.has(c));
}

/**
 * Maps a failed exchange to a BerthError: TLS problems say which setting
 * fixes them, connection problems name the endpoint. `context.transient`
 * marks failures worth retrying.
 */
export function networkError(err: unknown, ep: RegistryEndpoint, what: string, signal?: AbortSignal): BerthError {
  if (err instanceof BerthError) return err;
  if (signal?.aborted) return abortError(signal, what);
  const codes = codesOf(err);
  const origin = endpointOrigin(ep);
  const context = { registry: ep.registry, endpoint: origin, transient: isTransient(err) };
  const tls = codes.find((c) => TLS_CODE.test(c));
  if (tls !== undefined && ep.scheme === 'https') {
    // Node appends advice about its own flags; the hint below is the one that applies here.
    const msg = deepestMessage(err).replace(/; if the root CA is installed locally.*$/s, '');
    const wrongProtocol = /wrong version number|packet length too long|http request/i.test(msg);
    const hint = wrongProtocol
      ? `the server may speak plain HTTP: set server = "http://${ep.host}" in its hosts.toml`
      : `add its CA certificate with ca = "..." in the hosts.toml for ${ep.registry}, or set skip_verify = true`;
    return new BerthError('unavailable', 'ERR_REGISTRY_TLS', `${what}: TLS handshake with ${origin} failed: ${msg} (${tls}); ${hint}`, {
      context: { ...context, tlsCode: tls },
      cause: err,
    });
  }
  const code = codes[0] ?? 'unknown';
  return new BerthError('unavailable', 'ERR_REGISTRY_UNAVAILABLE', `${what}: cannot reach ${origin}: ${deepestMessage(err)} (${code})`, {
    context: { ...context, errno: code },
    cause: err,
  });
}

/**
 * Drops a response body we do not (or no longer) read. undici reports an
 * unread body's destruction as an 'error' event; nobody needs that one.
 */
export function discard(body: ResponseBody): void {
  body.on('error', () => {});
  body.destroy();
}

/** First bytes of a response body as text; the body is consumed. */
export async function bodyExcerpt(body: ResponseBody, limit = 4096): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      const b = chunk as Buffer;
      chunks.push(b);
      size += b.length;
      if (size >= limit) break;
    }
  } catch {
    // The answer already failed; its body is best effort.
  } finally {
    discard(body);
  }
  return Buffer.concat(chunks).subarray(0, limit).toString('utf8');
}

/**
 * The registry's explanation from an error body: `CODE: message` of each
 * entry of `{"errors": [...]}` (distribution spec), else the text.
 */
export function describeErrorBody(text: string): string {
  const trimmed = text.trim();
  if (trimmed === '') return '';
  try {
    const doc = JSON.parse(trimmed) as { errors?: { code?: unknown; message?: unknown }[] };
    if (Array.isArray(doc.errors) && doc.errors.length > 0) {
      return doc.errors
        .map((e) => [e.code, e.message].filter((x) => typeof x === 'string' && x !== '').join(': '))
        .filter((s) => s !== '')
        .join('; ');
    }
  } catch {
    // not JSON: use the text
  }
  const flat = trimmed.replace(/\s+/g, ' ');
  return flat.length > 300 ? `${flat.slice(0, 300)}...` : flat;
}

export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

async function readPem(file: string, what: string, ep: RegistryEndpoint): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new BerthError('invalid-argument', 'ERR_HOSTS_CONFIG', `cannot read ${what} "${file}" configured for ${ep.host} in ${ep.source}: ${errorMessage(err)}`, {
      context: { file, registry: ep.registry, source: ep.source },
      cause: err,
    });
  }
}

export class Transport {
  readonly #opts: Required<Omit<TransportOptions, 'log' | 'userAgent'>>;
  readonly #log: Logger | undefined;
  readonly #userAgent: string;
  /** Agents by TLS/dial settings; a promise because CA files are read first. */
  readonly #agents = new Map<string, Promise<Agent>>();

  constructor(options: TransportOptions = {}) {
    this.#log = options.log;
    this.#userAgent = options.userAgent ?? 'berth';
    this.#opts = {
      connectTimeoutMs: options.connectTimeoutMs ?? 30_000,
      headersTimeoutMs: options.headersTimeoutMs ?? 60_000,
      bodyTimeoutMs: options.bodyTimeoutMs ?? 60_000,
      attempts: options.attempts ?? 4,
      backoffMs: options.backoffMs ?? 250,
      maxBackoffMs: options.maxBackoffMs ?? 5_000,
    };
  }

  get log(): Logger | undefined {
    return this.#log;
  }

  /** The connection pool for an endpoint's TLS and dial settings. */
  agentFor(ep: RegistryEndpoint): Promise<Agent> {
    const key = JSON.stringify([ep.tls.ca, ep.tls.client, ep.tls.skipVerify, ep.dialTimeoutMs ?? null]);
    let agent = this.#agents.get(key);
    if (agent === undefined) {
      agent = this.#makeAgent(ep);
      this.#agents.set(key, agent);
      // A config error must not stick: the next call reads the files again.
      agent.catch(() => this.#agents.delete(key));
    }
    return agent;
  }

  async #makeAgent(ep: RegistryEndpoint): Promise<Agent> {
    const connect: Record<string, unknown> = {
      timeout: ep.dialTimeoutMs ?? this.#opts.connectTimeoutMs,
      rejectUnauthorized: !ep.tls.skipVerify,
    };
    if (ep.tls.ca.length > 0) {
      // Extra CAs add to the system's trust, as containerd does.
      const extra = await Promise.all(ep.tls.ca.map((f) => readPem(f, 'CA file', ep)));
      connect['ca'] = [...rootCertificates, ...extra];
    }
    if (ep.tls.client.length > 0) {
      const certs: string[] = [];
      const keys: string[] = [];
      for (const pair of ep.tls.client) {
        const cert = await readPem(pair.cert, 'client certificate', ep);
        certs.push(cert);
        keys.push(pair.key === undefined ? cert : await readPem(pair.key, 'client key', ep));
      }
      connect['cert'] = certs;
      connect['key'] = keys;
    }
    return new Agent({
      connect,
      headersTimeout: this.#opts.headersTimeoutMs,
      bodyTimeout: this.#opts.bodyTimeoutMs,
      keepAliveTimeout: 30_000,
    });
  }

  /**
   * One request, following redirects. The Authorization header goes only to
   * the origin it was meant for. Network failures throw BerthErrors.
   */
  async exchange(ep: RegistryEndpoint, req: HttpRequest, what: string): Promise<HttpResponse> {
    const agent = await this.agentFor(ep);
    const firstOrigin = req.url.origin;
    let url = req.url;
    let method = req.method;
    let body = req.body;
    const headers: Record<string, string | string[]> = { 'user-agent': this.#userAgent, ...req.headers };
    for (let hop = 0; ; hop++) {
      if (url.origin !== firstOrigin) {
        delete headers['authorization'];
      }
      let res: Dispatcher.ResponseData;
      try {
        res = await agent.request({
          origin: url.origin,
          path: url.pathname + url.search,
          method,
          headers,
          body: body ?? null,
          signal: req.signal ?? null,
        });
      } catch (err) {
        throw networkError(err, ep, what, req.signal);
      }
      this.#log?.debug({ method, url: url.origin + url.pathname, status: res.statusCode, registry: ep.registry }, 'registry request');
      const location = headerValue(res.headers, 'location');
      if ([301, 302, 303, 307, 308].includes(res.statusCode) && location !== undefined) {
        discard(res.body);
        if (hop >= MAX_REDIRECTS) {
          throw new BerthError('unavailable', 'ERR_REGISTRY_REDIRECTS', `${what}: more than ${MAX_REDIRECTS} redirects from ${endpointOrigin(ep)}`, {
            context: { registry: ep.registry, endpoint: endpointOrigin(ep) },
          });
        }
        url = new URL(location, url);
        if (res.statusCode === 303 || (method === 'POST' && (res.statusCode === 301 || res.statusCode === 302))) {
          method = 'GET';
          body = undefined;
          delete headers['content-type'];
        }
        continue;
      }
      return { status: res.statusCode, headers: res.headers, body: res.body, url };
    }
  }

  /**
   * Runs `attempt` until it answers with a status not worth retrying, or
   * fails with a non-transient error, with exponential backoff (or the
   * registry's Retry-After) between tries.
   */
  async withRetries(ep: RegistryEndpoint, what: string, signal: AbortSignal | undefined, attempt: () => Promise<HttpResponse>): Promise<HttpResponse> {
    for (let n = 1; ; n++) {
      let delay: number;
      try {
        const res = await attempt();
        if (!RETRY_STATUSES.has(res.status) || n >= this.#opts.attempts) return res;
        discard(res.body);
        delay = this.retryDelay(n, headerValue(res.headers, 'retry-after'));
        this.#log?.debug({ registry: ep.registry, endpoint: endpointOrigin(ep), status: res.status, attempt: n, delay }, 'registry answered a transient error; retrying');
      } catch (err) {
        if (signal?.aborted) throw abortError(signal, what);
        if (!isTransient(err) || n >= this.#opts.attempts) throw networkError(err, ep, what, signal);
        delay = this.retryDelay(n);
        this.#log?.debug({ registry: ep.registry, endpoint: endpointOrigin(ep), err: errorMessage(err), attempt: n, delay }, 'registry request failed; retrying');
      }
      await this.sleep(delay, signal, what);
    }
  }

  /** Backoff before attempt n+1: Retry-After when given (capped), else doubling with jitter. */
  retryDelay(n: number, retryAfter?: string): number {
    if (retryAfter !== undefined) {
      const secs = Number(retryAfter);
      const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(retryAfter) - Date.now();
      if (Number.isFinite(ms) && ms >= 0) return Math.min(ms, this.#opts.maxBackoffMs);
    }
    const base = Math.min(this.#opts.backoffMs * 2 ** (n - 1), this.#opts.maxBackoffMs);
    return base / 2 + Math.random() * (base / 2);
  }

  get attempts(): number {
    return this.#opts.attempts;
  }

  async sleep(ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
    try {
      await sleep(ms, undefined, signal ? { signal } : undefined);
    } catch (err) {
      if (signal?.aborted) throw abortError(signal, what);
      throw err;
    }
  }

  async close(): Promise<void> {
    const agents = [...this.#agents.values()];
    this.#agents.clear();
    await Promise.all(
      agents.map(async (p) => {
        try {
          await (await p).close();
        } catch {
          // an agent whose files could not be read was never opened
        }
      }),
    );
  }
}
