import { readFile } from 'node:fs/promises';
import { BerthError, errorMessage } from '../errors.js';
import type { OciSpec } from './spec/index.js';

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Reads a handler's base OCI spec: a JSON object with at least `ociVersion`;
 * `process`, `linux` and `annotations` must be objects and `mounts` an array
 * where present. Any problem is an ERR_RUNTIME_BASE_SPEC naming the file.
 */
export async function loadBaseSpec(path: string, handler: string): Promise<OciSpec> {
  const fail = (why: string, cause?: unknown): BerthError =>
    new BerthError('invalid-argument', 'ERR_RUNTIME_BASE_SPEC', `base_spec ${path} of runtime handler ${handler}: ${why}`, {
      context: { handler, file: path },
      cause,
    });
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw fail(`cannot read it: ${errorMessage(err)}`, err);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw fail(`not valid JSON: ${errorMessage(err)}`, err);
  }
  if (!isObject(parsed)) throw fail('not a JSON object');
  if (typeof parsed.ociVersion !== 'string') throw fail('no "ociVersion" string: not an OCI runtime spec');
  for (const key of ['process', 'linux', 'annotations', 'root']) {
    if (key in parsed && !isObject(parsed[key])) throw fail(`"${key}" is not an object`);
  }
  if ('mounts' in parsed && !Array.isArray(parsed.mounts)) throw fail('"mounts" is not an array');
  return parsed as unknown as OciSpec;
}

/** Arrays merged entry by entry (by the key each entry is known by); every other array is replaced. */
const KEYED_ARRAYS: Record<string, (entry: unknown) => string | undefined> = {
  mounts: (m) => (isObject(m) && typeof m.destination === 'string' ? m.destination : undefined),
  'process.env': (e) => (typeof e === 'string' ? e.split('=', 1)[0] : undefined),
  'process.rlimits': (r) => (isObject(r) && typeof r.type === 'string' ? r.type : undefined),
  'linux.devices': (d) => (isObject(d) && typeof d.path === 'string' ? d.path : undefined),
};

function mergeKeyed(base: unknown[], own: unknown[], keyOf: (entry: unknown) => string | undefined): unknown[] {
  const ownKeys = new Set(own.map(keyOf).filter((k) => k !== undefined));
  const ownJson = new Set(own.map((e) => JSON.stringify(e)));
  // Base entries the generated spec does not override (or already hold) come first: a base is the starting point.
  const kept = base.filter((e) => {
    const k = keyOf(e);
    return k === undefined ? !ownJson.has(JSON.stringify(e)) : !ownKeys.has(k);
  });
  return [...structuredClone(kept), ...own];
}

function mergeAt(path: string, base: unknown, own: unknown): unknown {
  if (own === undefined) return structuredClone(base);
  if (isObject(base) && isObject(own)) {
    const out: Json = {};
    for (const key of new Set([...Object.keys(base), ...Object.keys(own)])) {
      const v = mergeAt(path === '' ? key : `${path}.${key}`, base[key], own[key]);
      if (v !== undefined) out[key] = v;
    }
    return out;
  }
  const keyOf = KEYED_ARRAYS[path];
  if (keyOf && Array.isArray(base) && Array.isArray(own)) return mergeKeyed(base, own, keyOf);
  return own;
}

/**
 * A generated container spec laid over a handler's base spec: what the
 * generated spec sets wins; what it leaves out comes from the base; mounts
 * (by destination), process env (by name), rlimits (by type) and devices (by
 * path) are unions where the generated entry wins. Idempotent: applying the
 * same base twice gives the same spec.
 */
export function applyBaseSpec(base: OciSpec, spec: OciSpec): OciSpec {
  return mergeAt('', base, spec) as OciSpec;
}
