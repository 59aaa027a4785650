/**
 * The built-in loopback network: every pod sandbox gets `lo` brought up by
 * the `loopback` plugin, whatever the conf dir holds.
 */
import { parseNetworkConfig, type CniNetwork } from './conf-loader.js';

export const LOOPBACK_NETWORK_NAME = 'cni-loopback';

/** Interface name the loopback network is run with. */
export const LOOPBACK_IFNAME = 'lo';

const LOOPBACK_CONF = {
  cniVersion: '1.0.0',
  name: LOOPBACK_NETWORK_NAME,
  plugins: [{ type: 'loopback' }],
};

function buildLoopback(): CniNetwork {
  const outcome = parseNetworkConfig(Buffer.from(JSON.stringify(LOOPBACK_CONF)), 'list');
  if (!outcome.ok) throw new Error(`built-in loopback network is invalid: ${outcome.reason}`);
  return outcome.network;
}

/** The loopback network list (frozen, shared). */
export const loopbackNetwork: CniNetwork = buildLoopback();
