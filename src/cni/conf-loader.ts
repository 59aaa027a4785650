/**
 * Loads CNI network configurations from a conf dir the way libcni and
 * containerd's go-cni do: files ending in `.conf`, `.conflist` or `.json`
 * (subdirectories ignored), in lexical order of their names, at most
 * `maxConfNum` networks. A `.conflist` is a network list; a `.conf` is a
 * single plugin config that becomes a one-plugin list of the same name and
 * version; a `.json` is a list when it has `plugins`, else a single config.
 * An invalid file is skipped with a warning naming it and why, so one bad
 * file does not hide the good ones after it.
 */
import { open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage, isErrnoCode } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { compareCniVersions, isSupportedCniVersion } from './version.js';

export const CONF_EXTENSIONS: readonly string[] = ['.conf', '.conflist', '.json'];

/** Larger files are skipped, as go-cni does (2 MiB). */
export const MAX_CONF_FILE_BYTES = 2 * 1024 * 1024;

type JsonObject = Record<string, unknown>;

/** One plugin of a network list. */
export interface CniPluginConf {
  /** The plugin binary's name, looked up in the bin dirs. */
  readonly type: string;
  /** The plugin's config object as written (frozen; `capabilities` included). */
  readonly conf: Readonly<JsonObject>;
  /** Capabilities the plugin declares `true` in its `capabilities` map. */
  readonly capabilities: readonly string[];
}

/** A network list ready to run: what ADD/CHECK/DEL need. */
export interface CniNetwork {
  readonly name: string;
  /** The spec version the list is run with (the highest supported of `cniVersion`/`cniVersions`). */
  readonly cniVersion: string;
  /** `disableCheck` of the list: CHECK then succeeds without running plugins. */
  readonly disableCheck: boolean;
  readonly plugins: readonly CniPluginConf[];
  /** Absolute path of the file it came from; undefined for built-in networks. */
  readonly file?: string;
  /** The file's bytes as read (for a built-in network, its JSON). */
  readonly bytes: Buffer;
  /** The file's parsed JSON (frozen): the list, or the single plugin config of a `.conf`. */
  readonly raw: Readonly<JsonObject>;
}

export interface SkippedConf {
  file: string;
  reason: string;
}

export interface ConfDirLoad {
  dir: string;
  /** Valid networks in lexical file order, at most `maxConfNum` (when > 0). */
  networks: CniNetwork[];
  /** Candidate files that were read and rejected, in order. */
  skipped: SkippedConf[];
  /** The dir does not exist (not an error: it may be created later). */
  missing: boolean;
  /** Why the dir could not be listed, when it exists but is unreadable. */
  readError?: string;
}

export interface LoadOptions {
  /** Most networks to load; 0 or less loads every valid file. */
  maxConfNum: number;
  log: Logger;
}

/** A reason a config is invalid; caught by the loader and turned into a skip. */
class InvalidConf extends Error {}

function invalid(reason: string): never {
  throw new InvalidConf(reason);
}

/** Network names end up in file paths (IPAM state); the CNI library's rule. */
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** The extension as Go's filepath.Ext sees it: from the last dot on. */
function extensionOf(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot < 0 ? '' : name.slice(dot);
}

function parseName(value: unknown, where: string): string {
  if (value === undefined) invalid(`${where}: missing "name"`);
  if (typeof value !== 'string') invalid(`${where}: "name" must be a string`);
  if (!NETWORK_NAME.test(value)) {
    invalid(`${where}: invalid network name ${JSON.stringify(value)} (letters, digits, '_', '.', '-'; not starting with a symbol)`);
  }
  return value;
}

/**
 * The version to run with: `cniVersion`, or for a list with `cniVersions`
 * the highest supported entry of both (CNI 1.1).
 */
function parseVersion(obj: JsonObject, allowList: boolean): string {
  const candidates: string[] = [];
  const single = obj['cniVersion'];
  if (single !== undefined) {
    if (typeof single !== 'string') invalid('"cniVersion" must be a string');
    candidates.push(single);
  }
  const many = obj['cniVersions'];
  if (allowList && many !== undefined) {
    if (!Array.isArray(many) || many.some((v) => typeof v !== 'string')) invalid('"cniVersions" must be an array of strings');
    candidates.push(...(many as string[]));
  }
  if (candidates.length === 0) invalid('missing "cniVersion"');
  const supported = candidates.filter(isSupportedCniVersion).sort(compareCniVersions);
  const best = supported.at(-1);
  if (best === undefined) invalid(`unsupported cniVersion ${candidates.map((v) => JSON.stringify(v)).join(', ')}`);
  return best;
}

function parseBool(obj: JsonObject, key: string): boolean {
  const value = obj[key];
  if (value === undefined) return false;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string') {
    const lower = value.toLowerCase();
    if (lower === 'true') return true;
    if (lower === 'false') return false;
  }
  invalid(`"${key}" must be a boolean`);
}

function parsePlugin(value: unknown, where: string): CniPluginConf {
  if (!isObject(value)) invalid(`${where}: must be an object`);
  const type = value['type'];
  if (type === undefined || type === '') invalid(`${where}: missing "type"`);
  if (typeof type !== 'string') invalid(`${where}: "type" must be a string`);
  if (type.includes('/') || type === '.' || type === '..') invalid(`${where}: invalid plugin type ${JSON.stringify(type)}`);
  const capabilities: string[] = [];
  const caps = value['capabilities'];
  if (caps !== undefined) {
    if (!isObject(caps)) invalid(`${where}: "capabilities" must be an object`);
    for (const [name, enabled] of Object.entries(caps)) {
      if (typeof enabled !== 'boolean') invalid(`${where}: capability ${JSON.stringify(name)} must be a boolean`);
      if (enabled) capabilities.push(name);
    }
  }
  return { type, conf: deepFreeze(value), capabilities: Object.freeze(capabilities) };
}

function parseList(obj: JsonObject, bytes: Buffer, file: string | undefined): CniNetwork {
  const name = parseName(obj['name'], 'network list');
  const cniVersion = parseVersion(obj, true);
  const disableCheck = parseBool(obj, 'disableCheck');
  const plugins = obj['plugins'];
  if (plugins === undefined) invalid('missing "plugins"');
  if (!Array.isArray(plugins)) invalid('"plugins" must be an array');
  if (plugins.length === 0) invalid('no plugins in list');
  const parsed = plugins.map((p, i) => parsePlugin(p, `plugin ${i}`));
  return {
    name,
    cniVersion,
    disableCheck,
    plugins: Object.freeze(parsed),
    ...(file === undefined ? {} : { file }),
    bytes,
    raw: deepFreeze(obj),
  };
}

/** A single plugin config becomes a one-plugin list of its name and version (libcni's ConfListFromConf). */
function parseSingle(obj: JsonObject, bytes: Buffer, file: string | undefined): CniNetwork {
  if (obj['type'] === undefined && obj['plugins'] !== undefined) {
    invalid('missing "type" (a network list belongs in a .conflist file)');
  }
  const name = parseName(obj['name'], 'network config');
  const cniVersion = parseVersion(obj, false);
  const plugin = parsePlugin(obj, 'network config');
  return {
    name,
    cniVersion,
    disableCheck: false,
    plugins: Object.freeze([plugin]),
    ...(file === undefined ? {} : { file }),
    bytes,
    raw: plugin.conf,
  };
}

export type ConfKind = 'list' | 'single' | 'auto';

/** How a file's extension says to read it: `.json` is a list only when it has `plugins`. */
export function confKindOf(fileName: string): ConfKind {
  switch (extensionOf(fileName)) {
    case '.conflist':
      return 'list';
    case '.json':
      return 'auto';
    default:
      return 'single';
  }
}

export type ParseOutcome = { ok: true; network: CniNetwork } | { ok: false; reason: string };

/** Parse one network config (list or single plugin) from bytes. Never throws. */
export function parseNetworkConfig(bytes: Buffer, kind: ConfKind, file?: string): ParseOutcome {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    return { ok: false, reason: `invalid JSON: ${errorMessage(err)}` };
  }
  if (!isObject(json)) return { ok: false, reason: 'not a JSON object' };
  try {
    const asList = kind === 'list' || (kind === 'auto' && json['plugins'] !== undefined);
    const network = asList ? parseList(json, bytes, file) : parseSingle(json, bytes, file);
    return { ok: true, network };
  } catch (err) {
    if (err instanceof InvalidConf) return { ok: false, reason: err.message };
    throw err;
  }
}

async function readConfFile(file: string): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const st = await handle.stat();
    if (!st.isFile()) invalid('not a regular file');
    if (st.size > MAX_CONF_FILE_BYTES) invalid(`larger than ${MAX_CONF_FILE_BYTES} bytes`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** Conf file names in a dir, lexically (byte) ordered; subdirectories skipped. */
async function listConfFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((e) => !e.isDirectory() && CONF_EXTENSIONS.includes(extensionOf(e.name)))
    .map((e) => e.name)
    .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

/** Load the networks of a conf dir. Never throws for bad content or a missing/unreadable dir. */
export async function loadConfDir(dir: string, opts: LoadOptions): Promise<ConfDirLoad> {
  const result: ConfDirLoad = { dir, networks: [], skipped: [], missing: false };
  let names: string[];
  try {
    names = await listConfFiles(dir);
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT')) {
      result.missing = true;
    } else {
      result.readError = errorMessage(err);
      opts.log.warn({ dir, err: result.readError }, 'cannot read CNI conf dir');
    }
    return result;
  }
  for (const name of names) {
    if (opts.maxConfNum > 0 && result.networks.length >= opts.maxConfNum) break;
    const file = path.join(dir, name);
    let outcome: ParseOutcome;
    try {
      outcome = parseNetworkConfig(await readConfFile(file), confKindOf(name), file);
    } catch (err) {
      // Vanished between listing and reading, unreadable, too large...
      outcome = { ok: false, reason: err instanceof InvalidConf ? err.message : `cannot read: ${errorMessage(err)}` };
    }
    if (outcome.ok) {
      result.networks.push(outcome.network);
    } else {
      result.skipped.push({ file, reason: outcome.reason });
      opts.log.warn({ file, reason: outcome.reason }, `skipping invalid CNI config ${file}: ${outcome.reason}`);
    }
  }
  return result;
}
