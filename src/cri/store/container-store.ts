import type { MetadataDB } from '../../core/metadata/index.js';
import { matchesLabels } from './labels.js';
import { matchId } from './ids.js';
import { RecordStore } from './record-store.js';
import { containerCodec, type ContainerRecord, type ContainerRecordState } from './records.js';

export interface ContainerFilter {
  /** An id or unique id prefix; '' or absent: every container. */
  id?: string;
  state?: ContainerRecordState;
  /** A full sandbox id (resolve a prefix through the SandboxStore first). */
  sandboxId?: string;
  labelSelector?: Record<string, string>;
}

/** Containers, in memory and in the `containers` table, indexed by sandbox. */
export class ContainerStore extends RecordStore<ContainerRecord> {
  private readonly bySandboxId = new Map<string, Set<string>>();

  constructor(db: MetadataDB) {
    super(db, 'containers', containerCodec, { sandbox_id: (r) => r.sandboxId });
  }

  /** The containers of one sandbox. */
  bySandbox(sandboxId: string): ContainerRecord[] {
    const ids = this.bySandboxId.get(sandboxId);
    if (ids === undefined) return [];
    const out: ContainerRecord[] = [];
    for (const id of ids) {
      const record = this.records.get(id);
      if (record !== undefined) out.push(record);
    }
    return out;
  }

  /** Containers matching every given criterion. An id prefix matching none (or several) gives none. */
  filter(filter: ContainerFilter = {}): ContainerRecord[] {
    let candidates: ContainerRecord[];
    if (filter.id !== undefined && filter.id !== '') {
      let id: string | undefined;
      try {
        id = matchId(this.records.keys(), filter.id, 'container');
      } catch {
        id = undefined;
      }
      const one = id === undefined ? undefined : this.records.get(id);
      candidates = one === undefined ? [] : [one];
    } else if (filter.sandboxId !== undefined && filter.sandboxId !== '') {
      candidates = this.bySandbox(filter.sandboxId);
    } else {
      candidates = this.list();
    }
    return candidates.filter(
      (c) =>
        (filter.state === undefined || c.state === filter.state) &&
        (filter.sandboxId === undefined || filter.sandboxId === '' || c.sandboxId === filter.sandboxId) &&
        matchesLabels(c.config.labels, filter.labelSelector),
    );
  }

  protected override indexed(record: ContainerRecord, previous: ContainerRecord | undefined): void {
    if (previous !== undefined && previous.sandboxId !== record.sandboxId) this.unindexed(previous);
    let ids = this.bySandboxId.get(record.sandboxId);
    if (ids === undefined) this.bySandboxId.set(record.sandboxId, (ids = new Set()));
    ids.add(record.id);
  }

  protected override unindexed(record: ContainerRecord): void {
    const ids = this.bySandboxId.get(record.sandboxId);
    if (ids === undefined) return;
    ids.delete(record.id);
    if (ids.size === 0) this.bySandboxId.delete(record.sandboxId);
  }
}
