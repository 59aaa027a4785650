/**
 * V8 flags berthd runs with. V8 sizes its heap when the process starts, so
 * berthd.ts starts node again with them (process.execve: same pid, same
 * stdio) unless the node running it already has them.
 *
 * --max-semi-space-size=1 (MiB): V8 grows each of the young generation's
 * two semi-spaces up to 16 or 32 MiB under allocation bursts and keeps them,
 * which made up about 30 MiB of berthd's resident memory. berthd's young
 * objects are request-sized, so 1 MiB semi-spaces scavenge often and cheaply.
 */
export const BERTHD_V8_FLAGS: readonly string[] = ['--max-semi-space-size=1'];

/** `--max_semi_space_size=4` → `max-semi-space-size` (V8 takes '_' and '-' alike). */
function flagName(arg: string): string {
  return arg.replace(/^--?/, '').split('=')[0]!.replaceAll('_', '-');
}

/**
 * The flags of BERTHD_V8_FLAGS that neither node's own arguments nor
 * NODE_OPTIONS set (to any value: the user's choice wins).
 */
export function missingV8Flags(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const given = new Set([...execArgv, ...(nodeOptions ?? '').split(/\s+/)].filter((a) => a.startsWith('-')).map(flagName));
  return BERTHD_V8_FLAGS.filter((flag) => !given.has(flagName(flag)));
}
