import { STATUS_CODES } from 'node:http';
import { Readable } from 'node:stream';
import { BerthError, errorMessage, type ErrorKind } from '../errors.js';
import type { Logger } from '../log.js';
import { Authorizer, credentialsFrom, repositoryScope, type AuthConfig, type Credentials } from './auth.js';
import { digestAlgorithm, digestOf, hasherFor } from './digest.js';
import { RegistryHosts, type HostCapability, type RegistryEndpoint } from './hosts.js';
import {
  abortError,
  bodyExcerpt,
  describeErrorBody,
  discard,
  endpointOrigin,
  headerValue,
  isTransient,
  networkError,
  Transport,
  type HttpResponse,
  type ResponseBody,
  type TransportOptions,
} from './http.js';
import { detectManifestType, parseIndex, parseManifest } from './manifest.js';
import { formatPlatform, platformMatcher, selectManifests, type PlatformMatcher } from './platform.js';
import { parseReference, validateDigest, type ImageReference } from './reference.js';
import { isIndexType, isManifestType, MANIFEST_ACCEPT, type Descriptor, type ImageIndex, type ImageManifest } from './types.js';

/**
 * OCI distribution client: resolves references to descriptors and fetches
 * manifests and blobs from a registry's endpoints (mirrors first, then the
 * upstream), authenticating as the registry asks.
 */

export interface RegistryClientOptions extends TransportOptions {
  /** Where each registry is served; default: built-in defaults only. */
  hosts?: RegistryHosts | undefined;
  /** Credentials per registry host (from the daemon config), used when a request brings none. */
  credentials?: ((registry: string) => AuthConfig | undefined | Promise<AuthConfig | undefined>) | undefined;
  /** Largest manifest or index accepted. Default 4 MiB (as containerd). */
  maxManifestBytes?: number | undefined;
}

export interface RepositoryOptions {
  /** Credentials for this pull (the CRI request's AuthConfig); wins over `credentials`. */
  auth?: AuthConfig | undefined;
}

export interface RequestOptions {
  /** Deadline or cancellation; aborting rejects with cancelled / deadline-exceeded. */
  signal?: AbortSignal | undefined;
}

/** What a reference resolved to. */
export interface Resolved {
  ref: ImageReference;
  /** The normalised reference string. */
  name: string;
  /** The manifest or index the reference points at. */
  descriptor: Descriptor;
  /** The endpoint that answered. */
  endpoint: RegistryEndpoint;
}

/** A platform's image manifest reached from a resolved descriptor. */
export interface PlatformManifest {
  /** Descriptor of the image manifest (with the index entry's platform, if any). */
  descriptor: Descriptor;
  manifest: ImageManifest;
  bytes: Buffer;
  /** Indexes walked through to reach it, outermost first: store these too. */
  indexes: { descriptor: Descriptor; index: ImageIndex; bytes: Buffer }[];
}

const DEFAULT_MAX_MANIFEST_BYTES = 4 << 20;

/** The response a blob stream is reading, and whether its consumer closed it. */
interface BlobReading {
  res: HttpResponse | undefined;
  closed: AbortController;
}
const MAX_INDEX_DEPTH = 4;

function statusText(status: number): string {
  return `${status} ${STATUS_CODES[status] ?? ''}`.trim();
}

/** The kind and code for a registry answer that is not 2xx, 401 or 404. */
function statusKind(status: number): { kind: ErrorKind; code: string } {
  if (status === 429) return { kind: 'resource-exhausted', code: 'ERR_REGISTRY_TOO_MANY_REQUESTS' };
  if (status >= 500) return { kind: 'unavailable', code: 'ERR_REGISTRY_ERROR' };
  return { kind: 'failed-precondition', code: 'ERR_REGISTRY_ERROR' };
}

function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}

/** Reads a whole body, failing once it passes `limit` bytes. */
async function readLimited(body: ResponseBody, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      const b = chunk as Buffer;
      size += b.length;
      if (size > limit) {
        throw new BerthError('failed-precondition', 'ERR_MANIFEST_TOO_LARGE', `${what}: larger than ${limit} bytes`, { context: { limit } });
      }
      chunks.push(b);
    }
  } finally {
    discard(body);
  }
  return Buffer.concat(chunks);
}

function digestMismatch(what: string, want: string, got: string, ep: RegistryEndpoint): BerthError {
  return new BerthError('failed-precondition', 'ERR_DIGEST_MISMATCH', `${what}: content from ${endpointOrigin(ep)} has digest ${got}, want ${want}`, {
    context: { registry: ep.registry, endpoint: endpointOrigin(ep), want, got },
  });
}

/** The error of the last endpoint tried, naming how the earlier ones failed. */
function combineFailures(errors: { ep: RegistryEndpoint; err: BerthError }[]): BerthError {
  const last = errors[errors.length - 1];
  if (last === undefined) throw new Error('combineFailures needs at least one error');
  if (errors.length === 1) return last.err;
  const earlier = errors
    .slice(0, -1)
    .map(({ ep, err }) => `${endpointOrigin(ep)}${ep.isMirror ? ' (mirror)' : ''}: ${err.message}`)
    .join('; ');
  return new BerthError(last.err.kind, last.err.code, `${last.err.message} (also tried ${earlier})`, {
    context: { ...last.err.context, triedEndpoints: errors.length },
    cause: last.err,
  });
}

export class RegistryClient {
  readonly #hosts: RegistryHosts;
  readonly #credentials: RegistryClientOptions['credentials'];
  readonly #transport: Transport;
  readonly #authorizer: Authorizer;
  readonly #maxManifestBytes: number;
  readonly #log: Logger | undefined;

  constructor(options: RegistryClientOptions = {}) {
    this.#hosts = options.hosts ?? new RegistryHosts();
    this.#credentials = options.credentials;
    this.#transport = new Transport(options);
    this.#authorizer = new Authorizer(this.#transport);
    this.#maxManifestBytes = options.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES;
    this.#log = options.log;
  }

  /** A handle on one repository for resolving and fetching; `ref` is parsed when a string. */
  repository(ref: ImageReference | string, options: RepositoryOptions = {}): Repository {
    const parsed = typeof ref === 'string' ? parseReference(ref) : ref;
    return new Repository(parsed, {
      hosts: this.#hosts,
      transport: this.#transport,
      authorizer: this.#authorizer,
      maxManifestBytes: this.#maxManifestBytes,
      log: this.#log,
      credentials: async () => {
        if (options.auth !== undefined) return credentialsFrom(options.auth);
        return credentialsFrom(await this.#credentials?.(parsed.domain));
      },
    });
  }

  /** Shorthand for `repository(ref, options).resolve(options)`. */
  resolve(ref: ImageReference | string, options: RepositoryOptions & RequestOptions = {}): Promise<Resolved> {
    return this.repository(ref, options).resolve(options);
  }

  /** Closes pooled connections. */
  close(): Promise<void> {
    return this.#transport.close();
  }
}

interface RepositoryDeps {
  hosts: RegistryHosts;
  transport: Transport;
  authorizer: Authorizer;
  maxManifestBytes: number;
  log: Logger | undefined;
  credentials: () => Promise<Credentials | undefined>;
}

/** One repository of one registry, with the credentials of one pull. */
export class Repository {
  readonly ref: ImageReference;
  readonly #deps: RepositoryDeps;
  #endpoints: Promise<RegistryEndpoint[]> | undefined;
  #creds: Promise<Credentials | undefined> | undefined;
  /** The manifest a GET during resolve already brought, by digest. */
  readonly #fetched = new Map<string, Buffer>();

  constructor(ref: ImageReference, deps: RepositoryDeps) {
    this.ref = ref;
    this.#deps = deps;
  }

  /** Endpoints having every capability in `caps`, in order. */
  async #endpointsFor(caps: readonly HostCapability[]): Promise<RegistryEndpoint[]> {
    this.#endpoints ??= this.#deps.hosts.endpoints(this.ref.domain);
    let all: RegistryEndpoint[];
    try {
      all = await this.#endpoints;
    } catch (err) {
      this.#endpoints = undefined;
      throw err;
    }
    const eps = all.filter((ep) => caps.every((c) => ep.capabilities.includes(c)));
    if (eps.length === 0) {
      throw new BerthError('failed-precondition', 'ERR_NO_REGISTRY_ENDPOINT', `registry ${this.ref.domain}: no configured host can ${caps.join(' and ')}`, {
        context: { registry: this.ref.domain, capabilities: caps.join(',') },
      });
    }
    return eps;
  }

  #credentials(): Promise<Credentials | undefined> {
    this.#creds ??= this.#deps.credentials();
    return this.#creds;
  }

  #url(ep: RegistryEndpoint, suffix: string): URL {
    const url = new URL(`${ep.scheme}://${ep.host}${ep.path}/${this.ref.path}/${suffix}`);
    if (ep.isMirror) url.searchParams.set('ns', ep.registry);
    return url;
  }

  /** A request with auth: answers a 401 once with the credentials, then gives up. */
  async #request(ep: RegistryEndpoint, method: 'GET' | 'HEAD', suffix: string, headers: Record<string, string>, signal: AbortSignal | undefined, what: string): Promise<HttpResponse> {
    const { transport, authorizer } = this.#deps;
    const url = this.#url(ep, suffix);
    const scope = repositoryScope(this.ref.path);
    const creds = await this.#credentials();
    let authorization = await authorizer.header(ep, scope, creds, signal);
    for (let answered = false; ; answered = true) {
      const h: Record<string, string | string[]> = { ...ep.header, ...headers };
      if (authorization !== undefined) h['authorization'] = authorization;
      const res = await transport.withRetries(ep, what, signal, () => transport.exchange(ep, { method, url, headers: h, signal }, what));
      if (res.status === 401 && !answered) {
        authorization = await authorizer.onUnauthorized(ep, res, scope, creds, signal);
        continue;
      }
      if (res.status === 401 || res.status === 403) {
        const answer = describeErrorBody(await bodyExcerpt(res.body));
        const who = creds === undefined ? 'without credentials' : creds.username !== undefined ? `as user "${creds.username}"` : 'with the given token';
        throw new BerthError(
          res.status === 401 ? 'unauthenticated' : 'permission-denied',
          'ERR_REGISTRY_UNAUTHORIZED',
          `${what}: registry ${ep.registry} (${endpointOrigin(ep)}) refused access ${who}: ${statusText(res.status)}${answer ? `: ${answer}` : ''}`,
          { context: { registry: ep.registry, endpoint: endpointOrigin(ep), status: res.status } },
        );
      }
      return res;
    }
  }

  /** A BerthError for a non-2xx answer; consumes the body. */
  async #statusError(res: HttpResponse, ep: RegistryEndpoint, what: string, notFoundCode: string): Promise<BerthError> {
    const answer = describeErrorBody(await bodyExcerpt(res.body));
    let said = `${endpointOrigin(ep)} answered ${statusText(res.status)}${answer ? `: ${answer}` : ''}`;
    if (ep.scheme === 'http' && res.status === 400 && /HTTP request to an HTTPS server/i.test(answer)) {
      said += `; the registry speaks HTTPS: set server = "https://${ep.host}" (with its ca) in the hosts.toml for ${ep.registry}`;
    }
    const context = { registry: ep.registry, endpoint: endpointOrigin(ep), status: res.status };
    if (res.status === 404) return new BerthError('not-found', notFoundCode, `${what}: not found (${said})`, { context });
    const { kind, code } = statusKind(res.status);
    return new BerthError(kind, code, `${what}: ${said}`, { context });
  }

  /**
   * Runs `attempt` on each endpoint in order until one succeeds; any
   * failure (404 from a mirror, a mirror down) moves on to the next.
   */
  async #tryEndpoints<T>(caps: readonly HostCapability[], signal: AbortSignal | undefined, what: string, attempt: (ep: RegistryEndpoint) => Promise<T>): Promise<T> {
    const errors: { ep: RegistryEndpoint; err: BerthError }[] = [];
    for (const ep of await this.#endpointsFor(caps)) {
      try {
        const result = await attempt(ep);
        if (errors.length > 0) {
          this.#deps.log?.info({ registry: ep.registry, endpoint: endpointOrigin(ep), skipped: errors.length }, `${what}: served by a later endpoint`);
        }
        return result;
      } catch (err) {
        if (signal?.aborted) throw abortError(signal, what);
        // Network failures arrive as BerthErrors already; anything else is a bug.
        if (!(err instanceof BerthError)) throw err;
        const be = err;
        this.#deps.log?.debug({ registry: ep.registry, endpoint: endpointOrigin(ep), code: be.code, err: be.message }, `${what}: endpoint failed`);
        errors.push({ ep, err: be });
      }
    }
    throw combineFailures(errors);
  }

  /**
   * Resolves the reference to the descriptor of its manifest or index:
   * HEAD (digest from Docker-Content-Digest), else GET and hash the body.
   * A reference by digest is checked against what the registry serves.
   */
  resolve(options: RequestOptions = {}): Promise<Resolved> {
    const what = `resolve ${this.ref.toString()}`;
    // As containerd: a tag needs a host trusted to resolve names; content
    // by digest can come from any host that serves pulls.
    const caps: HostCapability[] = this.ref.digest === undefined ? ['pull', 'resolve'] : ['pull'];
    return this.#tryEndpoints(caps, options.signal, what, async (ep) => ({
      ref: this.ref,
      name: this.ref.toString(),
      descriptor: await this.#resolveAt(ep, options.signal, what),
      endpoint: ep,
    }));
  }

  async #resolveAt(ep: RegistryEndpoint, signal: AbortSignal | undefined, what: string): Promise<Descriptor> {
    const suffix = `manifests/${this.ref.object}`;
    const headers = { accept: MANIFEST_ACCEPT.join(', ') };
    const want = this.ref.digest;

    const head = await this.#request(ep, 'HEAD', suffix, headers, signal, what);
    discard(head.body);
    if (isSuccess(head.status)) {
      const served = headerValue(head.headers, 'docker-content-digest');
      if (want !== undefined && served !== undefined && served !== want) throw digestMismatch(what, want, served, ep);
      const digest = want ?? served;
      const size = Number(headerValue(head.headers, 'content-length'));
      const type = (headerValue(head.headers, 'content-type') ?? '').split(';')[0]?.trim() ?? '';
      if (digest !== undefined && Number.isSafeInteger(size) && size > 0 && MANIFEST_ACCEPT.includes(type as never)) {
        try {
          validateDigest(digest);
          return { mediaType: type, digest, size };
        } catch {
          // A malformed header digest: let the GET compute it.
        }
      }
    }
    // No usable HEAD answer (or an error, whose body only a GET carries).
    const res = await this.#request(ep, 'GET', suffix, headers, signal, what);
    if (!isSuccess(res.status)) throw await this.#statusError(res, ep, what, 'ERR_IMAGE_NOT_FOUND');
    const served = headerValue(res.headers, 'docker-content-digest');
    const bytes = await readLimited(res.body, this.#deps.maxManifestBytes, what);
    const like = want ?? served ?? 'sha256:';
    let digest: string;
    try {
      digest = digestOf(bytes, like);
    } catch {
      digest = digestOf(bytes);
    }
    if (want !== undefined && digest !== want) throw digestMismatch(what, want, digest, ep);
    if (served !== undefined && digestAlgorithm(served) === digestAlgorithm(digest) && served !== digest) throw digestMismatch(what, served, digest, ep);
    const mediaType = detectManifestType(headerValue(res.headers, 'content-type'), bytes, what);
    this.#fetched.clear();
    this.#fetched.set(digest, bytes);
    return { mediaType, digest, size: bytes.length };
  }

  /** Fetches a manifest or index by descriptor; checks its size and digest. */
  fetchManifest(desc: Descriptor, options: RequestOptions = {}): Promise<Buffer> {
    const what = `fetch manifest ${this.ref.name}@${desc.digest}`;
    const cached = this.#fetched.get(desc.digest);
    if (cached !== undefined && cached.length === desc.size) return Promise.resolve(cached);
    try {
      validateDigest(desc.digest);
    } catch (err) {
      return Promise.reject(new BerthError('invalid-argument', 'ERR_INVALID_DIGEST', `${what}: ${errorMessage(err)}`, { context: { digest: desc.digest } }));
    }
    if (desc.size > this.#deps.maxManifestBytes) {
      return Promise.reject(
        new BerthError('failed-precondition', 'ERR_MANIFEST_TOO_LARGE', `${what}: ${desc.size} bytes is more than ${this.#deps.maxManifestBytes}`, {
          context: { digest: desc.digest, size: desc.size },
        }),
      );
    }
    const accept = [desc.mediaType, ...MANIFEST_ACCEPT.filter((t) => t !== desc.mediaType)].join(', ');
    return this.#tryEndpoints(['pull'], options.signal, what, async (ep) => {
      const res = await this.#request(ep, 'GET', `manifests/${desc.digest}`, { accept }, options.signal, what);
      if (!isSuccess(res.status)) throw await this.#statusError(res, ep, what, 'ERR_MANIFEST_NOT_FOUND');
      const bytes = await readLimited(res.body, desc.size, what).catch((err: unknown) => {
        if (err instanceof BerthError && err.code === 'ERR_MANIFEST_TOO_LARGE') {
          throw new BerthError('failed-precondition', 'ERR_SIZE_MISMATCH', `${what}: ${endpointOrigin(ep)} sent more than the ${desc.size} bytes the descriptor says`, {
            context: { registry: ep.registry, digest: desc.digest },
          });
        }
        throw err;
      });
      if (bytes.length !== desc.size) {
        throw new BerthError('failed-precondition', 'ERR_SIZE_MISMATCH', `${what}: got ${bytes.length} bytes from ${endpointOrigin(ep)}, want ${desc.size}`, {
          context: { registry: ep.registry, digest: desc.digest },
        });
      }
      const got = digestOf(bytes, desc.digest);
      if (got !== desc.digest) throw digestMismatch(what, desc.digest, got, ep);
      return bytes;
    });
  }

  /**
   * Opens a blob as a byte stream. Transient failures mid-stream resume
   * with a Range request where the stream stopped; more bytes than
   * `desc.size` is an error. The digest is checked by the consumer (the
   * content store) as it writes.
   */
  fetchBlob(desc: Descriptor, options: RequestOptions = {}): Promise<Readable> {
    const what = `fetch blob ${this.ref.name}@${desc.digest}`;
    try {
      validateDigest(desc.digest);
      hasherFor(desc.digest);
    } catch (err) {
      return Promise.reject(new BerthError('invalid-argument', 'ERR_INVALID_DIGEST', `${what}: ${errorMessage(err)}`, { context: { digest: desc.digest } }));
    }
    return this.#tryEndpoints(['pull'], options.signal, what, async (ep) => {
      const res = await this.#request(ep, 'GET', `blobs/${desc.digest}`, {}, options.signal, what);
      if (!isSuccess(res.status)) throw await this.#statusError(res, ep, what, 'ERR_BLOB_NOT_FOUND');
      const current: BlobReading = { res, closed: new AbortController() };
      const chunks = this.#blobChunks(ep, desc, current, options.signal, what);
      return new Readable({
        highWaterMark: 1 << 16,
        read() {
          chunks.next().then(
            (r) => this.push(r.done ? null : r.value),
            (err: unknown) => this.destroy(err instanceof Error ? err : new Error(String(err))),
          );
        },
        // Closing early drops the response being read (perhaps stalled) at
        // once and starts no resume; the generator then finishes on its own.
        destroy(err, cb) {
          current.closed.abort();
          if (current.res !== undefined) discard(current.res.body);
          chunks.return(undefined).catch(() => {});
          cb(err);
        },
      });
    });
  }

  async *#blobChunks(ep: RegistryEndpoint, desc: Descriptor, current: BlobReading, userSignal: AbortSignal | undefined, what: string): AsyncGenerator<Buffer> {
    const signal = userSignal === undefined ? current.closed.signal : AbortSignal.any([userSignal, current.closed.signal]);
    let res: HttpResponse | undefined = current.res;
    let offset = 0;
    let failures = 0;
    try {
      for (;;) {
        const startedAt = offset;
        // Bytes a 200 answer to a Range request repeats from the start.
        let skip = 0;
        try {
          if (res === undefined) {
            res = await this.#request(ep, 'GET', `blobs/${desc.digest}`, { range: `bytes=${offset}-` }, signal, what);
            current.res = res;
            if (res.status === 200) skip = offset;
            else if (res.status === 206) {
              const start = /^bytes (\d+)-/.exec(headerValue(res.headers, 'content-range') ?? '');
              if (start === null || Number(start[1]) !== offset) {
                throw new BerthError('unavailable', 'ERR_REGISTRY_ERROR', `${what}: resume at byte ${offset}: ${endpointOrigin(ep)} answered an unexpected range`, {
                  context: { registry: ep.registry, offset },
                });
              }
            } else throw await this.#statusError(res, ep, what, 'ERR_BLOB_NOT_FOUND');
          }
          for await (const raw of res.body) {
            let chunk = raw as Buffer;
            if (skip > 0) {
              const drop = Math.min(skip, chunk.length);
              skip -= drop;
              chunk = chunk.subarray(drop);
              if (chunk.length === 0) continue;
            }
            if (offset + chunk.length > desc.size) {
              throw new BerthError('failed-precondition', 'ERR_SIZE_MISMATCH', `${what}: ${endpointOrigin(ep)} sent more than the ${desc.size} bytes the descriptor says`, {
                context: { registry: ep.registry, digest: desc.digest },
              });
            }
            offset += chunk.length;
            yield chunk;
          }
          if (offset === desc.size) return;
          throw new BerthError('unavailable', 'ERR_REGISTRY_SHORT_BODY', `${what}: stream from ${endpointOrigin(ep)} ended at byte ${offset} of ${desc.size}`, {
            context: { registry: ep.registry, digest: desc.digest, transient: true },
          });
        } catch (err) {
          if (res !== undefined) discard(res.body);
          res = undefined;
          current.res = undefined;
          if (signal.aborted) throw abortError(userSignal?.aborted ? userSignal : signal, what);
          if (offset > startedAt) failures = 0;
          failures++;
          if (!isTransient(err) || failures >= this.#deps.transport.attempts) throw networkError(err, ep, what, signal);
          this.#deps.log?.debug({ registry: ep.registry, digest: desc.digest, offset, err: errorMessage(err) }, 'blob stream broke; resuming');
          await this.#deps.transport.sleep(this.#deps.transport.retryDelay(failures), signal, what);
        }
      }
    } finally {
      if (res !== undefined) discard(res.body);
    }
  }

  /**
   * From a resolved descriptor to the image manifest for a platform: walks
   * (nested) indexes choosing the best matching entry. Entries without a
   * platform are taken only when none has a matching one; the caller then
   * checks the image config's os/architecture with the matcher.
   */
  async platformManifest(root: Descriptor, matcher: PlatformMatcher = platformMatcher(), options: RequestOptions = {}): Promise<PlatformManifest> {
    const indexes: PlatformManifest['indexes'] = [];
    let desc = root;
    for (let depth = 0; ; depth++) {
      const bytes = await this.fetchManifest(desc, options);
      const what = `${this.ref.name}@${desc.digest}`;
      // A descriptor of another media type is judged by the document itself.
      const type = isIndexType(desc.mediaType) || isManifestType(desc.mediaType) ? desc.mediaType : detectManifestType(undefined, bytes, what);
      if (isManifestType(type)) return { descriptor: desc, manifest: parseManifest(bytes, what), bytes, indexes };
      if (depth >= MAX_INDEX_DEPTH) {
        throw new BerthError('failed-precondition', 'ERR_INVALID_MANIFEST', `${what}: indexes nested more than ${MAX_INDEX_DEPTH} deep`, { context: { manifest: what } });
      }
      const index = parseIndex(bytes, what);
      indexes.push({ descriptor: desc, index, bytes });
      const candidates = selectManifests(index, matcher);
      const next = candidates[0];
      if (next === undefined) {
        const offered = index.manifests.map((m) => (m.platform ? formatPlatform(m.platform) : '(no platform)')).join(', ');
        throw new BerthError(
          'not-found',
          'ERR_NO_MATCHING_PLATFORM',
          `image ${this.ref.toString()} has no manifest for platform ${formatPlatform(matcher.wanted)} (it has: ${offered || 'nothing'})`,
          { context: { image: this.ref.toString(), platform: formatPlatform(matcher.wanted) } },
        );
      }
      desc = next;
    }
  }
}
