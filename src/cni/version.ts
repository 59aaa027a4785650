/**
 * CNI spec versions this runtime speaks, and the version checks the spec ties
 * behaviour to (chained results from 0.3.0, CHECK and a cached prevResult on
 * DEL from 0.4.0).
 */

/** Released CNI spec versions, oldest first. */
export const SUPPORTED_CNI_VERSIONS: readonly string[] = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

export function isSupportedCniVersion(version: string): boolean {
  return SUPPORTED_CNI_VERSIONS.includes(version);
}

/** Parse `MAJOR.MINOR.PATCH`; undefined for anything else. */
function parseVersion(version: string): [number, number, number] | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(version);
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

/** Compare two versions; unparseable versions sort before every parseable one. */
export function compareCniVersions(a: string, b: string): number {
  const pa = parseVersion(a);
  const pb = parseVersion(b);
  if (!pa || !pb) return (pa ? 1 : 0) - (pb ? 1 : 0);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function cniVersionAtLeast(version: string, minimum: string): boolean {
  return compareCniVersions(version, minimum) >= 0;
}
