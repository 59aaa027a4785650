/** berthd's command line: flags, config, and the daemon's life (berthd.ts starts it). */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { errorMessage, isBerthError } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import { loadConfigFile, resolveConfig, type ConfigOverrides } from '../daemon/config.js';
import { startDaemon } from '../daemon/daemon.js';
import { renderDefaultConfig } from '../daemon/default-config.js';
import { builtinRegistrations } from '../daemon/registrations.js';
import { BERTH_VERSION } from '../version.js';

const DEFAULT_CONFIG_PATH = '/etc/berth/config.toml';

const USAGE = `berthd ${BERTH_VERSION}: a Kubernetes container runtime serving the CRI v1 API

Usage:
  berthd [flags]                 run the daemon
  berthd config default          print the full default config (TOML, commented)

Flags (override the config file):
  --config FILE        config file (default ${DEFAULT_CONFIG_PATH}, used if present)
  --address PATH       gRPC UNIX socket (default /run/berth/berth.sock)
  --root DIR           persistent data dir (default /var/lib/berth)
  --state DIR          runtime state dir (default /run/berth)
  --log-level LEVEL    trace, debug, info, warn, error, fatal, silent (default info)
  --cni-conf-dir DIR   CNI network configs (default /etc/cni/net.d)
  --cni-bin-dir DIR    CNI plugin binaries; repeat or separate with commas
                       (default /opt/cni/bin,/usr/lib/cni)
  --registry-config-dir DIR
                       registry hosts dir: <DIR>/<host[:port]>/hosts.toml
                       (containerd's layout: mirrors, plain HTTP, CA, skip_verify)
  -h, --help           this help
  -v, --version        print the version
`;

function fail(message: string): never {
  process.stderr.write(`berthd: ${message}\n`);
  process.exit(1);
}

async function main(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string' },
        address: { type: 'string' },
        root: { type: 'string' },
        state: { type: 'string' },
        'log-level': { type: 'string' },
        'cni-conf-dir': { type: 'string' },
        'cni-bin-dir': { type: 'string', multiple: true },
        'registry-config-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (err) {
    fail(`${errorMessage(err)}\n\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (values.version) {
    process.stdout.write(`berthd ${BERTH_VERSION}\n`);
    return;
  }
  if (positionals.length > 0) {
    if (positionals.join(' ') === 'config default') {
      process.stdout.write(renderDefaultConfig(builtinRegistrations({})));
      return;
    }
    fail(`unknown command "${positionals.join(' ')}"\n\n${USAGE}`);
  }

  const overrides: ConfigOverrides = {};
  if (values.address !== undefined) overrides.address = values.address;
  if (values.root !== undefined) overrides.root = values.root;
  if (values.state !== undefined) overrides.state = values.state;
  if (values['log-level'] !== undefined) overrides.logLevel = values['log-level'];
  if (values['cni-conf-dir'] !== undefined) overrides.cniConfDir = values['cni-conf-dir'];
  if (values['registry-config-dir'] !== undefined) overrides.registryConfigDir = values['registry-config-dir'];
  if (values['cni-bin-dir'] !== undefined) overrides.cniBinDirs = values['cni-bin-dir'].flatMap((d) => d.split(',')).filter((d) => d !== '');

  const configPath = values.config ?? (existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : undefined);
  const config = resolveConfig(configPath === undefined ? {} : await loadConfigFile(configPath), overrides, configPath);
  const log = createLogger(config.log_level as Parameters<typeof createLogger>[0]);
  log.info({ version: BERTH_VERSION, config: configPath ?? '<defaults>', node: process.version }, 'berthd starting');

  const daemon = await startDaemon(config, builtinRegistrations(config), log);

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    daemon.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('uncaughtException', (err) => {
    // A request never crashes the daemon; anything reaching here is a bug worth a loud line.
    log.fatal({ err }, 'uncaught exception');
  });
  process.on('unhandledRejection', (err) => {
    log.error({ err }, 'unhandled rejection');
  });
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const code = isBerthError(err) ? ` [${err.code}]` : '';
  fail(`${errorMessage(err)}${code}`);
});
