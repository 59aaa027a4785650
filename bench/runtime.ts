/**
 * Runtime benchmark with the project's own CRI client: p50/p99 latency of
 * RunPodSandbox, CreateContainer+StartContainer, ExecSync,
 * StopPodSandbox+RemovePodSandbox, and ListContainers with 500 containers
 * present; berthd's memory idle and with 100 pods (PSS of berthd plus its
 * per-container monitors). With --containerd the same runs go to
 * containerd's CRI and ratios are printed against the targets.
 *
 *   npm run bench:runtime -- [--iterations 20] [--list-containers 500] [--pods 100]
 *        [--containerd unix:///path/containerd.sock --containerd-pid PID]
 *        [--registry HOST:PORT]   where both runtimes can pull bench/pause and bench/busybox
 *
 * berthd runs in a private dir with its own bridge network (benchbr0,
 * 10.199.0.0/16) and the fixture pause image as its sandbox image. For
 * containerd, give --registry a registry it pulls from over plain HTTP
 * (127.0.0.1:5000 with ../shared/conformance/containerd.sh).
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  ContainerConfig,
  CreateContainerRequest,
  ExecSyncRequest,
  ListContainersRequest,
  PodSandboxConfig,
  PullImageRequest,
  RemovePodSandboxRequest,
  RunPodSandboxRequest,
  StartContainerRequest,
  StopPodSandboxRequest,
} from '../src/generated/api.js';
import { startBerthd } from '../test/e2e/harness.js';
import { busyboxImage, pauseImage, pushImage, startRegistry, type RegistryEndpoint } from '../test/fixtures/index.js';
import { criClient, fmtMiB, fmtMs, percentile, pssOf, rpc, type CriClient } from './cri-client.js';

const { values } = parseArgs({
  options: {
    iterations: { type: 'string', default: '20' },
    'list-containers': { type: 'string', default: '500' },
    pods: { type: 'string', default: '100' },
    registry: { type: 'string' },
    containerd: { type: 'string' },
    'containerd-pid': { type: 'string' },
  },
});
const iterations = Number(values.iterations);
const listContainers = Number(values['list-containers']);
const memoryPods = Number(values.pods);

interface Result {
  runPod: number[];
  createStart: number[];
  exec: number[];
  stopRemovePod: number[];
  list: number[];
  pssIdle: number;
  pssPods: number;
}

let seq = 0;
/** Where pods' container logs go; removed when the benchmark ends. */
let logRoot = tmpdir();
function podConfig(): PodSandboxConfig {
  const name = `bench-${process.pid}-${++seq}`;
  return PodSandboxConfig.fromPartial({
    metadata: { name, namespace: 'bench', uid: `uid-${name}`, attempt: 0 },
    hostname: name,
    logDirectory: join(logRoot, name),
    linux: { cgroupParent: '', securityContext: { namespaceOptions: { network: 0, pid: 1, ipc: 0 } } },
  });
}

function containerConfig(image: string, name: string): ContainerConfig {
  return ContainerConfig.fromPartial({
    metadata: { name, attempt: 0 },
    image: { image },
    command: ['sleep', '3600'],
    logPath: `${name}.log`,
    linux: {},
  });
}

async function timed<T>(out: number[], fn: () => Promise<T>): Promise<T> {
  const started = performance.now();
  const value = await fn();
  out.push(performance.now() - started);
  return value;
}

/** PSS of the runtime's own processes: the daemon plus its per-container helpers. */
async function runtimePss(daemonPid: number, helper: RegExp): Promise<number> {
  let total = await pssOf(daemonPid);
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === daemonPid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (helper.test(cmdline.replaceAll('\0', ' '))) total += await pssOf(Number(entry)).catch(() => 0);
  }
  return total;
}

async function measure(client: CriClient, images: { pause: string; busybox: string }, pss: () => Promise<number>): Promise<Result> {
  const r: Result = { runPod: [], createStart: [], exec: [], stopRemovePod: [], list: [], pssIdle: 0, pssPods: 0 };
  for (const image of [images.pause, images.busybox]) await rpc(client.images, 'pullImage', PullImageRequest.fromPartial({ image: { image } }));
  r.pssIdle = await pss();

  for (let i = 0; i < iterations; i++) {
    const config = podConfig();
    const { podSandboxId } = await timed(r.runPod, () => rpc<{ podSandboxId: string }>(client.runtime, 'runPodSandbox', RunPodSandboxRequest.fromPartial({ config })));
    await timed(r.createStart, async () => {
      const { containerId } = await rpc<{ containerId: string }>(
        client.runtime,
        'createContainer',
        CreateContainerRequest.fromPartial({ podSandboxId, config: containerConfig(images.busybox, 'c'), sandboxConfig: config }),
      );
      await rpc(client.runtime, 'startContainer', StartContainerRequest.fromPartial({ containerId }));
      return containerId;
    }).then(async (containerId) => {
      for (let e = 0; e < 3; e++) {
        await timed(r.exec, () => rpc(client.runtime, 'execSync', ExecSyncRequest.fromPartial({ containerId, cmd: ['true'], timeout: 10n })));
      }
    });
    await timed(r.stopRemovePod, async () => {
      await rpc(client.runtime, 'stopPodSandbox', StopPodSandboxRequest.fromPartial({ podSandboxId }));
      await rpc(client.runtime, 'removePodSandbox', RemovePodSandboxRequest.fromPartial({ podSandboxId }));
    });
  }

  // Memory with many running pods, then ListContainers with many present.
  const pods: { podSandboxId: string; config: PodSandboxConfig }[] = [];
  try {
    for (let i = 0; i < memoryPods; i++) {
      const config = podConfig();
      const { podSandboxId } = await rpc<{ podSandboxId: string }>(client.runtime, 'runPodSandbox', RunPodSandboxRequest.fromPartial({ config }));
      pods.push({ podSandboxId, config });
      const { containerId } = await rpc<{ containerId: string }>(client.runtime, 'createContainer', CreateContainerRequest.fromPartial({ podSandboxId, config: containerConfig(images.busybox, 'c'), sandboxConfig: config }));
      await rpc(client.runtime, 'startContainer', StartContainerRequest.fromPartial({ containerId }));
    }
    r.pssPods = await pss();
    const perPod = Math.ceil(listContainers / Math.max(1, pods.length));
    let made = pods.length;
    for (let p = 0; made < listContainers && p < pods.length; p++) {
      for (let c = 1; c < perPod && made < listContainers; c++, made++) {
        await rpc(
          client.runtime,
          'createContainer',
          CreateContainerRequest.fromPartial({ ...pods[p], config: containerConfig(images.busybox, `idle-${c}`), sandboxConfig: pods[p]?.config }),
        );
      }
    }
    for (let i = 0; i < 50; i++) await timed(r.list, () => rpc(client.runtime, 'listContainers', ListContainersRequest.fromPartial({})));
  } finally {
    for (const { podSandboxId } of pods) {
      await rpc(client.runtime, 'stopPodSandbox', StopPodSandboxRequest.fromPartial({ podSandboxId })).catch(() => undefined);
      await rpc(client.runtime, 'removePodSandbox', RemovePodSandboxRequest.fromPartial({ podSandboxId })).catch(() => undefined);
    }
  }
  return r;
}

function line(name: string, berth: number[], other?: number[], target?: number): string {
  const p50 = percentile(berth, 50);
  let s = `${name.padEnd(34)} p50 ${fmtMs(p50).padStart(9)}  p99 ${fmtMs(percentile(berth, 99)).padStart(9)}`;
  if (other !== undefined) {
    const o50 = percentile(other, 50);
    s += `   containerd p50 ${fmtMs(o50).padStart(9)}  ratio ${(p50 / o50).toFixed(2)}${target === undefined ? '' : ` (target <= ${target})`}`;
  }
  return s;
}

async function main(): Promise<void> {
  logRoot = await mkdtemp(join(tmpdir(), 'berth-bench-logs-'));
  const own = values.registry === undefined ? await startRegistry() : undefined;
  const registry: RegistryEndpoint = own ?? { host: values.registry as string, url: `http://${values.registry as string}` };
  await pushImage(registry, 'bench/pause', 'latest', await pauseImage());
  await pushImage(registry, 'bench/busybox', 'latest', await busyboxImage());
  const images = { pause: `${registry.host}/bench/pause:latest`, busybox: `${registry.host}/bench/busybox:latest` };
  const configToml = `[plugins."cri.service"]\nsandbox_image = "${images.pause}"\n`;
  const berth = await startBerthd({ configToml, extraArgs: ['--log-level', 'warn'] });
  const bridge = `benchbr${process.pid % 1000}`;
  try {
    await writeFile(
      join(berth.confDir, '10-bench.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'bench',
        plugins: [
          { type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet: '10.199.0.0/16' }]], dataDir: join(berth.dir, 'cni') } },
          { type: 'portmap', capabilities: { portMappings: true } },
        ],
      }),
    );
    await new Promise((r) => setTimeout(r, 500));
    const client = criClient(berth.socket);
    const berthPid = berth.proc.pid as number;
    const b = await measure(client, images, () => runtimePss(berthPid, new RegExp(`conmon .*${berth.dir}`)));
    client.close();

    let c: Result | undefined;
    if (values.containerd !== undefined) {
      const cd = criClient(values.containerd);
      const pid = Number(values['containerd-pid'] ?? 0);
      const socket = values.containerd.replace(/^unix:\/\//, '');
      c = await measure(cd, images, async () => (pid > 0 ? runtimePss(pid, new RegExp(`containerd-shim.*-address ${socket}`)) : NaN));
      cd.close();
    }
    console.log(line('RunPodSandbox', b.runPod, c?.runPod, 0.7));
    console.log(line('CreateContainer+StartContainer', b.createStart, c?.createStart, 0.7));
    console.log(line('ExecSync', b.exec, c?.exec, 0.7));
    console.log(line('StopPodSandbox+RemovePodSandbox', b.stopRemovePod, c?.stopRemovePod));
    console.log(line(`ListContainers (${listContainers} present)`, b.list, c?.list, 0.5));
    console.log(`berth PSS idle ${fmtMiB(b.pssIdle)}, with ${memoryPods} pods ${fmtMiB(b.pssPods)}` + (c ? `   containerd idle ${fmtMiB(c.pssIdle)}, with ${memoryPods} pods ${fmtMiB(c.pssPods)}  ratio ${(b.pssPods / c.pssPods).toFixed(2)} (target <= 0.5)` : ''));
  } finally {
    await berth.dispose();
    try {
      execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
    } catch {
      // not created, or already gone
    }
    await own?.stop();
    await rm(logRoot, { recursive: true, force: true });
  }
}

await main();
