/**
 * Child process for oci-survive.test: plays berthd creating and starting one
 * container, prints `{"pid":..,"monitorPid":..}` and then idles until killed.
 * argv: <stateDir> <request JSON (CreateContainerRequest)>.
 */
import { createLogger } from '../../src/core/log.js';
import { ConmonMonitor, type CreateContainerRequest } from '../../src/core/runtime/oci/index.js';
import { CONMON } from './oci-helpers.js';

const [stateDir, requestJson] = process.argv.slice(2);
if (stateDir === undefined || requestJson === undefined) throw new Error('usage: oci-survive-child <stateDir> <request>');
const monitor = new ConmonMonitor({ conmonPath: CONMON, stateDir, log: createLogger('silent') });
const req = JSON.parse(requestJson) as CreateContainerRequest;
const created = await monitor.createContainer(req);
await monitor.start(req.id);
process.stdout.write(`${JSON.stringify(created)}\n`);
setInterval(() => undefined, 60_000);
