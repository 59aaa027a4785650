import { readFile, readdir, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { isAbsolute, join } from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { BerthError, errorMessage, isErrnoCode } from '../errors.js';

/**
 * Which endpoints serve a registry: containerd's hosts.toml layout
 * (`<configPath>/<host[:port]>/hosts.toml`, or `_default/hosts.toml`), or
 * the same settings given inline by the daemon config. A registry's
 * endpoints are its mirrors (`[host."..."]` tables, in file order) and then
 * the upstream (`server`, else the registry itself).
 *
 *   server = "https://registry.example.com"
 *   ca = "ca.crt"                      # applies to the server
 *   [host."https://mirror.local:5000"]
 *     capabilities = ["pull", "resolve"]
 *     ca = ["/etc/ssl/mirror-ca.pem"]   # path or list; relative to the host dir
 *     client = [["client.cert", "client.key"]]   # or "both.pem" / ["a.pem", ...]
 *     skip_verify = false
 *     override_path = false            # true: the URL path is the API root, no "/v2" added
 *     dial_timeout = "5s"
 *     [host."https://mirror.local:5000".header]
 *       x-custom = "value"             # or a list of values
 */

export type HostCapability = 'pull' | 'resolve' | 'push';
const ALL_CAPABILITIES: readonly HostCapability[] = ['pull', 'resolve', 'push'];

/** One mirror or the upstream, as configured (file or daemon config). */
export interface HostEntryConfig {
  /** `scheme://host[:port][/path]`; without a scheme, https. For the upstream, omitted means the registry's default. */
  url?: string;
  /** Default: pull, resolve and push. */
  capabilities?: HostCapability[];
  /** PEM files with CA certificates trusted in addition to the system ones (absolute paths). */
  ca?: string[];
  /** Client certificates; `key` omitted means the key is in the cert file. */
  client?: { cert: string; key?: string }[];
  /** Do not verify the server's certificate chain and name. */
  skipVerify?: boolean;
  /** Extra request headers. */
  header?: Record<string, string[]>;
  /** The URL path is the API root (no `/v2` appended). */
  overridePath?: boolean;
  /** Connect timeout in milliseconds. */
  dialTimeoutMs?: number;
}

/** A registry's host configuration: mirrors tried in order, then the upstream. */
export interface HostsConfig {
  mirrors: HostEntryConfig[];
  server: HostEntryConfig;
}

/** TLS settings of an endpoint. */
export interface EndpointTLS {
  ca: string[];
  client: { cert: string; key?: string }[];
  skipVerify: boolean;
}

/** One place to send registry requests for a registry host. */
export interface RegistryEndpoint {
  /** The registry the image reference names, e.g. `docker.io`. */
  registry: string;
  scheme: 'http' | 'https';
  /** `host[:port]` (IPv6 in brackets). */
  host: string;
  /** API root path, `/v2` unless overridden. */
  path: string;
  capabilities: readonly HostCapability[];
  tls: EndpointTLS;
  header: Record<string, string[]>;
  dialTimeoutMs?: number;
  /** Serves another registry's content: requests carry `?ns=<registry>` as containerd sends them. */
  isMirror: boolean;
  /** Where this endpoint came from: a hosts.toml path, `config`, or `default`. */
  source: string;
}

/** The API host of a registry when nothing is configured. */
export function defaultApiHost(registry: string): string {
  return registry === 'docker.io' ? 'registry-1.docker.io' : registry;
}

/** Host part and port of `host[:port]` / `[v6]:port`. */
function splitHostPort(hostport: string): { hostname: string; port: string } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(hostport);
  if (m) return { hostname: m[1] ?? '', port: m[2] ?? '' };
  if (isIP(hostport) === 6) return { hostname: hostport, port: '' };
  const colon = hostport.lastIndexOf(':');
  if (colon === -1) return { hostname: hostport, port: '' };
  return { hostname: hostport.slice(0, colon), port: hostport.slice(colon + 1) };
}

/** localhost, 127.0.0.0/8 or ::1, with or without a port. */
export function isLoopbackHost(hostport: string): boolean {
  const { hostname } = splitHostPort(hostport);
  const h = hostname.toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1';
  return false;
}

function configError(source: string, message: string, cause?: unknown): BerthError {
  return new BerthError('invalid-argument', 'ERR_HOSTS_CONFIG', `registry hosts config ${source}: ${message}`, {
    context: { file: source },
    cause,
  });
}

/** Parses a Go-style duration ("5s", "1m30s", "500ms") into milliseconds. */
function parseDuration(s: string, source: string): number {
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * (unit[m[2] ?? ''] ?? 0);
    end = re.lastIndex;
  }
  if (s === '' || end !== s.length) throw configError(source, `invalid dial_timeout "${s}"`);
  return total;
}

function stringList(v: unknown, what: string, source: string): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  throw configError(source, `"${what}" must be a string or a list of strings`);
}

function absPath(p: string, baseDir: string): string {
  return isAbsolute(p) ? p : join(baseDir, p);
}

/** Reads one table of a hosts.toml (the top level or a `[host."..."]`). */
function entryFromToml(table: Record<string, unknown>, url: string | undefined, baseDir: string, source: string): HostEntryConfig {
  const entry: HostEntryConfig = {};
  if (url !== undefined) entry.url = url;
  if (table['override_path'] !== undefined) {
    if (typeof table['override_path'] !== 'boolean') throw configError(source, '"override_path" must be a boolean');
    entry.overridePath = table['override_path'];
  }
  // Checked here so that a bad URL is reported against its file.
  if (url !== undefined) parseEndpointUrl(url, entry.overridePath ?? false, source);
  if (table['capabilities'] !== undefined) {
    const caps = stringList(table['capabilities'], 'capabilities', source).map((c) => c.toLowerCase());
    for (const c of caps) {
      if (!(ALL_CAPABILITIES as readonly string[]).includes(c)) throw configError(source, `unknown capability "${c}"`);
    }
    entry.capabilities = caps as HostCapability[];
  }
  if (table['ca'] !== undefined) entry.ca = stringList(table['ca'], 'ca', source).map((p) => absPath(p, baseDir));
  const client = table['client'];
  if (client !== undefined) {
    const items = typeof client === 'string' ? [client] : Array.isArray(client) ? client : undefined;
    if (items === undefined) throw configError(source, '"client" must be a path, a list of paths, or a list of [cert, key] pairs');
    entry.client = items.map((item: unknown) => {
      if (typeof item === 'string') return { cert: absPath(item, baseDir) };
      if (Array.isArray(item) && item.length === 2 && item.every((x) => typeof x === 'string')) {
        return { cert: absPath(item[0] as string, baseDir), key: absPath(item[1] as string, baseDir) };
      }
      throw configError(source, `invalid "client" entry ${JSON.stringify(item)}: want a path or a [cert, key] pair`);
    });
  }
  if (table['skip_verify'] !== undefined) {
    if (typeof table['skip_verify'] !== 'boolean') throw configError(source, '"skip_verify" must be a boolean');
    entry.skipVerify = table['skip_verify'];
  }
  if (table['dial_timeout'] !== undefined) {
    if (typeof table['dial_timeout'] !== 'string') throw configError(source, '"dial_timeout" must be a duration string');
    entry.dialTimeoutMs = parseDuration(table['dial_timeout'], source);
  }
  const header = table['header'];
  if (header !== undefined) {
    if (typeof header !== 'object' || header === null || Array.isArray(header)) throw configError(source, '"header" must be a table');
    entry.header = {};
    for (const [k, v] of Object.entries(header)) entry.header[k] = stringList(v, `header.${k}`, source);
  }
  return entry;
}

/** Parses the text of a hosts.toml; relative paths are taken from `baseDir`. */
export function parseHostsToml(text: string, baseDir: string, source = join(baseDir, 'hosts.toml')): HostsConfig {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    const where = err instanceof TomlError ? ` (line ${err.line}, column ${err.column})` : '';
    throw configError(source, `invalid TOML${where}: ${errorMessage(err).split('\n')[0]}`, err);
  }
  const server = doc['server'];
  if (server !== undefined && typeof server !== 'string') throw configError(source, '"server" must be a string');
  const hosts = doc['host'] ?? {};
  if (typeof hosts !== 'object' || hosts === null || Array.isArray(hosts)) throw configError(source, '"host" must be a table of tables');
  const mirrors: HostEntryConfig[] = [];
  // Tables keep file order: object keys that are not integers iterate in insertion order.
  for (const [url, table] of Object.entries(hosts)) {
    if (typeof table !== 'object' || table === null || Array.isArray(table)) throw configError(source, `host."${url}" must be a table`);
    mirrors.push(entryFromToml(table as Record<string, unknown>, url, baseDir, source));
  }
  return { mirrors, server: entryFromToml(doc, server === '' ? undefined : server, baseDir, source) };
}

/**
 * Docker's certs.d layout, used when a host dir has no hosts.toml: `*.crt`
 * are CAs, `x.cert` (+ `x.key`) client certificates.
 */
async function certsDirConfig(dir: string): Promise<HostsConfig> {
  const files = (await readdir(dir, { withFileTypes: true })).filter((f) => f.isFile()).map((f) => f.name).sort();
  const server: HostEntryConfig = {};
  const ca = files.filter((f) => f.endsWith('.crt')).map((f) => join(dir, f));
  if (ca.length > 0) server.ca = ca;
  const client = files
    .filter((f) => f.endsWith('.cert'))
    .map((f) => {
      const key = `${f.slice(0, -'.cert'.length)}.key`;
      return files.includes(key) ? { cert: join(dir, f), key: join(dir, key) } : { cert: join(dir, f) };
    });
  if (client.length > 0) server.client = client;
  return { mirrors: [], server };
}

/** Reads `<dir>/hosts.toml`, or the certs.d files in `dir` when there is none. */
export async function loadHostsDir(dir: string): Promise<{ config: HostsConfig; source: string }> {
  const file = join(dir, 'hosts.toml');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) return { config: await certsDirConfig(dir), source: dir };
    throw configError(file, `cannot read: ${errorMessage(err)}`, err);
  }
  if (text.trim() === '') return { config: await certsDirConfig(dir), source: dir };
  return { config: parseHostsToml(text, dir, file), source: file };
}

/** Parses `[scheme://]host[:port][/path]` of a configured endpoint. */
function parseEndpointUrl(raw: string, overridePath: boolean, source: string): { scheme: 'http' | 'https'; host: string; path: string } {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `https://${raw}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw configError(source, `invalid host URL "${raw}"`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw configError(source, `host URL "${raw}" must be http or https`);
  if (u.search !== '' || u.hash !== '' || u.username !== '' || u.password !== '') {
    throw configError(source, `host URL "${raw}" must not have a query, fragment or credentials`);
  }
  let path = u.pathname.replace(/\/+$/, '');
  if (!overridePath && !path.endsWith('/v2')) path += '/v2';
  return { scheme: u.protocol === 'http:' ? 'http' : 'https', host: u.host, path };
}

/** The endpoint used for a registry when its config names no server. */
function defaultServer(registry: string): { scheme: 'http' | 'https'; host: string; path: string; skipVerify: boolean } {
  if (isLoopbackHost(registry)) {
    // A local registry answers plain HTTP unless it sits on the HTTPS port,
    // where (as containerd does) its certificate is not verified.
    const { port } = splitHostPort(registry);
    if (port === '' || port === '443') return { scheme: 'https', host: registry, path: '/v2', skipVerify: true };
    return { scheme: 'http', host: registry, path: '/v2', skipVerify: false };
  }
  return { scheme: 'https', host: defaultApiHost(registry), path: '/v2', skipVerify: false };
}

function isProxyFor(registry: string, host: string): boolean {
  return host !== registry && !(registry === 'docker.io' && host === 'registry-1.docker.io');
}

function toEndpoint(registry: string, entry: HostEntryConfig, isServer: boolean, source: string): RegistryEndpoint {
  const base =
    entry.url !== undefined
      ? { ...parseEndpointUrl(entry.url, entry.overridePath ?? false, source), skipVerify: false }
      : isServer
        ? defaultServer(registry)
        : undefined;
  if (base === undefined) throw configError(source, 'a mirror entry needs a URL');
  const ep: RegistryEndpoint = {
    registry,
    scheme: base.scheme,
    host: base.host,
    path: base.path,
    capabilities: entry.capabilities ?? ALL_CAPABILITIES,
    tls: { ca: entry.ca ?? [], client: entry.client ?? [], skipVerify: entry.skipVerify ?? base.skipVerify },
    header: entry.header ?? {},
    isMirror: isProxyFor(registry, base.host),
    source,
  };
  if (entry.dialTimeoutMs !== undefined) ep.dialTimeoutMs = entry.dialTimeoutMs;
  return ep;
}

/** Endpoints of `registry` under `config` (the built-in default when undefined), mirrors first. */
export function endpointsFromConfig(registry: string, config: HostsConfig | undefined, source = 'default'): RegistryEndpoint[] {
  const cfg = config ?? { mirrors: [], server: {} };
  return [...cfg.mirrors.map((m) => toEndpoint(registry, m, false, source)), toEndpoint(registry, cfg.server, true, source)];
}

/** The simple registry settings a daemon config may list instead of a hosts dir. */
export interface SimpleRegistryConfig {
  /** Mirror URLs, tried in order before the registry. */
  mirrors?: string[];
  /** Reach the registry over plain HTTP. */
  insecure?: boolean;
  /** HTTPS without verifying the certificate. */
  skipVerify?: boolean;
  /** Extra CA files (absolute paths). */
  ca?: string[];
}

/** A HostsConfig from the simple per-registry settings (mirrors list, insecure flag). */
export function hostsConfigFromSimple(registry: string, simple: SimpleRegistryConfig): HostsConfig {
  const server: HostEntryConfig = {};
  if (simple.insecure) server.url = `http://${defaultApiHost(registry)}`;
  if (simple.skipVerify !== undefined) server.skipVerify = simple.skipVerify;
  if (simple.ca !== undefined) server.ca = simple.ca;
  return {
    mirrors: (simple.mirrors ?? []).map((url) => ({ url, capabilities: ['pull', 'resolve'] as HostCapability[] })),
    server,
  };
}

export interface RegistryHostsOptions {
  /** containerd's `config_path`: holds `<host[:port]>/hosts.toml` and `_default/hosts.toml`. */
  configPath?: string;
  /** Host configs from the daemon config, by registry host (or `_default`). */
  configs?: Record<string, HostsConfig>;
}

/** Directory names that may hold a registry's config (containerd also accepts `host_port_`). */
function hostDirNames(registry: string): string[] {
  const names: string[] = [];
  const colon = registry.lastIndexOf(':');
  if (colon > 0 && !registry.endsWith(']')) names.push(`${registry.slice(0, colon)}_${registry.slice(colon + 1)}_`);
  names.push(registry);
  return names;
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR')) return false;
    throw configError(p, `cannot stat: ${errorMessage(err)}`, err);
  }
}

/**
 * Finds a registry's endpoints. Files are read on every call, so edits
 * apply to the next pull without a restart. Precedence: the registry's own
 * host dir, the daemon config's entry for it, `_default` dir, the daemon
 * config's `_default`, the built-in default.
 */
export class RegistryHosts {
  readonly #configPath: string | undefined;
  readonly #configs: Record<string, HostsConfig>;

  constructor(options: RegistryHostsOptions = {}) {
    this.#configPath = options.configPath;
    this.#configs = options.configs ?? {};
  }

  async endpoints(registry: string): Promise<RegistryEndpoint[]> {
    if (registry === '' || /[/\\]|^\.\.?$/.test(registry)) {
      throw new BerthError('invalid-argument', 'ERR_INVALID_REFERENCE', `invalid registry host "${registry}"`, {
        context: { registry },
      });
    }
    if (this.#configPath !== undefined) {
      for (const name of hostDirNames(registry)) {
        const dir = join(this.#configPath, name);
        if (await isDir(dir)) {
          const { config, source } = await loadHostsDir(dir);
          return endpointsFromConfig(registry, config, source);
        }
      }
    }
    const own = Object.hasOwn(this.#configs, registry) ? this.#configs[registry] : undefined;
    if (own !== undefined) return endpointsFromConfig(registry, own, 'config');
    if (this.#configPath !== undefined) {
      const dir = join(this.#configPath, '_default');
      if (await isDir(dir)) {
        const { config, source } = await loadHostsDir(dir);
        return endpointsFromConfig(registry, config, source);
      }
    }
    const fallback = Object.hasOwn(this.#configs, '_default') ? this.#configs['_default'] : undefined;
    if (fallback !== undefined) return endpointsFromConfig(registry, fallback, 'config');
    return endpointsFromConfig(registry, undefined, 'default');
  }
}
