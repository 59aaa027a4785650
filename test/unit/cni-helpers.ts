// Helpers for the CNI tests that run the real plugins.

import { randomBytes } from 'node:crypto';
import { parseNetworkConfig, type CniNetwork } from '../../src/cni/conf-loader.js';

/** Where Debian's containernetworking-plugins installs the plugins. */
export const SYSTEM_BIN = '/usr/lib/cni';

/** A network from a conflist object, parsed as the conf loader would; throws if it is invalid. */
export function network(conf: Record<string, unknown>): CniNetwork {
  const outcome = parseNetworkConfig(Buffer.from(JSON.stringify(conf)), 'list');
  if (!outcome.ok) throw new Error(outcome.reason);
  return outcome.network;
}

/** `bytes` random bytes as hex: unique names for netns, bridges and ids. */
export function rand(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}
