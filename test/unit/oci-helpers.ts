import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, rmdir, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { isBerthError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/log.js';
import { ConmonMonitor, type RuntimeHandler } from '../../src/core/runtime/oci/index.js';

export const RUNC = '/usr/sbin/runc';
export const CONMON = '/usr/bin/conmon';
export const log = createLogger('silent');

let baseSpec: Record<string, unknown> | undefined;

/** `runc spec`'s default config (made once in a temp dir), as an object to edit. */
export async function defaultSpec(): Promise<Record<string, unknown>> {
  if (!baseSpec) {
    const dir = await mkdtemp(join(tmpdir(), 'oci-spec-'));
    try {
      execFileSync(RUNC, ['spec'], { cwd: dir });
      baseSpec = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return structuredClone(baseSpec);
}

/** A test world: temp dir with runc root, monitor state, and a cgroup parent removed at the end. */
export interface OciFixture {
  dir: string;
  runtime: RuntimeHandler;
  monitor: ConmonMonitor;
  cgroupParent: string;
  ids: Set<string>;
  /** A bundle with a busybox rootfs and a spec running `args` (not yet written: createContainer does). */
  bundle(id: string, args: string[], edit?: (spec: Record<string, any>) => void): Promise<{ bundle: string; spec: object; logPath: string }>;
  close(): Promise<void>;
}

export async function ociFixture(opts: { exitPollMs?: number } = {}): Promise<OciFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'oci-test-'));
  const runtime: RuntimeHandler = { binary: RUNC, root: join(dir, 'runc-root'), logPath: join(dir, 'runc.log') };
  const monitor = new ConmonMonitor({ conmonPath: CONMON, stateDir: join(dir, 'state'), log, exitPollMs: opts.exitPollMs ?? 1000 });
  await monitor.init();
  const cgroupParent = `/berth-test-${randomBytes(4).toString('hex')}`;
  const ids = new Set<string>();
  const fx: OciFixture = {
    dir,
    runtime,
    monitor,
    cgroupParent,
    ids,
    async bundle(id, args, edit) {
      ids.add(id);
      const bundle = await mkdtemp(join(dir, `bundle-${id}-`));
      const rootfs = join(bundle, 'rootfs');
      await mkdir(join(rootfs, 'bin'), { recursive: true });
      for (const d of ['proc', 'dev', 'sys', 'tmp']) await mkdir(join(rootfs, d), { recursive: true });
      await copyFile('/bin/busybox', join(rootfs, 'bin', 'busybox'));
      for (const name of ['sh', 'echo', 'sleep', 'cat', 'dd', 'tail', 'head', 'grep', 'true', 'yes', 'stty']) {
        await symlink('busybox', join(rootfs, 'bin', name));
      }
      const spec: Record<string, any> = await defaultSpec();
      spec.process.terminal = false;
      spec.process.args = args;
      spec.hostname = id.slice(0, 32);
      spec.linux.cgroupsPath = `${cgroupParent}/${id}`;
      edit?.(spec);
      return { bundle, spec, logPath: join(dir, 'logs', id, '0.log') };
    },
    async close() {
      for (const id of ids) {
        try {
          await monitor.cleanup(id);
        } catch {
          // Fall through to the forced removal below.
        }
        try {
          execFileSync(RUNC, ['--root', runtime.root, 'delete', '--force', id], { stdio: 'ignore' });
        } catch {
          // Not there.
        }
      }
      await removeCgroupParent(cgroupParent);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return fx;
}

/** Removes `/sys/fs/cgroup/<controller><parent>` (and any leftover children) in every hierarchy. */
export async function removeCgroupParent(parent: string): Promise<void> {
  for (const ctrl of await readdir('/sys/fs/cgroup')) {
    const path = join('/sys/fs/cgroup', ctrl, parent);
    let children: string[];
    try {
      children = (await readdir(path, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch {
      continue;
    }
    for (const c of children) await rmdir(join(path, c)).catch(() => undefined);
    await rmdir(path).catch(() => undefined);
  }
}

/** Live processes whose command line mentions `text` (e.g. a fixture dir): leak checks. */
export async function processesMentioning(text: string): Promise<{ pid: number; cmdline: string }[]> {
  const out: { pid: number; cmdline: string }[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmdline = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0').join(' ');
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      if (cmdline.includes(text)) out.push({ pid: Number(name), cmdline });
    } catch {
      // Exited meanwhile.
    }
  }
  return out;
}

/** The BerthError code of `err`, or its text: for asserting on rejections. */
export function code(err: unknown): string {
  return isBerthError(err) ? err.code : String(err);
}

/** Polls `fn` every 20 ms until it gives something other than undefined/false; fails after `ms`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Parses a CRI log file into records. */
export function parseCriLog(text: string): { time: string; stream: string; tag: string; line: string }[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const m = /^(\S+) (stdout|stderr) ([FP]) ([^\n]*)$/.exec(l);
      if (!m) throw new Error(`bad CRI log line: ${JSON.stringify(l)}`);
      return { time: m[1]!, stream: m[2]!, tag: m[3]!, line: m[4]! };
    });
}

export const RFC3339_NANO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d)$/;
