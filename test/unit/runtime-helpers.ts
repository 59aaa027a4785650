import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventExchange, type Envelope, type TaskExitEvent } from '../../src/core/events/index.js';
import { OciRuntime, runtimeConfigSchema, type RuntimeConfig } from '../../src/core/runtime/index.js';
import type { OciSpec } from '../../src/core/runtime/spec/index.js';
import { CONMON, log, ociFixture, processesMentioning, RUNC, type OciFixture } from './oci-helpers.js';

/**
 * A runtime test world: the OCI fixture's temp dir and busybox bundles, an
 * events exchange that records what is published, and OciRuntime instances
 * over one state dir (a second instance plays the restarted berthd).
 */
export interface RuntimeWorld {
  fx: OciFixture;
  stateDir: string;
  altRoot: string;
  events: EventExchange;
  seen: Envelope[];
  config(extra?: Partial<RuntimeConfig>): RuntimeConfig;
  open(config?: RuntimeConfig): Promise<OciRuntime>;
  /** A bundle running `args` (spec typed for the runtime). */
  bundle(id: string, args: string[], edit?: (spec: Record<string, any>) => void): Promise<{ bundle: string; spec: OciSpec; logPath: string }>;
  exits(id: string): TaskExitEvent[];
  waitExit(id: string, ms?: number): Promise<TaskExitEvent>;
  /** Deletes every container in every runc root, closes runtimes, removes cgroups and the temp dir. */
  close(): Promise<void>;
}

export async function runtimeWorld(): Promise<RuntimeWorld> {
  const fx = await ociFixture();
  const stateDir = join(fx.dir, 'runtime-state');
  const altRoot = join(fx.dir, 'alt-root');
  const events = new EventExchange(log);
  const seen: Envelope[] = [];
  events.subscribe({}, (e) => seen.push(e));
  const runtimes: OciRuntime[] = [];
  const exits = (id: string): TaskExitEvent[] =>
    seen.filter((e) => e.topic === '/tasks/exit' && (e.event as TaskExitEvent).id === id).map((e) => e.event as TaskExitEvent);
  const w: RuntimeWorld = {
    fx,
    stateDir,
    altRoot,
    events,
    seen,
    config(extra = {}) {
      return runtimeConfigSchema.parse({
        monitor_binary: CONMON,
        runtimes: {
          runc: { binary: RUNC },
          'runc-alt': { binary: 'runc', root: altRoot, options: { note: 'runc with its own root' } },
        },
        ...extra,
      });
    },
    async open(config) {
      const rt = await OciRuntime.open({ config: config ?? w.config(), stateDir, events, log, exitPollMs: 200 });
      runtimes.push(rt);
      return rt;
    },
    async bundle(id, args, edit) {
      const b = await fx.bundle(id, args, edit);
      return { ...b, spec: b.spec as unknown as OciSpec };
    },
    exits,
    async waitExit(id, ms = 15_000) {
      const until = Date.now() + ms;
      for (;;) {
        const e = exits(id)[0];
        if (e) return e;
        if (Date.now() > until) throw new Error(`no /tasks/exit for ${id} within ${ms} ms`);
        await sleep(10);
      }
    },
    async close() {
      for (const rt of runtimes) await rt.close();
      for (const root of [join(stateDir, 'runc'), altRoot, join(stateDir, 'based')]) {
        let list: { id: string }[] = [];
        try {
          list = (JSON.parse(execFileSync(RUNC, ['--root', root, 'list', '--format', 'json']).toString()) as { id: string }[] | null) ?? [];
        } catch {
          // No such root.
        }
        for (const c of list) execFileSync(RUNC, ['--root', root, 'delete', '--force', c.id], { stdio: 'ignore' });
      }
      // conmon leaves once its container is gone; anything still there is a leak the test reports.
      const until = Date.now() + 3000;
      while ((await processesMentioning(fx.dir)).length > 0 && Date.now() < until) await sleep(20);
      const left = await processesMentioning(fx.dir);
      for (const p of left) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // Gone.
        }
      }
      await fx.close();
      if (left.length > 0) throw new Error(`leaked processes: ${left.map((p) => p.cmdline).join('; ')}`);
    },
  };
  return w;
}
