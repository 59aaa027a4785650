/**
 * List responses assembled from bytes encoded ahead of time.
 *
 * A protobuf message with a repeated field is the concatenation of its
 * entries, and a response holding one entry encodes to exactly that entry
 * (tag, length, message). So each record's entry is encoded once, kept
 * against the record object (records are replaced, never changed, on every
 * update: a new record object is a new entry), and a list of hundreds is one
 * Buffer.concat instead of building and encoding hundreds of messages per
 * call. The method's responseSerialize passes such bytes through.
 */
import type { ServiceDefinition } from './rpc.js';

/** A message type as ts-proto emits it: enough to encode one. */
export interface Encoder<M> {
  encode(message: M): { finish(): Uint8Array };
}

/**
 * Encodes list entries of records of type R, each once per record object.
 * `entry(record)` is the response message holding just that record.
 */
export class EntryCache<R extends object, M> {
  private readonly entries = new WeakMap<R, Uint8Array>();
  /** The last list encoded: asked again for the same records (the common unfiltered relist), it is answered as is. */
  private last: { records: readonly R[]; bytes: Buffer } | undefined;

  constructor(
    private readonly response: Encoder<M>,
    private readonly entry: (record: R) => M,
  ) {}

  /** The encoded response listing `records`, in their order. Callers must not change the bytes. */
  encode(records: readonly R[]): Buffer {
    if (this.last !== undefined && sameItems(this.last.records, records)) return this.last.bytes;
    const parts: Uint8Array[] = new Array(records.length);
    let length = 0;
    for (let i = 0; i < records.length; i++) {
      const record = records[i]!;
      let bytes = this.entries.get(record);
      if (bytes === undefined) {
        bytes = this.response.encode(this.entry(record)).finish();
        this.entries.set(record, bytes);
      }
      parts[i] = bytes;
      length += bytes.length;
    }
    const bytes = Buffer.concat(parts, length);
    this.last = { records, bytes };
    return bytes;
  }
}

function sameItems<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The service definition with the named methods' responseSerialize also
 * taking a response already encoded (a Buffer), which it passes on as is.
 */
export function acceptingEncodedResponses<D extends ServiceDefinition>(definition: D, methods: ReadonlyArray<keyof D & string>): D {
  const out: ServiceDefinition = { ...definition };
  for (const method of methods) {
    const spec = definition[method];
    if (spec === undefined) throw new Error(`acceptingEncodedResponses: ${method} is not a method of this service`);
    const serialize = spec.responseSerialize;
    out[method] = { ...spec, responseSerialize: (value: unknown) => (Buffer.isBuffer(value) ? value : serialize(value)) };
  }
  return out as D;
}
