/**
 * Cold pull benchmark: a ~200 MB image of several layers from a registry on
 * loopback, pulled and unpacked by berthd (and by containerd's CRI when a
 * socket is given). Every run pulls an image of its own that the runtime has
 * never seen, so each pull is cold whatever the runtime's GC does. Prints p50
 * time and peak RSS, and the ratio berth/containerd.
 *
 *   npm run bench:pull -- [--runs 3] [--mib 200] [--layers 4]
 *        [--registry HOST:PORT]   push to and pull from this registry instead of a private one
 *        [--containerd unix:///path/containerd.sock --containerd-pid PID]
 *
 * containerd must reach the registry over plain HTTP (a hosts.toml for it, as
 * ../shared/conformance/containerd.sh writes for 127.0.0.1:5000).
 */
import { parseArgs } from 'node:util';
import type { Image } from '../test/fixtures/index.js';
import { largeImage, pushImage, startRegistry, type RegistryEndpoint } from '../test/fixtures/index.js';
import { startBerthd } from '../test/e2e/harness.js';
import type { CriClient } from './cri-client.js';
import { criClient, fmtMiB, fmtMs, memoryOf, percentile, rpc } from './cri-client.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    mib: { type: 'string', default: '200' },
    layers: { type: 'string', default: '4' },
    registry: { type: 'string' },
    containerd: { type: 'string' },
    'containerd-pid': { type: 'string' },
  },
});
const runs = Number(values.runs);

const spec = (image: string) => ({ image, annotations: {}, userSpecifiedImage: '', runtimeHandler: '', imageRef: '' });

interface Target {
  name: string;
  client: CriClient;
  pid: number | undefined;
  times: number[];
  peak: number;
}

/**
 * One cold pull: an image no runtime has seen (its own seed, so its own
 * digests) is pushed, pulled and removed. Removing and re-pulling one image
 * is not cold for a runtime whose GC runs lazily (containerd's does).
 */
async function coldPull(target: Target, registry: RegistryEndpoint, run: number): Promise<void> {
  const image: Image = await largeImage({ totalBytes: Number(values.mib) << 20, layers: Number(values.layers), seed: `bench-${process.pid}-${target.name}-${run}`, busybox: false });
  const repo = `bench/large-${target.name}-${process.pid}-${run}`;
  await pushImage(registry, repo, 'latest', image);
  const ref = `${registry.host}/${repo}:latest`;
  const pid = target.pid;
  const sampler = pid === undefined ? undefined : setInterval(() => void memoryOf(pid).then((m) => (target.peak = Math.max(target.peak, m.rss)), () => {}), 20);
  const started = performance.now();
  await rpc(target.client.images, 'pullImage', { image: spec(ref) });
  target.times.push(performance.now() - started);
  clearInterval(sampler);
  if (pid !== undefined) target.peak = Math.max(target.peak, (await memoryOf(pid)).peak);
  await rpc(target.client.images, 'removeImage', { image: spec(ref) });
}

function report(t: Target): string {
  const mem = t.pid === undefined ? '' : `  peak RSS ${fmtMiB(t.peak)}`;
  return `${t.name.padEnd(11)} cold pull p50 ${fmtMs(percentile(t.times, 50))}  (runs: ${t.times.map(fmtMs).join(', ')})${mem}`;
}

async function main(): Promise<void> {
  const own = values.registry === undefined ? await startRegistry() : undefined;
  const registry: RegistryEndpoint = own ?? { host: values.registry as string, url: `http://${values.registry as string}` };
  const berth = await startBerthd();
  const targets: Target[] = [{ name: 'berth', client: criClient(berth.socket), pid: berth.proc.pid, times: [], peak: 0 }];
  if (values.containerd !== undefined) {
    const pid = values['containerd-pid'] === undefined ? undefined : Number(values['containerd-pid']);
    targets.push({ name: 'containerd', client: criClient(values.containerd), pid, times: [], peak: 0 });
  }
  try {
    process.stderr.write(`each run: a fresh ${values.mib} MiB image of ${values.layers} layers, per runtime\n`);
    // Runtimes take turns, so both see the same machine load.
    for (let run = 0; run < runs; run++) {
      for (const target of targets) await coldPull(target, registry, run);
    }
    for (const target of targets) console.log(report(target));
    const [b, c] = targets;
    if (b !== undefined && c !== undefined) {
      console.log(`ratio berth/containerd: ${(percentile(b.times, 50) / percentile(c.times, 50)).toFixed(2)} (target <= 0.8)`);
    }
  } finally {
    for (const target of targets) target.client.close();
    await berth.dispose();
    await own?.stop();
  }
}

await main();
