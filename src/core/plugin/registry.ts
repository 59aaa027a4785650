import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { z } from 'zod';
import { BerthError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { PluginErrorCode, PluginSkipError } from './errors.js';
import { orderRegistrations } from './graph.js';
import {
  pluginKey,
  type Closable,
  type InitContext,
  type PluginKey,
  type PluginMeta,
  type PluginRecord,
  type PluginStatus,
  type PluginType,
  type Registration,
} from './types.js';

export const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;

export interface PluginRegistryOptions {
  /** Every plugin compiled in; order matters only among independent ones. */
  registrations: readonly Registration[];
  /** Daemon root (persistent); each plugin gets `<root>/<type>.<id>`. */
  root: string;
  /** Daemon state (runtime); each plugin gets `<state>/<type>.<id>`. */
  state: string;
  /** Config sections by plugin key (`[plugins."<type>.<id>"]`), undecoded. */
  pluginConfig?: Partial<Record<PluginKey, unknown>>;
  /** Keys of plugins not to load. */
  disabled?: readonly string[];
  /** Keys of plugins that must come up, or startup fails. */
  required?: readonly string[];
  log: Logger;
  /** Bound on each instance's close(); default 10 s. */
  closeTimeoutMs?: number;
}

interface Entry {
  readonly reg: Registration;
  readonly record: PluginRecord;
  instance?: unknown;
}

/**
 * Brings plugins up in dependency order and down in reverse. The graph and
 * the `required` keys are checked by the constructor, so a broken set of
 * registrations throws before any plugin runs.
 */
export class PluginRegistry {
  private readonly ordered: readonly Registration[];
  private readonly root: string;
  private readonly state: string;
  private readonly pluginConfig: Partial<Record<PluginKey, unknown>>;
  private readonly disabled: ReadonlySet<string>;
  private readonly required: readonly string[];
  private readonly log: Logger;
  private readonly closeTimeoutMs: number;
  /** In init order; grows as plugins are processed. */
  private readonly entries: Entry[] = [];
  private readonly recordList: PluginRecord[] = [];
  private started = false;
  private initializing: Promise<void> | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: PluginRegistryOptions) {
    this.ordered = orderRegistrations(options.registrations);
    this.root = options.root;
    this.state = options.state;
    this.pluginConfig = options.pluginConfig ?? {};
    this.disabled = new Set(options.disabled ?? []);
    this.required = [...new Set(options.required ?? [])];
    this.log = options.log;
    this.closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;

    const known = new Set<string>(this.ordered.map((r) => pluginKey(r.type, r.id)));
    const unknownRequired = this.required.filter((key) => !known.has(key));
    if (unknownRequired.length > 0) {
      const list = unknownRequired.join(', ');
      throw new BerthError('invalid-argument', PluginErrorCode.Unknown, `required plugins are not registered: ${list}`, {
        context: { plugins: list },
      });
    }
    for (const key of this.disabled) {
      if (!known.has(key)) this.log.warn({ plugin: key }, 'disabled plugin is not registered; ignoring');
    }
    for (const key of Object.keys(this.pluginConfig)) {
      if (!known.has(key)) this.log.warn({ plugin: key }, 'config section names no registered plugin; ignoring');
    }
  }

  /**
   * Initialises every plugin in order. Throws ERR_PLUGIN_REQUIRED, after
   * closing what came up, when a plugin in `required` is not ok.
   */
  async init(): Promise<void> {
    if (this.started || this.closing) {
      throw new BerthError('failed-precondition', PluginErrorCode.RegistryState, 'plugin registry already started or closed');
    }
    this.started = true;
    for (const reg of this.ordered) {
      if (this.closing) {
        throw new BerthError('cancelled', PluginErrorCode.RegistryState, 'plugin registry closed during startup');
      }
      const entry = this.newEntry(reg);
      this.initializing = this.initOne(entry);
      await this.initializing;
      this.initializing = undefined;
      // Listed once settled, so lookups and records() never see a plugin mid-init.
      this.entries.push(entry);
      this.recordList.push(entry.record);
    }

    const notOk = this.required
      .map((key) => this.entries.find((e) => e.record.key === key)!)
      .filter((e) => e.record.status.state !== 'ok');
    if (notOk.length > 0) {
      await this.close();
      const list = notOk.map((e) => `${e.record.key} ${describeStatus(e.record.status)}`).join('; ');
      throw new BerthError('failed-precondition', PluginErrorCode.Required, `required plugins did not start: ${list}`, {
        context: { plugins: notOk.map((e) => e.record.key).join(', ') },
      });
    }
  }

  /** Every processed plugin and its status, in init order (live objects). */
  records(): readonly PluginRecord[] {
    return this.recordList;
  }

  get<T>(type: PluginType): T {
    const ok = this.okOfType(type);
    if (ok.length === 1) return ok[0]!.instance as T;
    if (ok.length === 0) {
      throw new BerthError('not-found', PluginErrorCode.NotFound, `no ${type} plugin is available`, { context: { type } });
    }
    throw new BerthError(
      'not-found',
      PluginErrorCode.Ambiguous,
      `several ${type} plugins are available (${ok.map((e) => e.record.key).join(', ')}); look one up by id`,
      { context: { type } },
    );
  }

  getById<T>(type: PluginType, id: string): T {
    const key = pluginKey(type, id);
    const entry = this.entries.find((e) => e.record.key === key);
    if (entry?.record.status.state === 'ok') return entry.instance as T;
    const why = entry ? ` (${describeStatus(entry.record.status)})` : '';
    throw new BerthError('not-found', PluginErrorCode.NotFound, `plugin ${key} is not available${why}`, {
      context: { plugin: key },
    });
  }

  getAll<T>(type: PluginType): Map<string, T> {
    return new Map(this.okOfType(type).map((e) => [e.record.id, e.instance as T]));
  }

  /**
   * Closes instances that have a close(), in reverse init order. A close
   * that throws or outlasts the timeout is logged and the next one runs.
   * Waits for an init in progress first; later calls share the first.
   */
  close(): Promise<void> {
    this.closing ??= this.closeAll();
    return this.closing;
  }

  private async closeAll(): Promise<void> {
    await this.initializing;
    for (const entry of [...this.entries].reverse()) {
      if (entry.record.status.state !== 'ok' || !isClosable(entry.instance)) continue;
      const key = entry.record.key;
      const started = performance.now();
      try {
        await this.bounded(entry.instance, key);
        this.log.debug({ plugin: key, ms: elapsed(started) }, 'plugin closed');
      } catch (err) {
        this.log.error({ plugin: key, ms: elapsed(started), err }, 'plugin close failed');
      }
    }
  }

  private bounded(instance: Closable, key: PluginKey): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new BerthError('deadline-exceeded', PluginErrorCode.CloseTimeout, `close of ${key} took over ${this.closeTimeoutMs} ms`, {
              context: { plugin: key },
            }),
          ),
        this.closeTimeoutMs,
      );
    });
    const closed = (async () => {
      await instance.close();
    })();
    return Promise.race([closed, timeout]).finally(() => clearTimeout(timer));
  }

  private okOfType(type: PluginType): Entry[] {
    return this.entries.filter((e) => e.record.type === type && e.record.status.state === 'ok');
  }

  private newEntry(reg: Registration): Entry {
    const record: PluginRecord = {
      type: reg.type,
      id: reg.id,
      key: pluginKey(reg.type, reg.id),
      requires: [...new Set(reg.requires ?? [])],
      // Overwritten by initOne before the record is listed.
      status: { state: 'failed', error: 'not initialised' },
      meta: {},
    };
    return { reg, record };
  }

  /** Runs one plugin and sets its record's status; never throws. */
  private async initOne(entry: Entry): Promise<void> {
    const { reg, record } = entry;
    const key = record.key;

    const skip = (reason: string, ms?: number): void => {
      record.status = { state: 'skipped', reason };
      this.log.info({ plugin: key, ms, status: 'skipped', reason }, 'plugin skipped');
    };
    const fail = (error: string, ms?: number, err?: unknown): void => {
      record.status = { state: 'failed', error };
      this.log.warn({ plugin: key, ms, status: 'failed', err: err ?? error }, 'plugin failed');
    };

    if (this.disabled.has(key)) return skip('disabled by config');
    const blocked = this.blockedBy(reg);
    if (blocked) return skip(blocked);

    const rootDir = join(this.root, key);
    const stateDir = join(this.state, key);
    try {
      await mkdir(rootDir, { recursive: true, mode: 0o700 });
      await mkdir(stateDir, { recursive: true, mode: 0o700 });
    } catch (err) {
      return fail(`cannot create plugin directories: ${errorMessage(err)}`, undefined, err);
    }

    const decoded = this.decodeConfig(reg, key);
    if (!decoded.ok) return fail(decoded.error);

    const ctx = this.context(reg, entry, rootDir, stateDir, decoded.config);
    const started = performance.now();
    try {
      entry.instance = await reg.init(ctx);
    } catch (err) {
      record.initMs = elapsed(started);
      if (err instanceof PluginSkipError) return skip(err.reason, record.initMs);
      return fail(errorMessage(err), record.initMs, err);
    }
    record.initMs = elapsed(started);
    record.status = { state: 'ok' };
    this.log.info({ plugin: key, ms: record.initMs, status: 'ok' }, 'plugin initialised');
  }

  /** Why a plugin cannot run: some type it requires has no ok plugin. */
  private blockedBy(reg: Registration): string | undefined {
    for (const type of new Set(reg.requires ?? [])) {
      const providers = this.entries.filter((e) => e.record.type === type && e.reg !== reg);
      if (providers.some((e) => e.record.status.state === 'ok')) continue;
      const why = providers.map((e) => `${e.record.key} ${describeStatus(e.record.status)}`).join('; ');
      return `requires ${type}, but ${why}`;
    }
    return undefined;
  }

  private decodeConfig(reg: Registration, key: PluginKey): { ok: true; config: unknown } | { ok: false; error: string } {
    const section = this.pluginConfig[key];
    if (!reg.config) {
      if (section !== undefined) this.log.warn({ plugin: key }, 'plugin takes no config; ignoring its section');
      return { ok: true, config: undefined };
    }
    let parsed: ReturnType<typeof reg.config.safeParse>;
    try {
      parsed = reg.config.safeParse(section ?? {});
    } catch (err) {
      // A refinement or transform in the schema threw rather than reporting an issue.
      return { ok: false, error: `invalid config [plugins."${key}"]: ${errorMessage(err)}` };
    }
    if (!parsed.success) {
      return { ok: false, error: `invalid config [plugins."${key}"]: ${formatIssues(parsed.error)}` };
    }
    if (isObject(section)) {
      const unknown = Object.keys(section).filter((k) => !(k in reg.config!.shape));
      if (unknown.length > 0) this.log.warn({ plugin: key, keys: unknown }, 'unknown config keys ignored');
    }
    return { ok: true, config: parsed.data };
  }

  private context(
    reg: Registration,
    entry: Entry,
    rootDir: string,
    stateDir: string,
    config: unknown,
  ): InitContext<unknown> {
    const key = entry.record.key;
    const declared = new Set(reg.requires ?? []);
    const check = (type: PluginType): void => {
      if (!declared.has(type)) {
        throw new BerthError(
          'internal',
          PluginErrorCode.Undeclared,
          `plugin ${key} looked up type "${type}" without declaring it in requires`,
          { context: { plugin: key, type } },
        );
      }
    };
    return {
      type: reg.type,
      id: reg.id,
      rootDir,
      stateDir,
      daemonRoot: this.root,
      daemonState: this.state,
      config,
      log: this.log.child({ plugin: key }),
      meta: (meta) => {
        entry.record.meta = mergeMeta(entry.record.meta, meta);
      },
      get: <T>(type: PluginType): T => {
        check(type);
        return this.get<T>(type);
      },
      getById: <T>(type: PluginType, id: string): T => {
        check(type);
        return this.getById<T>(type, id);
      },
      getAll: <T>(type: PluginType): Map<string, T> => {
        check(type);
        return this.getAll<T>(type);
      },
      records: () => this.records(),
    };
  }
}

function describeStatus(status: PluginStatus): string {
  switch (status.state) {
    case 'ok':
      return 'is ok';
    case 'skipped':
      return `skipped: ${status.reason}`;
    case 'failed':
      return `failed: ${status.error}`;
  }
}

function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length > 0 ? issue.path.map(String).join('.') : '(section)'}: ${issue.message}`)
    .join('; ');
}

function mergeMeta(into: PluginMeta, add: PluginMeta): PluginMeta {
  const union = (a?: string[], b?: string[]): string[] | undefined =>
    a || b ? [...new Set([...(a ?? []), ...(b ?? [])])] : undefined;
  const merged: PluginMeta = {};
  if (into.exports || add.exports) merged.exports = { ...into.exports, ...add.exports };
  const capabilities = union(into.capabilities, add.capabilities);
  if (capabilities) merged.capabilities = capabilities;
  const platforms = union(into.platforms, add.platforms);
  if (platforms) merged.platforms = platforms;
  return merged;
}

function isClosable(value: unknown): value is Closable {
  return typeof value === 'object' && value !== null && typeof (value as Partial<Closable>).close === 'function';
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function elapsed(since: number): number {
  return Math.round((performance.now() - since) * 10) / 10;
}
