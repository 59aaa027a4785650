/**
 * Ids of sandboxes and containers: 64 random hex digits, as containerd makes
 * them, so tools that shorten them to 12 or 13 characters work. Clients may
 * name one by any unique prefix.
 */
import { randomBytes } from 'node:crypto';
import { BerthError } from '../../core/errors.js';

export function newId(): string {
  return randomBytes(32).toString('hex');
}

/**
 * The one id in `ids` that is `idOrPrefix` or starts with it. `undefined`
 * when none does; an empty or ambiguous prefix is an invalid argument.
 */
export function matchId(ids: Iterable<string>, idOrPrefix: string, kind: string): string | undefined {
  if (idOrPrefix === '') {
    throw new BerthError('invalid-argument', 'ERR_CRI_ID_EMPTY', `${kind} id must not be empty`, { context: { kind } });
  }
  let found: string | undefined;
  for (const id of ids) {
    if (id === idOrPrefix) return id;
    if (!id.startsWith(idOrPrefix)) continue;
    if (found !== undefined) {
      throw new BerthError('invalid-argument', 'ERR_CRI_ID_AMBIGUOUS', `${kind} id prefix ${JSON.stringify(idOrPrefix)} matches more than one ${kind}`, {
        context: { kind, prefix: idOrPrefix },
      });
    }
    found = id;
  }
  return found;
}
