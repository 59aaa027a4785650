import { stringify } from 'smol-toml';
import { describeConfig, describeSchema, type ConfigField, type Registration } from '../core/plugin/index.js';
import { DaemonConfigSchema } from './config.js';

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function comment(text: string | undefined): string[] {
  return text === undefined ? [] : text.split('\n').map((line) => `# ${line}`);
}

/** `key = value` lines for the scalar and array fields; tables come after as `[path]` sections. */
function renderTable(header: string | undefined, fields: readonly ConfigField[]): string[] {
  const lines: string[] = [];
  const tables: string[] = [];
  if (header !== undefined) lines.push(`[${header}]`);
  for (const field of fields) {
    const value = field.defaultValue;
    if (isTable(value) && Object.keys(value).length > 0) {
      const sub = header === undefined ? field.name : `${header}.${field.name}`;
      tables.push('', ...comment(field.description), stringify({ [sub]: value }).trim());
      continue;
    }
    lines.push(...comment(field.description));
    lines.push(isTable(value) ? `# ${field.name} = {}` : stringify({ [field.name]: value }).trim());
  }
  return [...lines, ...tables];
}

/** The complete default config as commented TOML, for `berthd config default`. */
export function renderDefaultConfig(registrations: readonly Registration[]): string {
  const top = describeSchema(DaemonConfigSchema).filter((f) => f.name !== 'plugins');
  const scalars = top.filter((f) => !isTable(f.defaultValue));
  const tables = top.filter((f) => isTable(f.defaultValue));
  const out: string[] = ['# berthd configuration (TOML). Command-line flags override these values.', ''];
  out.push(...renderTable(undefined, scalars));
  for (const table of tables) {
    const inner = Object.entries(table.defaultValue as Record<string, unknown>).map(([name, defaultValue]) => ({
      name,
      defaultValue,
      description: table.fields?.find((f) => f.name === name)?.description,
    }));
    out.push('', ...comment(table.description), ...renderTable(table.name, inner));
  }
  for (const section of describeConfig(registrations)) {
    out.push('', ...renderTable(`plugins."${section.key}"`, section.fields));
  }
  return `${out.join('\n')}\n`;
}
