// Helpers for the images and gc tests: the real plugin stack (content.local, metadata.sqlite,
// snapshotter.overlayfs, diff.tar, gc.scheduler, images.store) brought up by a PluginRegistry in a private
// temp dir, a forwarding proxy in front of a registry that counts and can hold back blob downloads, and a
// way to look at an image's root filesystem through a mounted view.

import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { contentLocalRegistration, type LocalContentStore } from '../../src/core/content/index.js';
import { tarDiffRegistration } from '../../src/core/diff/index.js';
import { gcSchedulerRegistration, type GarbageCollector } from '../../src/core/gc/index.js';
import { imagesStoreRegistration, type ImageStore } from '../../src/core/images/index.js';
import { createLogger } from '../../src/core/log.js';
import { metadataSqliteRegistration, type SqliteMetadata } from '../../src/core/metadata/index.js';
import { PluginRegistry, PluginType, type Registration } from '../../src/core/plugin/index.js';
import { mount, overlayfsSnapshotterRegistration, unmountAll, type OverlaySnapshotter } from '../../src/core/snapshotter/index.js';
import { treeOf, type Tree } from '../fixtures/index.js';

export const REGISTRATIONS = [
  contentLocalRegistration,
  metadataSqliteRegistration,
  overlayfsSnapshotterRegistration,
  tarDiffRegistration,
  gcSchedulerRegistration,
  imagesStoreRegistration,
] as Registration[];

export interface StackOptions {
  /** Reuse a dir (root/ and state/ inside), e.g. after a crash; default a fresh temp dir. */
  dir?: string;
  images?: Record<string, unknown>;
  gc?: Record<string, unknown>;
  logLevel?: 'silent' | 'debug' | 'info';
}

export interface Stack {
  dir: string;
  root: string;
  state: string;
  registry: PluginRegistry;
  images: ImageStore;
  gc: GarbageCollector;
  content: LocalContentStore;
  metadata: SqliteMetadata;
  snapshotter: OverlaySnapshotter;
  /** Closes the plugins (the dir stays). */
  close(): Promise<void>;
  /** Closes the plugins and removes the dir. */
  dispose(): Promise<void>;
}

/** Brings the plugin stack up in `<dir>/root` and `<dir>/state`. */
export async function openStack(o: StackOptions = {}): Promise<Stack> {
  const dir = o.dir ?? (await mkdtemp(join(tmpdir(), 'berth-images-')));
  const root = join(dir, 'root');
  const state = join(dir, 'state');
  await mkdir(root, { recursive: true });
  await mkdir(state, { recursive: true });
  const registry = new PluginRegistry({
    registrations: REGISTRATIONS,
    root,
    state,
    log: createLogger(o.logLevel ?? 'silent'),
    required: REGISTRATIONS.map((r) => `${r.type}.${r.id}`),
    pluginConfig: {
      'metadata.sqlite': { synchronous: 'NORMAL' },
      'gc.scheduler': { interval_seconds: 0, ...o.gc },
      'images.store': { ...o.images },
    },
  });
  await registry.init();
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await registry.close();
  };
  return {
    dir,
    root,
    state,
    registry,
    images: registry.get<ImageStore>(PluginType.Images),
    gc: registry.get<GarbageCollector>(PluginType.GC),
    content: registry.get<LocalContentStore>(PluginType.Content),
    metadata: registry.get<SqliteMetadata>(PluginType.Metadata),
    snapshotter: registry.get<OverlaySnapshotter>(PluginType.Snapshotter),
    close,
    dispose: async () => {
      await close();
      await unmountAll(join(dir, 'mnt'), { detach: true }).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

let views = 0;

/** The tree of the committed snapshot `chainId`, read through a mounted read-only view. */
export async function snapshotTree(stack: Stack, chainId: string): Promise<Tree> {
  const key = `test-view-${process.pid}-${views++}`;
  const target = join(stack.dir, 'mnt', key);
  await mkdir(target, { recursive: true });
  const mounts = await stack.snapshotter.view(key, chainId);
  try {
    await mount(mounts, target);
    try {
      return await treeOf(target);
    } finally {
      await unmountAll(target, { detach: true });
    }
  } finally {
    await stack.snapshotter.remove(key);
    await rm(target, { recursive: true, force: true });
  }
}

/** Blob digests in the content store. */
export async function blobDigests(stack: Stack): Promise<Set<string>> {
  const out = new Set<string>();
  for await (const info of stack.content.walk()) out.add(info.digest);
  return out;
}

/** Keys of every snapshot, with their kind. */
export async function snapshotKeys(stack: Pick<Stack, 'snapshotter'>): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const info of stack.snapshotter.walk()) out.set(info.key, info.kind);
  return out;
}

/** Entries of the content store's ingest dir (downloads in progress or left behind). */
export async function ingests(stack: Pick<Stack, 'root'>): Promise<string[]> {
  return readdir(join(stack.root, 'content.local', 'ingest')).catch(() => []);
}

export interface BlobGate {
  /** Resolves once the proxy has started sending this blob and holds the rest. */
  reached: Promise<void>;
  /** Lets the held response go on. */
  release(): void;
}

export interface CountingProxy {
  host: string;
  /** GETs of blobs (full or ranged) by digest. */
  blobGets: Map<string, number>;
  /** Every request, "METHOD path". */
  requests: string[];
  /**
   * Holds the response for `digest` after `afterBytes` body bytes (default
   * 0) until released.
   */
  gate(digest: string, afterBytes?: number): BlobGate;
  /** Bytes per second for every blob body from now on (0: unlimited). */
  throttle(bytesPerSecond: number): void;
  stop(): Promise<void>;
}

/** An HTTP forwarder on 127.0.0.1 to a plain-HTTP registry at `upstream` (host:port). */
export async function startCountingProxy(upstream: string): Promise<CountingProxy> {
  const blobGets = new Map<string, number>();
  const requests: string[] = [];
  const gates = new Map<string, { afterBytes: number; reached: () => void; released: Promise<void> }>();
  let rate = 0;
  const sockets = new Set<net.Socket>();
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    requests.push(`${req.method} ${url}`);
    const blob = req.method === 'GET' ? /\/blobs\/(sha256:[a-f0-9]{64})/.exec(url)?.[1] : undefined;
    if (blob !== undefined) blobGets.set(blob, (blobGets.get(blob) ?? 0) + 1);
    const headers = { ...req.headers, host: upstream };
    const up = http.request({ host: upstream.split(':')[0], port: Number(upstream.split(':')[1]), method: req.method, path: url, headers, agent }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      const gate = blob === undefined ? undefined : gates.get(blob);
      if (blob === undefined || (gate === undefined && rate === 0)) {
        upRes.pipe(res);
        return;
      }
      void (async () => {
        let sent = 0;
        try {
          for await (const chunk of upRes as AsyncIterable<Buffer>) {
            let rest = chunk;
            if (gate && sent < gate.afterBytes + 1 && sent + rest.length > gate.afterBytes) {
              const head = rest.subarray(0, gate.afterBytes - sent);
              if (head.length > 0) res.write(head);
              sent += head.length;
              rest = rest.subarray(head.length);
              gate.reached();
              await gate.released;
            }
            if (rate > 0) await new Promise((r) => setTimeout(r, (rest.length / rate) * 1000));
            if (res.destroyed) return;
            res.write(rest);
            sent += rest.length;
          }
          res.end();
        } catch {
          res.destroy();
        }
      })();
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const host = await new Promise<string>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      resolve(`127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`);
    });
  });
  return {
    host,
    blobGets,
    requests,
    gate(digest, afterBytes = 0) {
      let reached: () => void = () => undefined;
      let release: () => void = () => undefined;
      const reachedP = new Promise<void>((r) => (reached = r));
      const released = new Promise<void>((r) => (release = r));
      gates.set(digest, { afterBytes, reached, released });
      return {
        reached: reachedP,
        release: () => {
          gates.delete(digest);
          release();
        },
      };
    },
    throttle(bytesPerSecond) {
      rate = bytesPerSecond;
    },
    async stop() {
      for (const s of sockets) s.destroy();
      agent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
