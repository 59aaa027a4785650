/**
 * Child process for content-crash.test: downloads blobs one after another
 * through LocalContentStore.ensure() from a slow source until it is killed.
 * argv: <store root>. Prints "ready" once the first byte is written.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalContentStore } from '../../src/core/content/index.js';
import { createLogger } from '../../src/core/log.js';

const root = process.argv[2];
if (!root) throw new Error('usage: content-crash-child <root>');
const store = await LocalContentStore.open(root, createLogger('silent'));

function blob(index: number): Buffer {
  const buf = Buffer.alloc(256 * 1024);
  for (let i = 0; i < buf.length; i++) buf[i] = (i * 13 + index * 101 + (i >> 10)) & 0xff;
  return buf;
}

async function* slow(data: Buffer): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < data.length; off += 8192) {
    await sleep(1);
    yield data.subarray(off, off + 8192);
  }
}

let announced = false;
for (let i = 0; ; i++) {
  const data = blob(i + Number(process.pid));
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  await store.ensure({ digest, size: data.length }, async () => slow(data), {
    onProgress: () => {
      if (!announced) {
        announced = true;
        process.stdout.write('ready\n');
      }
    },
  });
}
