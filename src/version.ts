import { readFileSync } from 'node:fs';

/** Berth's version, read once from package.json (dist/src/version.js → ../../package.json). */
export const BERTH_VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

export const RUNTIME_NAME = 'berth';
/** The CRI API version Berth serves. */
export const RUNTIME_API_VERSION = 'v1';
