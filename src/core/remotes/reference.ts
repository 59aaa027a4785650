import { BerthError } from '../errors.js';

/**
 * Image references, parsed and normalised the way docker/distribution's
 * `reference.ParseNormalizedNamed` does:
 *
 *   reference := name [ ":" tag ] [ "@" digest ]
 *   name      := [ domain "/" ] path
 *   domain    := host [ ":" port ]           host: DNS name, IPv4, or [IPv6]
 *   path      := component ( "/" component )*
 *   component := [a-z0-9]+ ( separator [a-z0-9]+ )*   separator: "." | "_" | "__" | "-"+
 *   tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
 *   digest    := algorithm ":" hex  (hex of 32+ chars; sha256 = 64, sha512 = 128)
 *
 * The first path element is a domain only when it contains "." or ":", is
 * "localhost", or has an upper-case letter; otherwise the domain is
 * docker.io, and a single-element docker.io path gets "library/" in front.
 * A reference without tag or digest gets the tag "latest".
 */

export const DEFAULT_DOMAIN = 'docker.io';
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';
export const DEFAULT_TAG = 'latest';
/** Longest allowed `domain/path`, as distribution's NameTotalLengthMax. */
export const NAME_TOTAL_LENGTH_MAX = 255;

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const IPV6 = '\\[[a-fA-F0-9:]+\\]';
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|${IPV6})(?::[0-9]+)?`;
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';

const DOMAIN_RE = new RegExp(`^${DOMAIN}$`);
const PATH_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const TAG_RE = new RegExp(`^${TAG}$`);
const DIGEST_RE = new RegExp(`^${DIGEST}$`);
const HEX64_RE = /^[a-f0-9]{64}$/;

/** Hex lengths of the digest algorithms we can verify. */
const DIGEST_HEX_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };

function invalid(ref: string, why: string): BerthError {
  return new BerthError('invalid-argument', 'ERR_INVALID_REFERENCE', `invalid image reference "${ref}": ${why}`, {
    context: { reference: ref },
  });
}

/** A parsed, normalised image reference. Immutable. */
export class ImageReference {
  /** Registry host as written in the reference, e.g. `docker.io`, `localhost:5000`. */
  readonly domain: string;
  /** Repository path inside the registry, e.g. `library/busybox`. */
  readonly path: string;
  /** Tag; `latest` when the reference had neither tag nor digest. */
  readonly tag: string | undefined;
  /** `algorithm:hex`, when pinned by digest. */
  readonly digest: string | undefined;

  constructor(domain: string, path: string, tag: string | undefined, digest: string | undefined) {
    this.domain = domain;
    this.path = path;
    this.tag = tag;
    this.digest = digest;
  }

  /** `domain/path`, e.g. `docker.io/library/busybox`: the repository name. */
  get name(): string {
    return `${this.domain}/${this.path}`;
  }

  /** `domain/path:tag` (tag `latest` if the reference had only a digest). */
  nameWithTag(): string {
    return `${this.name}:${this.tag ?? DEFAULT_TAG}`;
  }

  /** `domain/path@digest`, or undefined when the reference has no digest. */
  nameWithDigest(): string | undefined {
    return this.digest === undefined ? undefined : `${this.name}@${this.digest}`;
  }

  /** The same repository pinned to a digest (keeps no tag). */
  withDigest(digest: string): ImageReference {
    return new ImageReference(this.domain, this.path, undefined, digest);
  }

  /** What the registry is asked for: the digest when there is one, else the tag. */
  get object(): string {
    return this.digest ?? this.tag ?? DEFAULT_TAG;
  }

  /** Full normalised form: `name:tag`, `name@digest` or `name:tag@digest`. */
  toString(): string {
    let s = this.name;
    if (this.tag !== undefined) s += `:${this.tag}`;
    if (this.digest !== undefined) s += `@${this.digest}`;
    return s;
  }
}

/** Checks `algorithm:hex` for an algorithm we support (sha256, sha512); throws a plain Error saying why not. */
export function validateDigest(digest: string): void {
  if (!DIGEST_RE.test(digest)) throw new Error(`invalid digest format "${digest}"`);
  const colon = digest.indexOf(':');
  const alg = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  const want = DIGEST_HEX_LENGTH[alg];
  if (want === undefined) throw new Error(`unsupported digest algorithm "${alg}"`);
  if (hex.length !== want || !/^[a-f0-9]+$/.test(hex)) {
    throw new Error(`invalid ${alg} digest "${digest}" (want ${want} lower-case hex characters)`);
  }
}

/** Splits off a leading domain as distribution's splitDockerDomain does. */
function splitDomain(name: string): [string, string] {
  const slash = name.indexOf('/');
  let domain: string;
  let rest: string;
  const first = slash === -1 ? '' : name.slice(0, slash);
  if (slash === -1 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    domain = DEFAULT_DOMAIN;
    rest = name;
  } else {
    domain = first;
    rest = name.slice(slash + 1);
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !rest.includes('/')) rest = OFFICIAL_REPO_PREFIX + rest;
  return [domain, rest];
}

/**
 * Parses and normalises an image reference (`busybox` →
 * `docker.io/library/busybox:latest`). Throws BerthError invalid-argument
 * ERR_INVALID_REFERENCE naming the reference and the reason.
 */
export function parseReference(input: string): ImageReference {
  if (input === '') throw invalid(input, 'repository name must have at least one component');
  if (HEX64_RE.test(input)) throw invalid(input, 'cannot specify 64-byte hexadecimal strings');

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    try {
      validateDigest(digest);
    } catch (err) {
      throw invalid(input, (err as Error).message);
    }
  }

  // A tag follows the last ":" that comes after the last "/" (a ":" before
  // it belongs to the domain's port).
  let tag: string | undefined;
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > rest.lastIndexOf('/')) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG_RE.test(tag)) throw invalid(input, `invalid tag "${tag}"`);
  }

  const [domain, path] = splitDomain(rest);
  if (!DOMAIN_RE.test(domain)) throw invalid(input, `invalid registry host "${domain}"`);
  if (path === '') throw invalid(input, 'repository name must have at least one component');
  if (path.toLowerCase() !== path) throw invalid(input, 'repository name must be lowercase');
  if (!PATH_RE.test(path)) throw invalid(input, `invalid repository name "${path}"`);
  // Measured on the normalised name, as distribution does.
  if (domain.length + 1 + path.length > NAME_TOTAL_LENGTH_MAX) {
    throw invalid(input, `repository name must not be more than ${NAME_TOTAL_LENGTH_MAX} characters`);
  }

  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return new ImageReference(domain, path, tag, digest);
}
