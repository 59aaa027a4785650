/**
 * Child process for images-crash.test: brings the plugin stack up in the
 * given dir and pulls one image, printing "pulling" first. The test kills
 * it with SIGKILL mid-download. argv: <stack dir> <image reference>.
 */
import { openStack } from './images-harness.js';

const [dir, ref] = process.argv.slice(2);
if (dir === undefined || ref === undefined) throw new Error('usage: images-crash-child <dir> <ref>');
const stack = await openStack({ dir });
process.stdout.write('pulling\n');
await stack.images.pull(ref);
process.stdout.write('pulled\n');
await stack.close();
