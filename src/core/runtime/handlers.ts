import { constants as fsc } from 'node:fs';
import { access } from 'node:fs/promises';
import { release } from 'node:os';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { BerthError } from '../errors.js';
import { runCommand } from './oci/command.js';

/** A handler as Status lists it. */
export interface RuntimeHandlerInfo {
  name: string;
  /** Absolute path of the runtime binary. */
  binary: string;
  /** Its state dir (runc --root). */
  root: string;
  features: { recursiveReadOnlyMounts: boolean; userNamespaces: boolean };
  /** The handler's free-form `options` from config (shown in Status). */
  options: Record<string, unknown>;
}

/** Kubernetes RuntimeClass handlers are DNS labels (RFC 1123). */
const HANDLER_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function checkHandlerName(name: string): void {
  if (!HANDLER_NAME_RE.test(name)) {
    throw new BerthError('invalid-argument', 'ERR_RUNTIME_HANDLER_NAME', `runtime handler name ${JSON.stringify(name)} is not a lowercase DNS label`, {
      context: { handler: name },
    });
  }
}

/** `name` as an absolute path: itself when it has a slash, else the first executable of that name in PATH. */
export async function resolveBinary(name: string, what: string): Promise<string> {
  const candidates = name.includes('/')
    ? [resolve(name)]
    : (process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
        .split(delimiter)
        .filter((d) => isAbsolute(d))
        .map((d) => join(d, name));
  for (const c of candidates) {
    try {
      await access(c, fsc.X_OK);
      return c;
    } catch {
      // Next one.
    }
  }
  throw new BerthError('failed-precondition', 'ERR_RUNTIME_BINARY_NOT_FOUND', `${what} binary ${JSON.stringify(name)} not found${name.includes('/') ? '' : ' in PATH'} or not executable`, {
    context: { binary: name, what },
  });
}

/** The kernel has mount_setattr(2) with MOUNT_ATTR_RDONLY recursion (Linux 5.12). */
function kernelHasRecursiveReadOnly(): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release());
  if (!m) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 5 || (major === 5 && minor >= 12);
}

interface RuncFeatures {
  mountOptions?: string[];
  linux?: { namespaces?: string[]; mountExtensions?: { idmap?: { enabled?: boolean } } };
}

/**
 * What a handler's runtime supports, from `<binary> features` (runc ≥ 1.1):
 * recursive read-only mounts need its `rro` mount option and a 5.12+ kernel;
 * user namespaces for pods need user namespaces and id-mapped mounts. A
 * runtime without `features` supports neither as far as Berth can tell.
 */
export async function probeFeatures(binary: string): Promise<RuntimeHandlerInfo['features']> {
  const none = { recursiveReadOnlyMounts: false, userNamespaces: false };
  let r;
  try {
    r = await runCommand([binary, 'features'], { timeoutMs: 10_000 });
  } catch {
    return none;
  }
  if (r.code !== 0) return none;
  let f: RuncFeatures;
  try {
    f = JSON.parse(r.stdout.toString()) as RuncFeatures;
  } catch {
    return none;
  }
  return {
    recursiveReadOnlyMounts: (f.mountOptions ?? []).includes('rro') && kernelHasRecursiveReadOnly(),
    userNamespaces: (f.linux?.namespaces ?? []).includes('user') && f.linux?.mountExtensions?.idmap?.enabled === true,
  };
}
