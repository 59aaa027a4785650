/**
 * Pod sandbox networking over CNI: ADD every attachment (the loopback, then
 * the conf-dir networks as eth0, eth1...) into the pod's network namespace
 * with the Kubernetes CNI_ARGS and capability args containerd passes, and
 * give back a serialisable record of what was added. The caller persists the
 * record with the sandbox: CHECK and DEL run from it, with the same network
 * configs, CNI_ARGS, capability args and cached ADD results, as the CNI spec
 * asks (the configuration should not change between ADD and DEL; portmap,
 * for one, finds its rules to delete only from the port mappings).
 *
 * Operations on one pod run one at a time (the spec forbids parallel
 * operations for one container); different pods run in parallel.
 */
import { isIP } from 'node:net';
import { BerthError, errorMessage, type ErrorContext } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { parseNetworkConfig, type CniNetwork } from './conf-loader.js';
import {
  addNetworkList,
  checkNetworkList,
  delNetworkList,
  type CniExecOptions,
  type CniResult,
  type CniRuntimeConf,
} from './invoke.js';
import { isNetnsPinned } from './netns.js';
import { IFNAME_PREFIX, type CniAttachment } from './network.js';

/** A CRI PortMapping. `protocol` is the CRI enum (0 TCP, 1 UDP, 2 SCTP) or its name; default TCP. */
export interface PodPortMapping {
  containerPort: number;
  /** 0 or less: no host port, nothing to map. */
  hostPort: number;
  protocol?: number | string;
  /** Empty or missing: every host address. */
  hostIp?: string;
}

/** The `bandwidth` capability (bits per second; bursts in bits). */
export interface PodBandwidth {
  ingressRate?: number;
  ingressBurst?: number;
  egressRate?: number;
  egressBurst?: number;
}

/** The `dns` capability, from the CRI DNSConfig. */
export interface PodDns {
  servers?: readonly string[];
  searches?: readonly string[];
  options?: readonly string[];
}

export interface PodNetworkParams {
  /** The sandbox id: CNI_CONTAINERID and K8S_POD_INFRA_CONTAINER_ID. */
  podId: string;
  namespace: string;
  name: string;
  uid: string;
  netnsPath: string;
  portMappings?: readonly PodPortMapping[];
  bandwidth?: PodBandwidth;
  dns?: PodDns;
  /** Pod CIDRs from UpdateRuntimeConfig (one per family), given to IPAM as `ipRanges`. */
  podCidrs?: readonly string[];
}

/** One attachment as added: enough to CHECK and DEL it later. */
export interface PodAttachmentRecord {
  network: string;
  ifName: string;
  /** The network list that was run, as JSON (a `.conf` becomes its one-plugin list). */
  config: string;
  /** The ADD result (the `prevResult` of CHECK and DEL). */
  result: CniResult;
}

/** What `setup` added, as plain JSON; persist it with the sandbox. */
export interface PodNetworkRecord {
  podId: string;
  netnsPath: string;
  args: Record<string, string>;
  capabilityArgs: Record<string, unknown>;
  /** In the order they were added (loopback first). */
  attachments: PodAttachmentRecord[];
}

export interface PodNetworkSetup {
  record: PodNetworkRecord;
  /** Pod IPs of eth0 without prefix length: primary first (IPv4 before IPv6), additional after. */
  ips: string[];
}

/** What PodNetwork needs of the CNI plugin; CniNetworkManager provides it. */
export interface PodNetworkSource {
  attachments(): readonly CniAttachment[];
  execOptions(extra?: Omit<CniExecOptions, 'binDirs'>): CniExecOptions;
}

export interface PodNetworkOptions {
  log?: Logger;
}

export interface PodNetworkCallOptions {
  /** Aborts the plugin running and the rest of the ADDs (the rollback DELs still run). */
  signal?: AbortSignal;
}

/** Pod annotations carrying bandwidth limits (Kubernetes quantities in bits/s). */
export const INGRESS_BANDWIDTH_ANNOTATION = 'kubernetes.io/ingress-bandwidth';
export const EGRESS_BANDWIDTH_ANNOTATION = 'kubernetes.io/egress-bandwidth';

/** The burst given with an annotation rate: the most the bandwidth plugin accepts (containerd's choice). */
const ANNOTATION_BURST_BITS = 4_294_967_295;
const MIN_BANDWIDTH_BITS = 1e3;
const MAX_BANDWIDTH_BITS = 1e15;

/** The interface whose IPs are the pod's IPs. */
const PRIMARY_IFNAME = `${IFNAME_PREFIX}0`;

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalidArgument(code: string, message: string, context: ErrorContext): never {
  throw new BerthError('invalid-argument', code, message, { context });
}

const QUANTITY = /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;
const QUANTITY_SCALE: Record<string, number> = {
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
  n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
};

/** A Kubernetes resource quantity ("10M", "1Gi", "1e6", "500k") as a whole number, rounded up like Quantity.Value(). */
export function parseQuantity(text: string): number {
  const m = QUANTITY.exec(text.trim());
  if (!m) invalidArgument('ERR_POD_NETWORK_BANDWIDTH', `invalid quantity ${JSON.stringify(text)}`, { quantity: text });
  const suffix = m[3] ?? '';
  const scale = /^[eE]/.test(suffix) ? 10 ** Number(suffix.slice(1)) : (QUANTITY_SCALE[suffix] ?? 1);
  const value = Number(m[2]) * scale;
  return Math.ceil(m[1] === '-' ? -value : value);
}

/**
 * The `bandwidth` capability from the pod annotations
 * kubernetes.io/ingress-bandwidth and kubernetes.io/egress-bandwidth, as
 * kubelet validates them (1k to 1P bits/s); undefined when neither is set.
 */
export function bandwidthFromAnnotations(annotations: Readonly<Record<string, string>>): PodBandwidth | undefined {
  const read = (key: string): number | undefined => {
    const text = annotations[key];
    if (text === undefined) return undefined;
    const bits = parseQuantity(text);
    if (bits < MIN_BANDWIDTH_BITS || bits > MAX_BANDWIDTH_BITS) {
      invalidArgument('ERR_POD_NETWORK_BANDWIDTH', `${key}=${text} is outside 1k..1P bits/s`, { annotation: key, value: text });
    }
    return bits;
  };
  const ingress = read(INGRESS_BANDWIDTH_ANNOTATION);
  const egress = read(EGRESS_BANDWIDTH_ANNOTATION);
  if (ingress === undefined && egress === undefined) return undefined;
  return {
    ...(ingress === undefined ? {} : { ingressRate: ingress, ingressBurst: ANNOTATION_BURST_BITS }),
    ...(egress === undefined ? {} : { egressRate: egress, egressBurst: ANNOTATION_BURST_BITS }),
  };
}

/** CNI_ARGS of a pod, in the order containerd sends them. */
export function podCniArgs(p: Pick<PodNetworkParams, 'podId' | 'namespace' | 'name' | 'uid'>): Record<string, string> {
  return {
    IgnoreUnknown: '1',
    K8S_POD_NAMESPACE: p.namespace,
    K8S_POD_NAME: p.name,
    K8S_POD_INFRA_CONTAINER_ID: p.podId,
    K8S_POD_UID: p.uid,
  };
}

const PROTOCOLS: Record<string, string> = { '0': 'tcp', '1': 'udp', '2': 'sctp', tcp: 'tcp', udp: 'udp', sctp: 'sctp' };

function portNumber(value: number, what: string, allowZero: boolean): number {
  if (!Number.isInteger(value) || value < (allowZero ? 0 : 1) || value > 65535) {
    invalidArgument('ERR_POD_NETWORK_PORT_MAPPING', `invalid ${what} ${value}`, { [what]: value });
  }
  return value;
}

/** The `portMappings` capability: mappings with a host port, protocol in lower case. */
function portMappingsArg(mappings: readonly PodPortMapping[]): JsonObject[] {
  const out: JsonObject[] = [];
  for (const m of mappings) {
    if (m.hostPort <= 0) continue;
    const protocol = PROTOCOLS[String(m.protocol ?? 0).toLowerCase()];
    if (protocol === undefined) {
      invalidArgument('ERR_POD_NETWORK_PORT_MAPPING', `unsupported port mapping protocol ${JSON.stringify(m.protocol)}`, {
        protocol: String(m.protocol),
      });
    }
    const hostIp = m.hostIp ?? '';
    if (hostIp !== '' && isIP(hostIp) === 0) {
      invalidArgument('ERR_POD_NETWORK_PORT_MAPPING', `invalid port mapping host IP ${JSON.stringify(hostIp)}`, { hostIp });
    }
    out.push({
      hostPort: portNumber(m.hostPort, 'hostPort', false),
      containerPort: portNumber(m.containerPort, 'containerPort', false),
      protocol,
      ...(hostIp === '' ? {} : { hostIP: hostIp }),
    });
  }
  return out;
}

/** The `ipRanges` capability: one range set per pod CIDR (so one IP per family). */
function ipRangesArg(cidrs: readonly string[]): Array<Array<{ subnet: string }>> {
  return cidrs.map((cidr) => {
    const [addr, bits, extra] = cidr.split('/');
    const family = isIP(addr ?? '');
    const max = family === 6 ? 128 : 32;
    if (family === 0 || extra !== undefined || bits === undefined || !/^\d+$/.test(bits) || Number(bits) > max) {
      invalidArgument('ERR_POD_NETWORK_POD_CIDR', `invalid pod CIDR ${JSON.stringify(cidr)}`, { cidr });
    }
    return [{ subnet: cidr }];
  });
}

/** Capability args of a pod; a plugin receives those its config declares. */
export function podCapabilityArgs(p: PodNetworkParams): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  const ports = portMappingsArg(p.portMappings ?? []);
  if (ports.length > 0) args['portMappings'] = ports;
  const bw = p.bandwidth;
  if (bw && ((bw.ingressRate ?? 0) > 0 || (bw.egressRate ?? 0) > 0)) {
    args['bandwidth'] = {
      ...(bw.ingressRate ? { ingressRate: bw.ingressRate, ingressBurst: bw.ingressBurst ?? ANNOTATION_BURST_BITS } : {}),
      ...(bw.egressRate ? { egressRate: bw.egressRate, egressBurst: bw.egressBurst ?? ANNOTATION_BURST_BITS } : {}),
    };
  }
  const cidrs = (p.podCidrs ?? []).filter((c) => c !== '');
  if (cidrs.length > 0) args['ipRanges'] = ipRangesArg(cidrs);
  const dns = p.dns;
  if (dns && ((dns.servers?.length ?? 0) > 0 || (dns.searches?.length ?? 0) > 0 || (dns.options?.length ?? 0) > 0)) {
    args['dns'] = { servers: [...(dns.servers ?? [])], searches: [...(dns.searches ?? [])], options: [...(dns.options ?? [])] };
  }
  return args;
}

/** The network list as JSON that parses back to the same network. */
function serializeNetwork(network: CniNetwork): string {
  return JSON.stringify({
    cniVersion: network.cniVersion,
    name: network.name,
    ...(network.disableCheck ? { disableCheck: true } : {}),
    plugins: network.plugins.map((p) => p.conf),
  });
}

function recordError(message: string, context: ErrorContext): BerthError {
  return new BerthError('invalid-argument', 'ERR_POD_NETWORK_RECORD', `invalid pod network record: ${message}`, { context });
}

function networkOf(att: PodAttachmentRecord, podId: string): CniNetwork {
  const outcome = parseNetworkConfig(Buffer.from(att.config, 'utf8'), 'list');
  if (!outcome.ok) throw recordError(`network ${att.network}: ${outcome.reason}`, { podId, network: att.network });
  return outcome.network;
}

function validateRecord(record: PodNetworkRecord): void {
  const ok =
    isObject(record) &&
    typeof record.podId === 'string' &&
    typeof record.netnsPath === 'string' &&
    isObject(record.args) &&
    isObject(record.capabilityArgs) &&
    Array.isArray(record.attachments) &&
    record.attachments.every(
      (a) => isObject(a) && typeof a.network === 'string' && typeof a.ifName === 'string' && typeof a.config === 'string' && isObject(a.result),
    );
  if (!ok) throw recordError('wrong shape', { podId: isObject(record) ? String(record.podId) : undefined });
}

function stripPrefix(address: string): string {
  const slash = address.indexOf('/');
  return slash < 0 ? address : address.slice(0, slash);
}

/** Addresses a result gives the interface `ifName` in the sandbox. */
function addressesOf(result: CniResult, ifName: string): string[] {
  const ips = Array.isArray(result.ips) ? result.ips : [];
  const interfaces = Array.isArray(result.interfaces) ? result.interfaces : [];
  let addresses: string[];
  if (ips.some((ip) => typeof ip.interface === 'number')) {
    addresses = ips
      .filter((ip) => {
        const iface = typeof ip.interface === 'number' ? interfaces[ip.interface] : undefined;
        return iface !== undefined && iface.name === ifName && typeof iface.sandbox === 'string' && iface.sandbox !== '';
      })
      .map((ip) => ip.address);
  } else if (ips.length > 0) {
    addresses = ips.map((ip) => ip.address);
  } else {
    // Spec 0.1.0/0.2.0 results: `ip4` and `ip6` objects.
    addresses = (['ip4', 'ip6'] as const)
      .map((key) => result[key])
      .filter(isObject)
      .map((entry) => entry['ip'])
      .filter((ip): ip is string => typeof ip === 'string');
  }
  return addresses.map(stripPrefix).filter((ip) => isIP(ip) !== 0);
}

/** The pod's IPs from a record: eth0's, IPv4 first, then IPv6 (order kept within a family). */
export function podIpsOf(record: Pick<PodNetworkRecord, 'attachments'>): string[] {
  const primary = record.attachments.find((a) => a.ifName === PRIMARY_IFNAME);
  if (!primary) return [];
  const ips = addressesOf(primary.result, PRIMARY_IFNAME);
  return [...ips.filter((ip) => isIP(ip) === 4), ...ips.filter((ip) => isIP(ip) === 6)];
}

/** Sets up, checks and tears down pod networking. */
export class PodNetwork {
  private readonly source: PodNetworkSource;
  private readonly log: Logger | undefined;
  /** The tail of each pod's queue of operations. */
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(source: PodNetworkSource, opts: PodNetworkOptions = {}) {
    this.source = source;
    this.log = opts.log;
  }

  /** Run `op` after the pod's earlier operations. */
  private serialize<T>(podId: string, op: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(podId) ?? Promise.resolve();
    const next = prev.then(op, op);
    const tail = next.catch(() => {});
    this.queues.set(podId, tail);
    void tail.then(() => {
      if (this.queues.get(podId) === tail) this.queues.delete(podId);
    });
    return next;
  }

  private exec(signal?: AbortSignal): CniExecOptions {
    return this.source.execOptions(signal ? { signal } : {});
  }

  /**
   * ADD the pod to every loaded network, loopback first. When one fails,
   * it and those before it are DELeted (in reverse) and the error rethrown.
   */
  async setup(params: PodNetworkParams, opts: PodNetworkCallOptions = {}): Promise<PodNetworkSetup> {
    const args = podCniArgs(params);
    const capabilityArgs = podCapabilityArgs(params);
    return this.serialize(params.podId, async () => {
      const record: PodNetworkRecord = { podId: params.podId, netnsPath: params.netnsPath, args, capabilityArgs, attachments: [] };
      const started = performance.now();
      const attempted: Array<{ network: CniNetwork; ifName: string; result?: CniResult }> = [];
      try {
        for (const { network, ifName } of this.source.attachments()) {
          const entry: { network: CniNetwork; ifName: string; result?: CniResult } = { network, ifName };
          attempted.push(entry);
          const rt: CniRuntimeConf = { containerId: params.podId, netns: params.netnsPath, ifName, args, capabilityArgs };
          entry.result = await addNetworkList(network, rt, this.exec(opts.signal));
          record.attachments.push({ network: network.name, ifName, config: serializeNetwork(network), result: entry.result });
        }
      } catch (err) {
        // The spec: a failed ADD must still be followed by a DEL, so the failed attachment is removed too.
        for (const entry of attempted.reverse()) {
          const rt: CniRuntimeConf = { containerId: params.podId, netns: params.netnsPath, ifName: entry.ifName, args, capabilityArgs };
          try {
            await delNetworkList(entry.network, rt, entry.result, this.exec());
          } catch (delErr) {
            this.log?.warn(
              { podId: params.podId, network: entry.network.name, ifName: entry.ifName, err: errorMessage(delErr) },
              'CNI DEL after failed setup failed',
            );
          }
        }
        throw err;
      }
      const ips = podIpsOf(record);
      this.log?.debug({ podId: params.podId, ips, ms: Math.round(performance.now() - started) }, 'pod network set up');
      return { record, ips };
    });
  }

  /**
   * DEL every attachment, in reverse. Given a record, it runs the configs,
   * args and cached results stored there; given the pod's params (when no
   * record was kept), the currently loaded networks without cached results.
   * Every attachment is tried; the first failure is thrown after the rest.
   * When the namespace is gone (not pinned any more), CNI_NETNS is empty,
   * as containerd does: plugins then release what lives outside it.
   * Running it again is fine.
   */
  async teardown(target: PodNetworkRecord | PodNetworkParams, opts: PodNetworkCallOptions = {}): Promise<void> {
    let plan: Array<{ network: CniNetwork; ifName: string; result?: CniResult }>;
    let args: Record<string, string>;
    let capabilityArgs: Record<string, unknown>;
    if ('attachments' in target) {
      validateRecord(target);
      plan = target.attachments.map((a) => ({ network: networkOf(a, target.podId), ifName: a.ifName, result: a.result }));
      args = target.args;
      capabilityArgs = target.capabilityArgs;
    } else {
      plan = this.source.attachments().map(({ network, ifName }) => ({ network, ifName }));
      args = podCniArgs(target);
      capabilityArgs = podCapabilityArgs(target);
    }
    const { podId, netnsPath } = target;
    return this.serialize(podId, async () => {
      const netns = netnsPath !== '' && (await isNetnsPinned(netnsPath)) ? netnsPath : '';
      let first: unknown;
      for (const entry of plan.reverse()) {
        const rt: CniRuntimeConf = { containerId: podId, netns, ifName: entry.ifName, args, capabilityArgs };
        try {
          await delNetworkList(entry.network, rt, entry.result, this.exec(opts.signal));
        } catch (err) {
          this.log?.warn({ podId, network: entry.network.name, ifName: entry.ifName, err: errorMessage(err) }, 'CNI DEL failed');
          first ??= err;
        }
      }
      if (first !== undefined) throw first;
    });
  }

  /** CHECK every attachment of a record, in order, against its ADD result. */
  async check(record: PodNetworkRecord, opts: PodNetworkCallOptions = {}): Promise<void> {
    validateRecord(record);
    const plan = record.attachments.map((a) => ({ network: networkOf(a, record.podId), ifName: a.ifName, result: a.result }));
    return this.serialize(record.podId, async () => {
      for (const entry of plan) {
        const rt: CniRuntimeConf = {
          containerId: record.podId,
          netns: record.netnsPath,
          ifName: entry.ifName,
          args: record.args,
          capabilityArgs: record.capabilityArgs,
        };
        await checkNetworkList(entry.network, rt, entry.result, this.exec(opts.signal));
      }
    });
  }
}
