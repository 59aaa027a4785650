import { createHash } from 'node:crypto';
import { BerthError, errorMessage } from '../errors.js';
import { parseWwwAuthenticate, type Challenge } from './challenge.js';
import { bodyExcerpt, describeErrorBody, endpointOrigin, type HttpResponse, type Transport } from './http.js';
import type { RegistryEndpoint } from './hosts.js';

/**
 * Registry authentication (Docker token auth spec, distribution spec):
 * a 401 carries `WWW-Authenticate`; `Basic` means send the credentials to
 * the registry; `Bearer realm=...,service=...,scope=...` means get a token
 * from the realm (anonymously, with Basic credentials, or with an OAuth2
 * refresh_token grant for identity tokens) and send it as `Bearer`.
 * Tokens are cached per realm/service/scope/credentials until they expire.
 */

/** Credentials as the CRI's AuthConfig carries them. */
export interface AuthConfig {
  username?: string;
  password?: string;
  /** base64 of `username:password`. */
  auth?: string;
  serverAddress?: string;
  /** Refresh token for the OAuth2 token endpoint. */
  identityToken?: string;
  /** A bearer token sent to the registry as is. */
  registryToken?: string;
}

/** AuthConfig reduced to what is sent. */
export interface Credentials {
  username?: string;
  password?: string;
  identityToken?: string;
  registryToken?: string;
}

/** Decodes `auth` and drops empty fields; undefined when nothing is left. */
export function credentialsFrom(cfg: AuthConfig | undefined): Credentials | undefined {
  if (cfg === undefined) return undefined;
  const out: Credentials = {};
  let { username, password } = cfg;
  if ((username === undefined || username === '') && cfg.auth) {
    const decoded = Buffer.from(cfg.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) {
      throw new BerthError('invalid-argument', 'ERR_INVALID_AUTH', 'registry auth: "auth" is not base64 of "username:password"', {
        context: { serverAddress: cfg.serverAddress },
      });
    }
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  if (username) out.username = username;
  if (password) out.password = password;
  if (cfg.identityToken) out.identityToken = cfg.identityToken;
  if (cfg.registryToken) out.registryToken = cfg.registryToken;
  return Object.keys(out).length === 0 ? undefined : out;
}

/** A cache key for credentials that does not hold them in clear. */
function credentialKey(c: Credentials | undefined): string {
  if (c === undefined) return 'anonymous';
  return createHash('sha256')
    .update(JSON.stringify([c.username ?? '', c.password ?? '', c.identityToken ?? '', c.registryToken ?? '']))
    .digest('hex')
    .slice(0, 32);
}

/** `repository:<path>:pull` and friends. */
export function repositoryScope(path: string, actions: readonly string[] = ['pull']): string {
  return `repository:${path}:${actions.join(',')}`;
}

function unauthorized(ep: RegistryEndpoint, message: string, extra: Record<string, string | number> = {}): BerthError {
  return new BerthError('unauthenticated', 'ERR_REGISTRY_UNAUTHORIZED', `registry ${ep.registry} (${endpointOrigin(ep)}): ${message}`, {
    context: { registry: ep.registry, endpoint: endpointOrigin(ep), ...extra },
  });
}

interface CachedToken {
  token: string;
  /** ms since epoch; the token is not used after it. */
  expiresAt: number;
}

/** Tokens are considered expired this long before the server says, to cover clock skew and request time. */
const EXPIRY_MARGIN_MS = 10_000;
/** The token spec's default and minimum lifetime. */
const DEFAULT_EXPIRES_IN_S = 60;

export class Authorizer {
  readonly #transport: Transport;
  /** Last challenges seen per endpoint origin: requests there get auth up front. */
  readonly #challenges = new Map<string, Challenge[]>();
  readonly #tokens = new Map<string, CachedToken>();

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  /**
   * The Authorization header for a request to `ep` for `scope`, from what
   * the endpoint asked for before; undefined when it has not asked.
   */
  async header(ep: RegistryEndpoint, scope: string, creds: Credentials | undefined, signal?: AbortSignal): Promise<string | undefined> {
    const challenges = this.#challenges.get(endpointOrigin(ep));
    if (challenges === undefined) return undefined;
    return this.#answer(ep, challenges, scope, creds, false, signal);
  }

  /**
   * Handles a 401 from `ep`: remembers its challenges and returns the
   * header to retry with (a fresh token: the one sent may have expired or
   * lacked scope). Throws unauthenticated when there is no way to comply.
   */
  async onUnauthorized(ep: RegistryEndpoint, res: HttpResponse, scope: string, creds: Credentials | undefined, signal?: AbortSignal): Promise<string> {
    const challenges = parseWwwAuthenticate(res.headers['www-authenticate']);
    const answer = describeErrorBody(await bodyExcerpt(res.body));
    if (challenges.length === 0) {
      throw unauthorized(ep, `401 Unauthorized without a usable WWW-Authenticate challenge${answer ? `: ${answer}` : ''}`);
    }
    this.#challenges.set(endpointOrigin(ep), challenges);
    return this.#answer(ep, challenges, scope, creds, true, signal);
  }

  async #answer(ep: RegistryEndpoint, challenges: Challenge[], scope: string, creds: Credentials | undefined, fresh: boolean, signal?: AbortSignal): Promise<string> {
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const basic = challenges.find((c) => c.scheme === 'basic');
    if (bearer !== undefined) {
      if (creds?.registryToken !== undefined) return `Bearer ${creds.registryToken}`;
      return `Bearer ${await this.#token(ep, bearer, scope, creds, fresh, signal)}`;
    }
    if (basic !== undefined) {
      if (creds?.username === undefined || creds.password === undefined) {
        throw unauthorized(ep, 'the registry requires a username and password (Basic auth) and none were given');
      }
      return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    }
    throw unauthorized(ep, `unsupported authentication scheme(s): ${challenges.map((c) => c.scheme).join(', ')}`);
  }

  async #token(ep: RegistryEndpoint, ch: Challenge, scope: string, creds: Credentials | undefined, fresh: boolean, signal?: AbortSignal): Promise<string> {
    const realm = ch.params['realm'];
    if (realm === undefined || realm === '') throw unauthorized(ep, 'Bearer challenge without a realm');
    let realmUrl: URL;
    try {
      realmUrl = new URL(realm);
    } catch {
      throw unauthorized(ep, `Bearer challenge with an invalid realm "${realm}"`);
    }
    if (realmUrl.protocol !== 'https:' && realmUrl.protocol !== 'http:') throw unauthorized(ep, `Bearer realm "${realm}" is not http(s)`);
    const service = ch.params['service'];
    // The scope we need, plus what the registry named when this challenge
    // answers the request at hand (a remembered challenge's scope belonged
    // to an earlier request).
    const scopes = new Set([scope]);
    if (fresh) for (const s of (ch.params['scope'] ?? '').split(' ')) if (s !== '') scopes.add(s);
    const scopeList = [...scopes].sort();
    const key = JSON.stringify([realm, service ?? '', scopeList, credentialKey(creds)]);

    const cached = this.#tokens.get(key);
    if (!fresh && cached !== undefined && cached.expiresAt > Date.now()) return cached.token;
    if (fresh) this.#tokens.delete(key);
    const fetched = await this.#fetchToken(ep, realmUrl, service, scopeList, creds, signal);
    this.#prune();
    this.#tokens.set(key, fetched);
    return fetched.token;
  }

  /** Drops expired tokens once the cache grows, so pulls of many images do not pile them up. */
  #prune(): void {
    if (this.#tokens.size < 256) return;
    const now = Date.now();
    for (const [k, t] of this.#tokens) if (t.expiresAt <= now) this.#tokens.delete(k);
  }

  async #fetchToken(ep: RegistryEndpoint, realm: URL, service: string | undefined, scopes: string[], creds: Credentials | undefined, signal?: AbortSignal): Promise<CachedToken> {
    const what = `token for ${ep.registry} from ${realm.origin}`;
    const useOAuth = creds?.identityToken !== undefined;
    const url = new URL(realm);
    const headers: Record<string, string> = { accept: 'application/json' };
    let body: string | undefined;
    if (useOAuth) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken ?? '', client_id: 'berth' });
      if (service !== undefined) form.set('service', service);
      if (scopes.length > 0) form.set('scope', scopes.join(' '));
      body = form.toString();
      headers['content-type'] = 'application/x-www-form-urlencoded; charset=utf-8';
    } else {
      if (service !== undefined) url.searchParams.set('service', service);
      for (const s of scopes) url.searchParams.append('scope', s);
      if (creds?.username !== undefined && creds.password !== undefined) {
        headers['authorization'] = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
      }
    }
    const request = { method: useOAuth ? ('POST' as const) : ('GET' as const), url, headers, body, signal };
    const res = await this.#transport.withRetries(ep, what, signal, () => this.#transport.exchange(ep, request, what));
    if (res.status === 401 || res.status === 403) {
      const answer = describeErrorBody(await bodyExcerpt(res.body));
      const who = creds === undefined ? 'anonymous access' : useOAuth ? 'the identity token' : `user "${creds.username ?? ''}"`;
      throw unauthorized(ep, `token server ${realm.origin} refused ${who} (${res.status})${answer ? `: ${answer}` : ''}`, { status: res.status });
    }
    if (res.status < 200 || res.status >= 300) {
      const answer = describeErrorBody(await bodyExcerpt(res.body));
      throw new BerthError('unavailable', 'ERR_REGISTRY_TOKEN', `${what}: token server answered ${res.status}${answer ? `: ${answer}` : ''}`, {
        context: { registry: ep.registry, realm: realm.origin, status: res.status },
      });
    }
    let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
    try {
      doc = JSON.parse(await bodyExcerpt(res.body, 1 << 20)) as typeof doc;
    } catch (err) {
      throw new BerthError('unavailable', 'ERR_REGISTRY_TOKEN', `${what}: token response is not JSON: ${errorMessage(err)}`, {
        context: { registry: ep.registry, realm: realm.origin },
      });
    }
    const token = typeof doc.access_token === 'string' && doc.access_token !== '' ? doc.access_token : doc.token;
    if (typeof token !== 'string' || token === '') {
      throw new BerthError('unavailable', 'ERR_REGISTRY_TOKEN', `${what}: token response has no token`, {
        context: { registry: ep.registry, realm: realm.origin },
      });
    }
    const expiresIn = typeof doc.expires_in === 'number' && doc.expires_in >= DEFAULT_EXPIRES_IN_S ? doc.expires_in : DEFAULT_EXPIRES_IN_S;
    const issued = typeof doc.issued_at === 'string' ? Date.parse(doc.issued_at) : Number.NaN;
    // Trust issued_at only when it is close to our clock; else count from now.
    const start = Number.isFinite(issued) && Math.abs(issued - Date.now()) < 60_000 ? issued : Date.now();
    const expiresAt = start + expiresIn * 1000 - EXPIRY_MARGIN_MS;
    this.#transport.log?.debug({ registry: ep.registry, realm: realm.origin, scopes, expiresIn }, 'registry token fetched');
    return { token, expiresAt };
  }
}
