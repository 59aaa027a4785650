/**
 * The command line, environment and working directory of a container's
 * first process, merged from the image config and the CRI request as the
 * kubelet expects (the Docker/containerd rules).
 */
import path from 'node:path';
import { BerthError } from '../../errors.js';
import type { KeyValue } from '../../../generated/api.js';
import type { ImageRunConfig } from './types.js';

export const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * CRI command replaces the image entrypoint, CRI args replace the image cmd,
 * and a command given without args drops the image cmd (it belonged to the
 * image's entrypoint). An image entrypoint of [""] means "none".
 */
export function processArgs(command: string[], args: string[], image: ImageRunConfig): string[] {
  let cmd = command;
  let rest = args;
  if (cmd.length === 0) {
    if (rest.length === 0) rest = [...image.cmd];
    if (!(image.entrypoint.length === 1 && image.entrypoint[0] === '')) cmd = [...image.entrypoint];
  }
  const all = [...cmd, ...rest];
  if (all.length === 0) {
    throw new BerthError('invalid-argument', 'ERR_SPEC_NO_COMMAND', 'no command: the request has no command or args and the image no entrypoint or cmd');
  }
  return all;
}

/**
 * Applies `overrides` (KEY=value) to `base`: a key already there is replaced
 * in place, a new one appended, and a bare KEY (no "=") removes it.
 */
export function mergeEnv(base: string[], overrides: string[]): string[] {
  const out: (string | null)[] = [...base];
  const index = new Map<string, number>();
  out.forEach((e, i) => index.set((e as string).split('=', 1)[0] as string, i));
  for (const e of overrides) {
    const eq = e.indexOf('=');
    const key = eq < 0 ? e : e.slice(0, eq);
    const at = index.get(key);
    if (eq < 0) {
      if (at !== undefined) out[at] = null;
      continue;
    }
    if (at !== undefined) {
      out[at] = e;
    } else {
      index.set(key, out.length);
      out.push(e);
    }
  }
  return out.filter((e): e is string => e !== null);
}

/**
 * Default PATH, TERM=xterm with a terminal, HOSTNAME, then the image's env,
 * then the request's envs; later entries override earlier ones by key.
 */
export function processEnv(opts: { hostname: string; tty: boolean; image: ImageRunConfig; envs: KeyValue[] }): string[] {
  let env = [DEFAULT_PATH_ENV];
  if (opts.tty) env = mergeEnv(env, ['TERM=xterm']);
  env = mergeEnv(env, [`HOSTNAME=${opts.hostname}`]);
  env = mergeEnv(env, opts.image.env);
  return mergeEnv(
    env,
    opts.envs.map((kv) => `${kv.key}=${Buffer.from(kv.value).toString('utf8')}`),
  );
}

/** The request's working_dir, else the image's WorkingDir, else "/". */
export function processCwd(workingDir: string, image: ImageRunConfig): string {
  if (workingDir !== '') {
    if (!workingDir.startsWith('/')) {
      throw new BerthError('invalid-argument', 'ERR_SPEC_CWD', `working_dir ${JSON.stringify(workingDir)} is not an absolute path`, {
        context: { workingDir },
      });
    }
    return path.posix.normalize(workingDir);
  }
  if (image.workingDir) return path.posix.join('/', image.workingDir);
  return '/';
}
