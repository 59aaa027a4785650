import { endianness } from 'node:os';
import { BerthError } from '../errors.js';
import { isIndexType, isManifestType, type Descriptor, type ImageIndex, type Platform } from './types.js';

/**
 * Platform matching for choosing a manifest out of an image index, after
 * containerd's `platforms` package: names are normalised (x86_64 → amd64,
 * aarch64 → arm64, armhf → arm/v7 ...), and a host platform also runs the
 * older variants of its architecture (amd64/v3 runs v2 and v1, arm/v7 runs
 * v6 and v5) and amd64 runs 386; the exact platform is preferred, then
 * newer variants before older ones.
 */

export type PlatformSpec = Pick<Platform, 'os' | 'architecture' | 'variant'>;

/** Normalised os/architecture/variant; `variant` is '' when there is none. */
export interface NormalizedPlatform {
  os: string;
  architecture: string;
  variant: string;
}

export function normalizePlatform(p: PlatformSpec): NormalizedPlatform {
  let os = (p.os ?? '').toLowerCase();
  if (os === 'macos') os = 'darwin';
  let arch = (p.architecture ?? '').toLowerCase();
  let variant = (p.variant ?? '').toLowerCase();
  switch (arch) {
    case 'i386':
      arch = '386';
      variant = '';
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      arch = 'amd64';
      if (variant === 'v1') variant = '';
      break;
    case 'aarch64':
    case 'arm64':
      arch = 'arm64';
      if (variant === '' || variant === '8' || variant === 'v8.0') variant = 'v8';
      break;
    case 'armhf':
      arch = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      arch = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant === '' || variant === '7') variant = 'v7';
      else if (variant === '5' || variant === '6' || variant === '8') variant = `v${variant}`;
      break;
  }
  return { os, architecture: arch, variant };
}

/** `os/arch[/variant]`. */
export function formatPlatform(p: PlatformSpec): string {
  return [p.os, p.architecture, p.variant].filter((s) => s !== undefined && s !== '').join('/');
}

/**
 * Parses `os[/arch[/variant]]` (as in `linux/arm64/v8`); a lone known
 * architecture means that architecture on the host's OS.
 */
export function parsePlatform(spec: string): PlatformSpec {
  const parts = spec.split('/');
  const bad = () =>
    new BerthError('invalid-argument', 'ERR_INVALID_PLATFORM', `invalid platform "${spec}": want os[/arch[/variant]]`, {
      context: { platform: spec },
    });
  if (parts.length > 3 || parts.some((p) => !/^[A-Za-z0-9_.-]+$/.test(p))) throw bad();
  const host = hostPlatform();
  const [first, arch, variant] = parts as [string, string | undefined, string | undefined];
  if (parts.length === 1) {
    if (KNOWN_OS.has(first.toLowerCase())) return { os: first, architecture: host.architecture, variant: host.variant };
    return { os: host.os, architecture: first };
  }
  return variant === undefined ? { os: first, architecture: arch ?? '' } : { os: first, architecture: arch ?? '', variant };
}

const KNOWN_OS = new Set(['linux', 'windows', 'darwin', 'freebsd', 'netbsd', 'openbsd', 'solaris', 'illumos', 'android', 'ios', 'aix', 'plan9', 'js', 'wasip1']);

/** The platform this daemon runs on, in OCI names. */
export function hostPlatform(): PlatformSpec {
  const os = process.platform === 'win32' ? 'windows' : process.platform;
  switch (process.arch) {
    case 'x64':
      return { os, architecture: 'amd64' };
    case 'ia32':
      return { os, architecture: '386' };
    case 'arm': {
      const v = (process.config.variables as Record<string, unknown>)['arm_version'];
      return { os, architecture: 'arm', variant: typeof v === 'string' || typeof v === 'number' ? `v${v}` : 'v7' };
    }
    case 'ppc64':
      return { os, architecture: endianness() === 'LE' ? 'ppc64le' : 'ppc64' };
    case 'mipsel':
      return { os, architecture: 'mipsle' };
    default:
      return { os, architecture: process.arch };
  }
}

/** Decides which platforms an image may have to run on a wanted platform, and which it prefers. */
export interface PlatformMatcher {
  readonly wanted: PlatformSpec;
  match(p: PlatformSpec): boolean;
  /** Preference rank of a matching platform; lower is better, -1 when it does not match. */
  rank(p: PlatformSpec): number;
}

/** The platforms `p` can run, best first. */
function compatible(p: NormalizedPlatform): NormalizedPlatform[] {
  const out: NormalizedPlatform[] = [p];
  const at = (variant: string, architecture = p.architecture) => out.push({ os: p.os, architecture, variant });
  if (p.architecture === 'amd64') {
    const level = p.variant === '' ? 1 : Number(p.variant.replace(/^v/, ''));
    for (let l = Number.isInteger(level) ? level - 1 : 0; l >= 1; l--) at(l === 1 ? '' : `v${l}`);
    at('', '386');
  } else if (p.architecture === 'arm') {
    const level = Number(p.variant.replace(/^v/, ''));
    for (let l = Number.isInteger(level) ? level - 1 : 0; l >= 5; l--) at(`v${l}`);
  } else if (p.architecture === 'arm64' && p.variant !== 'v8') {
    at('v8');
  }
  return out;
}

/** A matcher for `wanted` (the host platform when omitted), like containerd's `platforms.Only`. */
export function platformMatcher(wanted: PlatformSpec = hostPlatform()): PlatformMatcher {
  const list = compatible(normalizePlatform(wanted));
  const rank = (p: PlatformSpec): number => {
    const n = normalizePlatform(p);
    return list.findIndex((c) => c.os === n.os && c.architecture === n.architecture && c.variant === n.variant);
  };
  return { wanted, rank, match: (p) => rank(p) !== -1 };
}

/**
 * The manifests of an index that can run on the matcher's platform, best
 * first (ties in index order). Entries without a platform come last: their
 * image config must be checked by the caller. Entries of other media types
 * (attestations are manifests with platform unknown/unknown) are left out.
 */
export function selectManifests(index: ImageIndex, matcher: PlatformMatcher): Descriptor[] {
  const ranked: { desc: Descriptor; rank: number; pos: number }[] = [];
  index.manifests.forEach((desc, pos) => {
    if (!isManifestType(desc.mediaType) && !isIndexType(desc.mediaType)) return;
    const rank = desc.platform === undefined ? Number.MAX_SAFE_INTEGER : matcher.rank(desc.platform);
    if (rank !== -1) ranked.push({ desc, rank, pos });
  });
  ranked.sort((a, b) => a.rank - b.rank || a.pos - b.pos);
  return ranked.map((r) => r.desc);
}
