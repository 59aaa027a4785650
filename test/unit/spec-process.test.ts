import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_PATH_ENV, mergeEnv, processArgs, processCwd, processEnv } from '../../src/core/runtime/spec/process.js';
import type { ImageRunConfig } from '../../src/core/runtime/spec/types.js';

const image = (over: Partial<ImageRunConfig> = {}): ImageRunConfig => ({ env: [], entrypoint: [], cmd: [], ...over });

test('process args merge (table, Docker/containerd rules)', () => {
  const img = image({ entrypoint: ['/ep'], cmd: ['c1', 'c2'] });
  const rows: { name: string; command: string[]; args: string[]; image: ImageRunConfig; want: string[] }[] = [
    { name: 'image only', command: [], args: [], image: img, want: ['/ep', 'c1', 'c2'] },
    { name: 'args replace cmd', command: [], args: ['a'], image: img, want: ['/ep', 'a'] },
    { name: 'command replaces entrypoint and drops cmd', command: ['/x'], args: [], image: img, want: ['/x'] },
    { name: 'command and args', command: ['/x'], args: ['y'], image: img, want: ['/x', 'y'] },
    { name: 'no entrypoint: cmd', command: [], args: [], image: image({ cmd: ['/bin/sh'] }), want: ['/bin/sh'] },
    { name: 'no entrypoint: args alone', command: [], args: ['/bin/true'], image: image({ cmd: ['/bin/sh'] }), want: ['/bin/true'] },
    { name: 'entrypoint [""] is none', command: [], args: [], image: image({ entrypoint: [''], cmd: ['/c'] }), want: ['/c'] },
  ];
  for (const r of rows) assert.deepEqual(processArgs(r.command, r.args, r.image), r.want, r.name);
  assert.throws(() => processArgs([], [], image()), { code: 'ERR_SPEC_NO_COMMAND' });
});

test('mergeEnv replaces by key in place, appends new keys, and a bare key unsets', () => {
  assert.deepEqual(mergeEnv(['A=1', 'B=2'], ['B=3', 'C=4']), ['A=1', 'B=3', 'C=4']);
  assert.deepEqual(mergeEnv(['A=1', 'B=2'], ['A']), ['B=2']);
  assert.deepEqual(mergeEnv(['A=1'], ['A', 'A=5']), ['A=5']);
  assert.deepEqual(mergeEnv([], ['X=a=b']), ['X=a=b']);
  assert.deepEqual(mergeEnv(['A=1'], ['Z']), ['A=1']);
});

test('env order: PATH, TERM, HOSTNAME, image env, CRI envs (later wins)', () => {
  const env = processEnv({
    hostname: 'pod-a',
    tty: true,
    image: image({ env: ['PATH=/img/bin', 'LANG=C', 'FOO=image'] }),
    envs: [
      { key: 'FOO', value: Buffer.from('cri') },
      { key: 'NEW', value: Buffer.from('välue') },
    ],
  });
  assert.deepEqual(env, ['PATH=/img/bin', 'TERM=xterm', 'HOSTNAME=pod-a', 'LANG=C', 'FOO=cri', 'NEW=välue']);
  const plain = processEnv({ hostname: 'h', tty: false, image: image(), envs: [] });
  assert.deepEqual(plain, [DEFAULT_PATH_ENV, 'HOSTNAME=h']);
  const overrideHost = processEnv({ hostname: 'h', tty: false, image: image(), envs: [{ key: 'HOSTNAME', value: Buffer.from('x') }] });
  assert.deepEqual(overrideHost, [DEFAULT_PATH_ENV, 'HOSTNAME=x']);
});

test('cwd: CRI working_dir, else image WorkingDir, else /', () => {
  assert.equal(processCwd('/work', image({ workingDir: '/img' })), '/work');
  assert.equal(processCwd('', image({ workingDir: '/img' })), '/img');
  assert.equal(processCwd('', image({ workingDir: 'rel' })), '/rel');
  assert.equal(processCwd('', image()), '/');
  assert.equal(processCwd('/a/../b/', image()), '/b/');
  assert.throws(() => processCwd('relative', image()), { code: 'ERR_SPEC_CWD' });
});
