// Helpers for the local content store tests: a store in a private temp dir.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalContentStore } from '../../src/core/content/index.js';
import { createLogger } from '../../src/core/log.js';

/** A fresh temp dir (named from `prefix`) holding an open LocalContentStore; for beforeEach. */
export async function openTempContentStore(prefix: string): Promise<{ root: string; store: LocalContentStore }> {
  const root = await mkdtemp(join(tmpdir(), prefix));
  return { root, store: await LocalContentStore.open(root, createLogger('silent')) };
}

/** Closes `store` and removes `root`; for afterEach. */
export async function closeTempContentStore(root: string, store: LocalContentStore): Promise<void> {
  await store.close();
  await rm(root, { recursive: true, force: true });
}
