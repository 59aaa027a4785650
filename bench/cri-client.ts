import { credentials, type Client, type ServiceError } from '@grpc/grpc-js';
import { readFile } from 'node:fs/promises';
import { ImageServiceClient, RuntimeServiceClient } from '../src/generated/api.js';

/** A CRI client of the project's own, for benchmarks against berthd or containerd. */
export interface CriClient {
  runtime: RuntimeServiceClient;
  images: ImageServiceClient;
  close(): void;
}

export function criClient(endpoint: string): CriClient {
  const target = endpoint.startsWith('unix://') ? endpoint : `unix://${endpoint}`;
  const runtime = new RuntimeServiceClient(target, credentials.createInsecure());
  const images = new ImageServiceClient(target, credentials.createInsecure());
  return {
    runtime,
    images,
    close() {
      runtime.close();
      images.close();
    },
  };
}

export function rpc<Res>(client: Client, method: string, request: object, timeoutMs = 600_000): Promise<Res> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (req: object, opts: object, cb: (err: ServiceError | null, res: Res) => void) => void>)[method];
    if (fn === undefined) throw new Error(`no method ${method}`);
    fn.call(client, request, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** Resident memory of a process from /proc: current RSS and its peak (VmHWM), in bytes. */
export async function memoryOf(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** Proportional set size of a process and its descendants (bytes), from smaps_rollup. */
export async function pssOf(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
  return Number(/^Pss:\s+(\d+) kB/m.exec(text)?.[1] ?? 0) * 1024;
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

export function fmtMs(ms: number): string {
  return `${ms.toFixed(ms < 10 ? 2 : 0)} ms`;
}

export function fmtMiB(bytes: number): string {
  return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
}
