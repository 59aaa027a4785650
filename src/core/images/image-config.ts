import { BerthError } from '../errors.js';
import type { ImageConfigSummary, ImagePlatform } from './types.js';

/**
 * Reading an OCI image config (image-spec config.md; Docker's is the same
 * for these fields). Fields of the wrong type make the config invalid rather
 * than being dropped silently: a container started without its image's Env
 * or User would be wrong in ways that are hard to trace.
 */

function invalid(what: string, why: string): BerthError {
  return new BerthError('failed-precondition', 'ERR_IMAGE_CONFIG_INVALID', `image config ${what}: ${why}`, { context: { config: what } });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringList(v: unknown, field: string, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw invalid(what, `${field} must be a list of strings`);
  return [...(v as string[])];
}

function optionalString(v: unknown, field: string, what: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw invalid(what, `${field} must be a string`);
  return v;
}

function keysOf(v: unknown, field: string, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!isObject(v)) throw invalid(what, `${field} must be an object`);
  return Object.keys(v).sort();
}

function stringMap(v: unknown, field: string, what: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isObject(v) || Object.values(v).some((s) => typeof s !== 'string')) throw invalid(what, `${field} must map strings to strings`);
  return { ...(v as Record<string, string>) };
}

/** Parses config bytes into a JSON object. */
export function parseImageConfig(bytes: Uint8Array, what: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw invalid(what, `not JSON (${(err as Error).message})`);
  }
  if (!isObject(doc)) throw invalid(what, 'not a JSON object');
  return doc;
}

/** The runtime settings of a parsed config. */
export function summarizeConfig(doc: Record<string, unknown>, what: string): ImageConfigSummary {
  const c = doc['config'] ?? {};
  if (!isObject(c)) throw invalid(what, '"config" must be an object');
  const summary: ImageConfigSummary = {
    env: stringList(c['Env'], 'Env', what),
    entrypoint: stringList(c['Entrypoint'], 'Entrypoint', what),
    cmd: stringList(c['Cmd'], 'Cmd', what),
    labels: stringMap(c['Labels'], 'Labels', what),
    exposedPorts: keysOf(c['ExposedPorts'], 'ExposedPorts', what),
    volumes: keysOf(c['Volumes'], 'Volumes', what),
  };
  const user = optionalString(c['User'], 'User', what);
  if (user !== undefined) summary.user = user;
  const workingDir = optionalString(c['WorkingDir'], 'WorkingDir', what);
  if (workingDir !== undefined) summary.workingDir = workingDir;
  const stopSignal = optionalString(c['StopSignal'], 'StopSignal', what);
  if (stopSignal !== undefined) summary.stopSignal = stopSignal;
  return summary;
}

/** The platform a config declares; os/architecture are '' when absent. */
export function configPlatform(doc: Record<string, unknown>, what: string): ImagePlatform {
  const os = optionalString(doc['os'], 'os', what) ?? '';
  const architecture = optionalString(doc['architecture'], 'architecture', what) ?? '';
  const variant = optionalString(doc['variant'], 'variant', what);
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}
