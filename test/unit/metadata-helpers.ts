// Helpers for the metadata store tests (and the stores built on it): a SqliteMetadata in a private temp dir,
// and an assert.throws matcher for BerthErrors.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/log.js';
import { SqliteMetadata } from '../../src/core/metadata/index.js';

/** Matches a BerthError of this kind and code (for assert.throws / assert.rejects). */
export function isBerth(kind: string, code: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof BerthError, `expected BerthError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.kind, kind);
    return true;
  };
}

/** A fresh temp dir (named from `prefix`) with a SqliteMetadata on `<dir>/meta.db`; for beforeEach. */
export async function openTempMetadata(prefix: string): Promise<{ dir: string; meta: SqliteMetadata }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, meta: new SqliteMetadata(join(dir, 'meta.db'), createLogger('silent')) };
}

/** Closes `meta` and removes `dir`; for afterEach. */
export async function closeTempMetadata(dir: string, meta: SqliteMetadata): Promise<void> {
  meta.close();
  await rm(dir, { recursive: true, force: true });
}
