import { readFile } from 'node:fs/promises';
import { parse as parseToml, TomlError } from 'smol-toml';
import { z } from 'zod';
import { BerthError, errorMessage, isErrnoCode } from '../core/errors.js';
import { LOG_LEVELS } from '../core/log.js';

/** Top-level daemon settings; plugin sections live under `[plugins."<type>.<id>"]`. */
export const DaemonConfigSchema = z
  .object({
    version: z.literal(1).default(1).describe('Config file format version.'),
    root: z.string().min(1).default('/var/lib/berth').describe('Persistent data: images, snapshots, metadata. Each plugin gets <root>/<type>.<id>.'),
    state: z.string().min(1).default('/run/berth').describe('Runtime state (should be on tmpfs): sockets, mounts, namespaces. Each plugin gets <state>/<type>.<id>.'),
    log_level: z.enum(LOG_LEVELS as [string, ...string[]]).default('info').describe('One of trace, debug, info, warn, error, fatal, silent.'),
    disabled_plugins: z.array(z.string()).default([]).describe('Plugins not to start, as "<type>.<id>".'),
    required_plugins: z
      .array(z.string())
      .default(['cri.service', 'grpc.cri'])
      .describe('Plugins that must start; if one fails or is skipped, berthd exits naming it.'),
    grpc: z
      .object({
        address: z.string().min(1).default('/run/berth/berth.sock').describe('UNIX socket the CRI gRPC services listen on (created 0660).'),
        gid: z.number().int().min(0).default(0).describe('Group that owns the socket.'),
        max_recv_message_size: z.number().int().positive().default(16 * 1024 * 1024).describe('Largest request accepted, in bytes.'),
        max_send_message_size: z.number().int().positive().default(16 * 1024 * 1024).describe('Largest response sent, in bytes.'),
        shutdown_timeout_seconds: z.number().positive().default(30).describe('How long SIGTERM waits for in-flight calls before cutting them off.'),
      })
      .strict()
      .prefault({})
      .describe('The gRPC server.'),
    plugins: z.record(z.string(), z.unknown()).default({}).describe('Per-plugin sections, keyed "<type>.<id>".'),
  })
  .strict();

export type DaemonConfig = z.infer<typeof DaemonConfigSchema>;

/** Command-line settings that override the file. */
export interface ConfigOverrides {
  address?: string;
  root?: string;
  state?: string;
  logLevel?: string;
  cniConfDir?: string;
  cniBinDirs?: string[];
  registryConfigDir?: string;
}

const CNI_KEY = 'network.cni';
const IMAGES_KEY = 'images.store';

/** Reads and validates a config file; a missing path given explicitly is an error. */
export async function loadConfigFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const why = isErrnoCode(err, 'ENOENT') ? 'no such file' : errorMessage(err);
    throw new BerthError('invalid-argument', 'ERR_CONFIG_READ', `cannot read config file ${path}: ${why}`, { context: { file: path }, cause: err });
  }
  try {
    return parseToml(text);
  } catch (err) {
    const where = err instanceof TomlError ? ` at line ${err.line}, column ${err.column}` : '';
    const first = errorMessage(err).split('\n')[0];
    throw new BerthError('invalid-argument', 'ERR_CONFIG_PARSE', `config file ${path} is not valid TOML${where}: ${first}`, { context: { file: path }, cause: err });
  }
}

/** Validates raw config (from TOML or `{}`) and applies command-line overrides. */
export function resolveConfig(raw: unknown, overrides: ConfigOverrides, source = '<defaults>'): DaemonConfig {
  const parsed = DaemonConfigSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`).join('; ');
    throw new BerthError('invalid-argument', 'ERR_CONFIG_INVALID', `invalid config in ${source}: ${issues}`, { context: { file: source } });
  }
  const config = parsed.data;
  if (overrides.root !== undefined) config.root = overrides.root;
  if (overrides.state !== undefined) config.state = overrides.state;
  if (overrides.address !== undefined) config.grpc.address = overrides.address;
  if (overrides.logLevel !== undefined) {
    if (!LOG_LEVELS.includes(overrides.logLevel as (typeof LOG_LEVELS)[number])) {
      throw new BerthError('invalid-argument', 'ERR_CONFIG_INVALID', `--log-level must be one of ${LOG_LEVELS.join(', ')}, not ${overrides.logLevel}`);
    }
    config.log_level = overrides.logLevel;
  }
  if (overrides.cniConfDir !== undefined || overrides.cniBinDirs !== undefined) {
    const section = asSection(config.plugins[CNI_KEY], CNI_KEY);
    if (overrides.cniConfDir !== undefined) section['conf_dir'] = overrides.cniConfDir;
    if (overrides.cniBinDirs !== undefined) section['bin_dirs'] = overrides.cniBinDirs;
    config.plugins[CNI_KEY] = section;
  }
  if (overrides.registryConfigDir !== undefined) {
    config.plugins[IMAGES_KEY] = { ...asSection(config.plugins[IMAGES_KEY], IMAGES_KEY), registry_config_dir: overrides.registryConfigDir };
  }
  return config;
}

function asSection(value: unknown, key: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return { ...(value as Record<string, unknown>) };
  throw new BerthError('invalid-argument', 'ERR_CONFIG_INVALID', `invalid config: plugins."${key}" must be a table`);
}
