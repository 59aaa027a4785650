import { readFile } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import { join } from 'node:path';
import { BerthError, errorMessage, isErrnoCode } from '../core/errors.js';
import { writeFileAtomic } from '../core/fs-atomic.js';

/** What UpdateRuntimeConfig gives us, kept across restarts. */
export interface StoredRuntimeConfig {
  /** Pod CIDRs, one per IP family; used as the CNI `ipRanges` capability. */
  podCidrs: string[];
}

/** Parses kubelet's pod CIDR field: one CIDR, or a comma-separated dual-stack pair. */
export function parsePodCidrs(value: string): string[] {
  if (value.trim() === '') return [];
  const cidrs = value.split(',').map((s) => s.trim());
  for (const cidr of cidrs) {
    const [ip, bits, extra] = cidr.split('/');
    const n = Number(bits);
    const max = ip !== undefined && isIPv4(ip) ? 32 : ip !== undefined && isIPv6(ip) ? 128 : -1;
    if (extra !== undefined || max < 0 || bits === undefined || !/^\d+$/.test(bits) || n > max) {
      throw new BerthError('invalid-argument', 'ERR_INVALID_POD_CIDR', `invalid pod CIDR ${JSON.stringify(cidr)} in ${JSON.stringify(value)}`);
    }
  }
  return cidrs;
}

/** The runtime config persisted as one small JSON file, replaced atomically. */
export class RuntimeConfigStore {
  private readonly file: string;
  private current: StoredRuntimeConfig = { podCidrs: [] };

  constructor(dir: string) {
    this.file = join(dir, 'runtime-config.json');
  }

  async load(): Promise<void> {
    try {
      const parsed = JSON.parse(await readFile(this.file, 'utf8')) as Partial<StoredRuntimeConfig>;
      this.current = { podCidrs: Array.isArray(parsed.podCidrs) ? parsed.podCidrs.filter((c) => typeof c === 'string') : [] };
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) return;
      throw new BerthError('internal', 'ERR_RUNTIME_CONFIG_READ', `cannot read ${this.file}: ${errorMessage(err)}`, { context: { file: this.file }, cause: err });
    }
  }

  get(): StoredRuntimeConfig {
    return this.current;
  }

  async setPodCidrs(podCidrs: string[]): Promise<void> {
    const next = { ...this.current, podCidrs };
    await writeFileAtomic(this.file, JSON.stringify(next));
    this.current = next;
  }
}
