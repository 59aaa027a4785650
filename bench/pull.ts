/**
 * Cold pull benchmark: a ~200 MB image of several layers from a registry on
 * loopback, pulled and unpacked by berthd (and by containerd's CRI when a
 * socket is given), with the image removed and its content collected between
 * runs so every pull is cold. Prints p50 time and berthd's peak RSS, and the
 * ratio berth/containerd.
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

async function coldPulls(client: CriClient, ref: string, pid: number | undefined): Promise<{ times: number[]; peak: number }> {
  const times: number[] = [];
  let peak = 0;
  for (let i = 0; i < runs; i++) {
    await rpc(client.images, 'removeImage', { image: spec(ref) });
    const sampler = pid === undefined ? undefined : setInterval(() => void memoryOf(pid).then((m) => (peak = Math.max(peak, m.rss)), () => {}), 20);
    const started = performance.now();
    await rpc(client.images, 'pullImage', { image: spec(ref) });
    times.push(performance.now() - started);
    clearInterval(sampler);
    if (pid !== undefined) peak = Math.max(peak, (await memoryOf(pid)).peak);
  }
  await rpc(client.images, 'removeImage', { image: spec(ref) });
  return { times, peak };
}

async function main(): Promise<void> {
  const own = values.registry === undefined ? await startRegistry() : undefined;
  const registry: RegistryEndpoint = own ?? { host: values.registry as string, url: `http://${values.registry as string}` };
  const berth = await startBerthd();
  try {
    process.stderr.write(`building a ${values.mib} MiB image of ${values.layers} layers...\n`);
    const image: Image = await largeImage({ totalBytes: Number(values.mib) << 20, layers: Number(values.layers) });
    await pushImage(registry, 'bench/large', 'latest', image);
    const ref = `${registry.host}/bench/large:latest`;
    const bytes = image.layers.reduce((n, l) => n + l.size, 0);
    process.stderr.write(`image ${ref}: ${fmtMiB(bytes)} compressed\n`);

    const client = criClient(berth.socket);
    const berthRes = await coldPulls(client, ref, berth.proc.pid);
    client.close();
    const p50 = percentile(berthRes.times, 50);
    console.log(`berth       cold pull p50 ${fmtMs(p50)}  (runs: ${berthRes.times.map(fmtMs).join(', ')})  peak RSS ${fmtMiB(berthRes.peak)}`);

    if (values.containerd !== undefined) {
      const cd = criClient(values.containerd);
      const pid = values['containerd-pid'] === undefined ? undefined : Number(values['containerd-pid']);
      const cdRes = await coldPulls(cd, ref, pid);
      cd.close();
      const cdP50 = percentile(cdRes.times, 50);
      console.log(`containerd  cold pull p50 ${fmtMs(cdP50)}  (runs: ${cdRes.times.map(fmtMs).join(', ')})${pid === undefined ? '' : `  peak RSS ${fmtMiB(cdRes.peak)}`}`);
      console.log(`ratio berth/containerd: ${(p50 / cdP50).toFixed(2)} (target <= 0.8)`);
    }
  } finally {
    await berth.dispose();
    await own?.stop();
  }
}

await main();
