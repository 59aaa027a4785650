/**
 * Linux capabilities: names by bit number, the host's bounding set, and the
 * CRI add/drop rules. runc refuses a spec that names a capability outside its
 * own bounding set, so every set written is cut down to the host's.
 */
import { BerthError } from '../../errors.js';
import type { Capability } from '../../../generated/api.js';
import type { OciCapabilities } from './types.js';

/** Capability names indexed by bit number (linux/capability.h, up to 6.x). */
export const CAPABILITY_NAMES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];

/** The set a container gets when its security context says nothing (containerd's and Docker's default). */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/**
 * Capability names of the bits set in a hex mask as /proc/<pid>/status shows
 * it (CapBnd: 000001fffeffffff). Bits past the last known capability are
 * left out: no runtime could name them.
 */
export function capabilitiesFromMask(hex: string): string[] {
  const text = hex.trim();
  if (!/^[0-9a-fA-F]{1,16}$/.test(text)) {
    throw new BerthError('internal', 'ERR_SPEC_CAPABILITY_MASK', `not a capability mask: ${JSON.stringify(hex)}`);
  }
  const mask = BigInt(`0x${text}`);
  const names: string[] = [];
  CAPABILITY_NAMES.forEach((name, bit) => {
    if ((mask >> BigInt(bit)) & 1n) names.push(name);
  });
  return names;
}

/** `net_admin`, `NET_ADMIN` and `CAP_NET_ADMIN` all name CAP_NET_ADMIN; anything else unknown is an error. */
export function normalizeCapability(name: string): string {
  const upper = name.trim().toUpperCase();
  const full = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  if (!CAPABILITY_NAMES.includes(full)) {
    throw new BerthError('invalid-argument', 'ERR_SPEC_CAPABILITY_UNKNOWN', `unknown capability ${JSON.stringify(name)}`, {
      context: { capability: name },
    });
  }
  return full;
}

function isAll(name: string): boolean {
  return name.trim().toUpperCase() === 'ALL';
}

export interface CapabilityChoice {
  caps: OciCapabilities;
  /** Requested capabilities the host's bounding set lacks (left out). */
  unavailable: string[];
}

/**
 * The capability sets of a container, following containerd's CRI rules:
 * start from the default set; "ALL" in add means every capability and in
 * drop means none, applied before the individual names, so add [ALL] with
 * drop [CHOWN] is everything but CAP_CHOWN. Adds go to bounding, effective
 * and permitted; drops leave all sets. Ambient adds (CRI
 * add_ambient_capabilities) go to every set including inheritable and
 * ambient. Privileged means every capability of the host, ignoring add/drop.
 * Everything is then cut to the host's bounding set.
 */
export function chooseCapabilities(requested: Capability | undefined, privileged: boolean, hostCaps: readonly string[]): CapabilityChoice {
  const host = new Set(hostCaps);
  const order = (set: Set<string>): string[] => CAPABILITY_NAMES.filter((c) => set.has(c));
  let base = new Set<string>(DEFAULT_CAPABILITIES);
  const ambient = new Set<string>();
  if (privileged) {
    base = new Set(hostCaps);
  } else if (requested !== undefined) {
    if (requested.addCapabilities.some(isAll)) base = new Set(CAPABILITY_NAMES);
    if (requested.dropCapabilities.some(isAll)) base = new Set();
    for (const c of requested.addCapabilities) if (!isAll(c)) base.add(normalizeCapability(c));
    for (const c of requested.addAmbientCapabilities) {
      const name = normalizeCapability(c);
      base.add(name);
      ambient.add(name);
    }
    for (const c of requested.dropCapabilities) {
      if (isAll(c)) continue;
      const name = normalizeCapability(c);
      base.delete(name);
      ambient.delete(name);
    }
  }
  const unavailable = order(base).filter((c) => !host.has(c));
  const explicitlyAdded = new Set<string>();
  if (!privileged && requested !== undefined) {
    for (const c of [...requested.addCapabilities, ...requested.addAmbientCapabilities]) if (!isAll(c)) explicitlyAdded.add(normalizeCapability(c));
  }
  const kept = new Set([...base].filter((c) => host.has(c)));
  const keptAmbient = new Set([...ambient].filter((c) => host.has(c)));
  const main = order(kept);
  return {
    caps: { bounding: [...main], effective: [...main], permitted: [...main], inheritable: order(keptAmbient), ambient: order(keptAmbient) },
    // Only names the caller asked for by name are worth reporting; "ALL" and the defaults shrinking to the host are expected.
    unavailable: unavailable.filter((c) => explicitlyAdded.has(c)),
  };
}
