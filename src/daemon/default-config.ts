import { stringify } from 'smol-toml';
import { describeConfig, describeSchema, type ConfigField, type Registration } from '../core/plugin/index.js';
import { DaemonConfigSchema } from './config.js';

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function comment(text: string | undefined): string[] {
  return text === undefined ? [] : text.split('\n').map((line) => `# ${line}`);
}

/** A TOML key: bare when it can be, quoted otherwise. */
function tomlKey(key: string): string {
  return /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
}

function header(path: readonly string[]): string {
  return `[${path.map(tomlKey).join('.')}]`;
}

function assignment(name: string, value: unknown): string {
  return stringify({ [name]: value }).trim().replace(/^\S+ = /, `${tomlKey(name)} = `);
}

/**
 * A table at `path`: its scalar and array fields as `key = value` lines (each
 * under its description), then its non-empty sub-tables as sections of their
 * own. An empty sub-table is shown commented out.
 */
function renderTable(path: readonly string[], fields: readonly ConfigField[]): string[] {
  const lines: string[] = path.length === 0 ? [] : [header(path)];
  const tables: string[] = [];
  for (const field of fields) {
    const value = field.defaultValue;
    if (isTable(value) && Object.keys(value).length > 0) {
      const inner = Object.entries(value).map(([name, defaultValue]) => ({
        name,
        defaultValue,
        description: field.fields?.find((f) => f.name === name)?.description,
        fields: field.fields?.find((f) => f.name === name)?.fields,
      }));
      tables.push('', ...comment(field.description), ...renderTable([...path, field.name], inner));
      continue;
    }
    lines.push(...comment(field.description));
    lines.push(isTable(value) ? `# ${tomlKey(field.name)} = {}` : assignment(field.name, value));
  }
  return [...lines, ...tables];
}

/** The complete default config as commented TOML, for `berthd config default`. */
export function renderDefaultConfig(registrations: readonly Registration[]): string {
  const top = describeSchema(DaemonConfigSchema).filter((f) => f.name !== 'plugins');
  const out: string[] = ['# berthd configuration (TOML). Command-line flags override these values.', ''];
  out.push(...renderTable([], top));
  for (const section of describeConfig(registrations)) {
    out.push('', ...renderTable(['plugins', section.key], section.fields));
  }
  return `${out.join('\n')}\n`;
}
