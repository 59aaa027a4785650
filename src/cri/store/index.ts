/**
 * The CRI service's records of sandboxes and containers: in memory for every
 * read, written through to the metadata DB (`cri` migrations: tables
 * `sandboxes` and `containers`) before a change is visible.
 */
import type { MetadataDB, Migration } from '../../core/metadata/index.js';
import { ContainerStore } from './container-store.js';
import { SandboxStore } from './sandbox-store.js';

export { SandboxStore, type SandboxFilter } from './sandbox-store.js';
export { ContainerStore, type ContainerFilter } from './container-store.js';
export { RecordStore } from './record-store.js';
export { NameIndex, sandboxName, containerName } from './names.js';
export { newId, matchId } from './ids.js';
export { matchesLabels } from './labels.js';
export {
  encodeRecord,
  decodeRecord,
  sandboxCodec,
  containerCodec,
  nowNs,
  type SandboxRecord,
  type SandboxState,
  type ContainerRecord,
  type ContainerRecordState,
  type RecordCodec,
} from './records.js';

export const CRI_MIGRATIONS: readonly Migration[] = [
  `CREATE TABLE sandboxes (
    id TEXT PRIMARY KEY CHECK (length(id) > 0),
    record TEXT NOT NULL CHECK (json_valid(record))
  ) STRICT;
  CREATE TABLE containers (
    id TEXT PRIMARY KEY CHECK (length(id) > 0),
    sandbox_id TEXT NOT NULL,
    record TEXT NOT NULL CHECK (json_valid(record))
  ) STRICT;
  CREATE INDEX containers_by_sandbox ON containers (sandbox_id);`,
];

export interface CriStores {
  sandboxes: SandboxStore;
  containers: ContainerStore;
}

/** Migrates the `cri` tables and loads both stores into memory. */
export function openCriStores(db: MetadataDB): CriStores {
  db.migrate('cri', CRI_MIGRATIONS);
  const sandboxes = new SandboxStore(db);
  const containers = new ContainerStore(db);
  sandboxes.load();
  containers.load();
  return { sandboxes, containers };
}
