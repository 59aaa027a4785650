import { z } from 'zod';
import { BerthError } from '../errors.js';
import { PluginErrorCode } from './errors.js';
import { pluginKey, type PluginKey, type Registration } from './types.js';

export interface ConfigField {
  name: string;
  /** What the schema yields for the field when the input omits it. */
  defaultValue: unknown;
  /** The field's `.describe()` / `.meta({description})` text. */
  description: string | undefined;
  /** For a field that is itself an object schema: its fields. */
  fields?: ConfigField[];
}

export interface ConfigDescription {
  key: PluginKey;
  fields: ConfigField[];
}

/**
 * Field names, defaults and descriptions of an object schema, for printing a
 * commented default config. Throws ERR_PLUGIN_CONFIG_SCHEMA when the schema
 * cannot be defaulted from `{}`, since every field must have a default.
 */
export function describeSchema(schema: z.ZodObject, what = 'config schema'): ConfigField[] {
  const defaults = schema.safeParse({});
  if (!defaults.success) {
    const fields = [...new Set(defaults.error.issues.map((i) => i.path.map(String).join('.')))].join(', ');
    throw new BerthError('internal', PluginErrorCode.ConfigSchema, `${what} has fields without a usable default: ${fields}`, {
      context: { schema: what },
    });
  }
  return describeShape(schema.shape, defaults.data);
}

/** describeSchema for each registration with a config schema, in registration order. */
export function describeConfig(registrations: readonly Registration[]): ConfigDescription[] {
  return registrations.flatMap((reg) => {
    if (!reg.config) return [];
    const key = pluginKey(reg.type, reg.id);
    return [{ key, fields: describeSchema(reg.config, `config schema of ${key}`) }];
  });
}

function describeShape(shape: Record<string, z.core.$ZodType>, values: unknown): ConfigField[] {
  const record = isRecord(values) ? values : {};
  return Object.entries(shape).map(([name, schema]) => {
    const field: ConfigField = { name, defaultValue: record[name], description: undefined };
    // `.describe()` may sit inside or outside wrappers such as `.default()`
    // (`z.string().describe('x').default('y')`), so look through them.
    for (let at: z.core.$ZodType | undefined = schema; at; at = innerType(at)) {
      field.description ??= z.globalRegistry.get(at)?.description;
      if (at instanceof z.ZodObject) {
        field.fields = describeShape(at.shape, record[name]);
        break;
      }
    }
    return field;
  });
}

function innerType(schema: z.core.$ZodType): z.core.$ZodType | undefined {
  return (schema._zod.def as { innerType?: z.core.$ZodType }).innerType;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
