import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BerthError, errorMessage } from '../errors.js';

/**
 * What node:fs lacks: mknod(2) and the xattr calls, done with mknod(1)
 * (coreutils) and setfattr/getfattr (Debian package `attr`). The callers have
 * already checked that every parent of the path is a real directory; none of
 * these follow a symlink in the last component (setfattr/getfattr get `-h`).
 */

const run = promisify(execFile);

function stderrOf(err: unknown): string {
  const raw = (err as { stderr?: unknown } | undefined)?.stderr;
  const stderr = Buffer.isBuffer(raw) ? raw.toString('utf8') : typeof raw === 'string' ? raw : '';
  return stderr.trim() !== '' ? stderr.trim() : errorMessage(err);
}

/** Fails with a clear message when mknod(1) or setfattr/getfattr are missing. */
export async function checkTools(): Promise<void> {
  for (const [tool, pkg] of [
    ['mknod', 'coreutils'],
    ['setfattr', 'attr'],
    ['getfattr', 'attr'],
  ] as const) {
    try {
      await run(tool, ['--version']);
    } catch (err) {
      throw new BerthError('failed-precondition', 'ERR_DIFF_TOOLS', `${tool} (Debian package ${pkg}) is needed to apply layers: ${stderrOf(err)}`, {
        context: { tool },
        cause: err,
      });
    }
  }
}

export type NodeKind = 'char' | 'block' | 'fifo';

/** mknod with the given permission bits (not masked by the umask). */
export async function mknod(path: string, kind: NodeKind, mode: number, major = 0, minor = 0): Promise<void> {
  const args = ['-m', (mode & 0o7777).toString(8), '--', path];
  if (kind === 'fifo') args.push('p');
  else args.push(kind === 'char' ? 'c' : 'b', String(major), String(minor));
  try {
    await run('mknod', args);
  } catch (err) {
    throw new BerthError('internal', 'ERR_DIFF_MKNOD', `mknod ${path}: ${stderrOf(err)}`, { context: { path, kind }, cause: err });
  }
}

/** getfattr/setfattr's quoting of a path: every byte but a few plain ones as \ooo. */
function quotePath(path: string): string {
  let out = '';
  for (const byte of Buffer.from(path, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9/._+-]/.test(c) ? c : `\\${byte.toString(8).padStart(3, '0')}`;
  }
  return out;
}

/** An xattr name setfattr's restore format can carry (no '=', whitespace or control bytes). */
export function isPlainXattrName(name: string): boolean {
  return /^[\x21-\x3c\x3e-\x7e]+$/.test(name);
}

export interface XattrFailure {
  /** setfattr's message, `setfattr: <path>: <error>`. */
  message: string;
  /** The error is the filesystem (or inode type) not taking the attribute. */
  notSupported: boolean;
}

/**
 * Sets many xattrs with one `setfattr --restore` (paths absolute, names
 * checked with isPlainXattrName). setfattr goes on past a failing attribute;
 * what failed is returned, one entry per line it printed.
 */
export async function setXattrs(items: ReadonlyMap<string, ReadonlyMap<string, Buffer>>): Promise<XattrFailure[]> {
  if (items.size === 0) return [];
  let dump = '';
  for (const [path, attrs] of items) {
    if (attrs.size === 0) continue;
    dump += `# file: ${quotePath(path)}\n`;
    for (const [name, value] of attrs) dump += `${name}=0s${value.toString('base64')}\n`;
    dump += '\n';
  }
  return new Promise((resolve, reject) => {
    const child = execFile('setfattr', ['-h', '--restore=-'], { maxBuffer: 16 * 1024 * 1024 }, (err, _stdout, stderr) => {
      if (err === null) {
        resolve([]);
        return;
      }
      const lines = String(stderr)
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '');
      if (lines.length === 0) {
        reject(new BerthError('internal', 'ERR_DIFF_XATTR', `setfattr failed: ${errorMessage(err)}`, { cause: err }));
        return;
      }
      resolve(lines.map((message) => ({ message, notSupported: /Operation not supported|Operation not permitted/.test(message) })));
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(dump);
  });
}

/** The value of one xattr of `path` (not following a symlink), or undefined if it has none. */
export async function getXattr(path: string, name: string): Promise<Buffer | undefined> {
  try {
    const { stdout } = await run('getfattr', ['-h', '--absolute-names', '--only-values', '-n', name, '--', path], {
      encoding: 'buffer',
    });
    return stdout;
  } catch (err) {
    const text = stderrOf(err);
    if (/No such attribute|No data available/.test(text)) return undefined;
    throw new BerthError('internal', 'ERR_DIFF_XATTR', `getfattr ${path}: ${text}`, { context: { path, name }, cause: err });
  }
}
