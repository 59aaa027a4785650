import { credentials, type Client, type ServiceError } from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { unmountAllUnder } from '../../src/core/mountinfo.js';
import { ImageServiceClient, RuntimeServiceClient } from '../../src/generated/api.js';

/** dist/src/cmd/berthd.js, from dist/test/e2e/harness.js. */
export const BERTHD = resolve(import.meta.dirname, '../../src/cmd/berthd.js');

export interface BerthdOptions {
  /** TOML written to <dir>/config.toml and passed with --config. */
  configToml?: string;
  extraArgs?: string[];
  /** Reuse a dir (and so its root/state) from an earlier run. */
  dir?: string;
  /** Wait for the socket to answer (default true). */
  waitReady?: boolean;
}

export interface Berthd {
  readonly dir: string;
  readonly socket: string;
  readonly confDir: string;
  readonly root: string;
  readonly state: string;
  readonly proc: ChildProcess;
  readonly runtime: RuntimeServiceClient;
  readonly images: ImageServiceClient;
  /** Everything berthd wrote to stdout and stderr so far. */
  output(): string;
  /** Sends a signal and waits for exit; returns the exit code (or signal name). */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
  /** stop() then removes the dir. */
  dispose(): Promise<void>;
}

export interface ExitResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Runs berthd to completion (for CLI tests); kills it after timeoutMs. */
export async function runBerthd(args: string[], timeoutMs = 20_000): Promise<ExitResult> {
  const proc = spawn(process.execPath, [BERTHD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  const [code, signal] = (await once(proc, 'close')) as [number | null, string | null];
  clearTimeout(timer);
  return { code, signal, stdout, stderr };
}

/** Calls a unary method of a grpc-js client as a promise. */
export function call<Req, Res>(client: Client, method: string, request: Req, timeoutMs = 30_000): Promise<Res> {
  return new Promise((resolvePromise, reject) => {
    const fn = (client as unknown as Record<string, (req: Req, opts: object, cb: (err: ServiceError | null, res: Res) => void) => void>)[method];
    if (fn === undefined) throw new Error(`no method ${method}`);
    fn.call(client, request, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolvePromise(res)));
  });
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs: number, intervalMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Starts a real berthd in a private dir with its own socket, root, state and CNI conf dir. */
export async function startBerthd(options: BerthdOptions = {}): Promise<Berthd> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'berth-e2e-')));
  const socket = join(dir, 'berth.sock');
  const confDir = join(dir, 'net.d');
  const root = join(dir, 'root');
  const state = join(dir, 'state');
  await mkdir(confDir, { recursive: true });
  const args = ['--address', socket, '--root', root, '--state', state, '--cni-conf-dir', confDir, '--log-level', 'debug'];
  if (options.configToml !== undefined) {
    const file = join(dir, 'config.toml');
    await writeFile(file, options.configToml);
    args.push('--config', file);
  }
  args.push(...(options.extraArgs ?? []));
  const proc = spawn(process.execPath, [BERTHD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = once(proc, 'exit');

  const target = `unix://${socket}`;
  const runtime = new RuntimeServiceClient(target, credentials.createInsecure());
  const images = new ImageServiceClient(target, credentials.createInsecure());

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | string> => {
    runtime.close();
    images.close();
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    const [code, sig] = (await exited) as [number | null, string | null];
    return code ?? sig ?? 'unknown';
  };
  const handle: Berthd = {
    dir,
    socket,
    confDir,
    root,
    state,
    proc,
    runtime,
    images,
    output: () => output,
    stop,
    async dispose() {
      await stop();
      // Never let rm walk into a mount (a container rootfs, a bind of a host dir): unmount first.
      await unmountAllUnder(dir);
      await rm(dir, { recursive: true, force: true });
    },
  };
  if (options.waitReady ?? true) {
    try {
      await Promise.race([
        waitFor('berthd to answer Version', () => call(runtime, 'version', {}, 1000), 20_000, 50),
        exited.then(() => {
          throw new Error(`berthd exited early:\n${output}`);
        }),
      ]);
    } catch (err) {
      // A dir the caller handed in (a restart over earlier state) stays theirs to dispose of.
      if (options.dir === undefined) await handle.dispose();
      else await stop();
      throw err;
    }
  }
  return handle;
}

/** A minimal valid bridge conflist (never invoked in these tests). */
export function bridgeConflist(name = 'berth-e2e'): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name,
    plugins: [
      { type: 'bridge', bridge: 'berthe2e0', isGateway: true, ipam: { type: 'host-local', ranges: [[{ subnet: '10.251.0.0/24' }]] } },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  });
}
