import type { MetadataDB } from '../../core/metadata/index.js';
import { matchesLabels } from './labels.js';
import { matchId } from './ids.js';
import { RecordStore } from './record-store.js';
import { sandboxCodec, type SandboxRecord, type SandboxState } from './records.js';

export interface SandboxFilter {
  /** An id or unique id prefix; '' or absent: every sandbox. */
  id?: string;
  state?: SandboxState;
  labelSelector?: Record<string, string>;
}

/** Sandboxes, in memory and in the `sandboxes` table. */
export class SandboxStore extends RecordStore<SandboxRecord> {
  constructor(db: MetadataDB) {
    super(db, 'sandboxes', sandboxCodec);
  }

  /** Sandboxes matching every given criterion. An id prefix matching none (or several) gives none. */
  filter(filter: SandboxFilter = {}): SandboxRecord[] {
    let candidates: SandboxRecord[];
    if (filter.id !== undefined && filter.id !== '') {
      let id: string | undefined;
      try {
        id = matchId(this.records.keys(), filter.id, 'sandbox');
      } catch {
        id = undefined;
      }
      const one = id === undefined ? undefined : this.records.get(id);
      candidates = one === undefined ? [] : [one];
    } else {
      candidates = this.list();
    }
    return candidates.filter((s) => (filter.state === undefined || s.state === filter.state) && matchesLabels(s.config.labels, filter.labelSelector));
  }
}
