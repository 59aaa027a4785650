import type { z } from 'zod';
import type { Logger } from '../log.js';

/**
 * Plugin types. A plugin `requires` types, never ids: whichever plugins of
 * that type are enabled satisfy the dependency. Keep this list the one place
 * that names them.
 */
export const PluginType = {
  Content: 'content',
  Metadata: 'metadata',
  Snapshotter: 'snapshotter',
  Diff: 'diff',
  Images: 'images',
  Events: 'events',
  Runtime: 'runtime',
  GC: 'gc',
  Network: 'network',
  CRI: 'cri',
  Streaming: 'streaming',
  GRPC: 'grpc',
} as const;
export type PluginType = (typeof PluginType)[keyof typeof PluginType];

/** `<type>.<id>`, the key a plugin goes by in config and listings. */
export type PluginKey = `${string}.${string}`;

export function pluginKey(type: string, id: string): PluginKey {
  return `${type}.${id}`;
}

/** Metadata a plugin publishes at init, shown by `Status` verbose. */
export interface PluginMeta {
  /** Free-form exports: root path, socket, versions... */
  exports?: Record<string, string>;
  capabilities?: string[];
  platforms?: string[];
}

/**
 * What a plugin's init receives. Lookups only see plugins that were
 * initialised successfully; the registry guarantees that every type in
 * `requires` has been tried before this plugin.
 */
export interface InitContext<C> {
  readonly type: PluginType;
  readonly id: string;
  /** `<root>/<type>.<id>`, created before init; persistent data. */
  readonly rootDir: string;
  /** `<state>/<type>.<id>`, created before init; runtime state (tmpfs). */
  readonly stateDir: string;
  /** The daemon's top-level root and state dirs. */
  readonly daemonRoot: string;
  readonly daemonState: string;
  /** The plugin's config section, decoded and defaulted by its schema. */
  readonly config: C;
  /** Child logger with `plugin: "<type>.<id>"`. */
  readonly log: Logger;
  /** Publish exports/capabilities/platforms (merged with earlier calls). */
  meta(meta: PluginMeta): void;
  /** The single ok plugin of a type; throws (not-found) if none or ambiguous. */
  get<T>(type: PluginType): T;
  /** The ok plugin `<type>.<id>`; throws (not-found) if it is not ok. */
  getById<T>(type: PluginType, id: string): T;
  /** Every ok plugin of a type, in init order, keyed by id. */
  getAll<T>(type: PluginType): Map<string, T>;
  /** Live view of every plugin and its status, for introspection. */
  records(): readonly PluginRecord[];
}

/** An initialised plugin may hold resources; closed in reverse init order. */
export interface Closable {
  close(): Promise<void> | void;
}

export interface Registration<C = unknown, I = unknown> {
  type: PluginType;
  id: string;
  /** Types this plugin needs initialised first. */
  requires?: readonly PluginType[];
  /**
   * Schema of the plugin's config section (`[plugins."<type>.<id>"]`).
   * Every field has a default and a `.describe()` text, which
   * `berthd config default` prints as the comment above it.
   */
  config?: z.ZodObject;
  init(ctx: InitContext<C>): Promise<I> | I;
}

export type PluginStatus =
  | { state: 'ok' }
  | { state: 'skipped'; reason: string }
  | { state: 'failed'; error: string };

export interface PluginRecord {
  type: PluginType;
  id: string;
  key: PluginKey;
  requires: readonly PluginType[];
  status: PluginStatus;
  meta: PluginMeta;
  /** Milliseconds its init took, when it ran. */
  initMs?: number;
}
