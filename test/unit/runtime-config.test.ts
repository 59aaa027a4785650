import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eventsExchangeRegistration, EventExchange } from '../../src/core/events/index.js';
import { PluginRegistry } from '../../src/core/plugin/index.js';
import { applyBaseSpec, loadBaseSpec, OciRuntime, runtimeConfigSchema, runtimeOciRegistration } from '../../src/core/runtime/index.js';
import type { OciSpec } from '../../src/core/runtime/spec/index.js';
import { code, CONMON, log, processesMentioning, RUNC } from './oci-helpers.js';
import { runtimeWorld, type RuntimeWorld } from './runtime-helpers.js';

const spec = (s: object): OciSpec => s as OciSpec;

describe('base spec merge', () => {
  const base = spec({
    ociVersion: '1.0.2',
    process: { env: ['FOO=base', 'PATH=/base'], rlimits: [{ type: 'RLIMIT_NOFILE', hard: 10, soft: 10 }], cwd: '/base', noNewPrivileges: true },
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: [] },
      { destination: '/extra', type: 'tmpfs', source: 'tmpfs', options: ['ro'] },
    ],
    annotations: { 'from.base': '1', shared: 'base' },
    linux: { sysctl: { 'net.ipv4.ip_forward': '0' }, maskedPaths: ['/base-masked'] },
  });
  const own = spec({
    ociVersion: '1.0.2',
    process: { env: ['PATH=/own', 'BAR=own'], args: ['sh'], cwd: '/own' },
    mounts: [{ destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid'] }],
    annotations: { shared: 'own' },
    linux: { sysctl: { 'kernel.shm_rmid_forced': '1' }, maskedPaths: ['/own-masked'] },
  });

  test('the generated spec wins, the base fills in, keyed lists are unions', () => {
    const m = applyBaseSpec(base, own) as any;
    assert.deepEqual(m.process.env, ['FOO=base', 'PATH=/own', 'BAR=own']);
    assert.equal(m.process.cwd, '/own');
    assert.equal(m.process.noNewPrivileges, true);
    assert.deepEqual(m.process.args, ['sh']);
    assert.deepEqual(m.process.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 10, soft: 10 }]);
    assert.deepEqual(
      m.mounts.map((x: any) => [x.destination, x.options]),
      [
        ['/extra', ['ro']],
        ['/proc', ['nosuid']],
      ],
    );
    assert.deepEqual(m.annotations, { 'from.base': '1', shared: 'own' });
    assert.deepEqual(m.linux.sysctl, { 'net.ipv4.ip_forward': '0', 'kernel.shm_rmid_forced': '1' });
    assert.deepEqual(m.linux.maskedPaths, ['/own-masked'], 'other lists are replaced');
  });

  test('applying the same base twice changes nothing, and neither input is modified', () => {
    const before = JSON.stringify([base, own]);
    const once = applyBaseSpec(base, own);
    assert.deepEqual(applyBaseSpec(base, once), once);
    assert.equal(JSON.stringify([base, own]), before);
    (once as any).mounts[0].options.push('changed');
    assert.deepEqual((base as any).mounts[1].options, ['ro']);
  });
});

describe('runtime config and start-up errors', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'runtime-config-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('defaults: one handler "runc" with binary "runc", conmon as the monitor', () => {
    const c = runtimeConfigSchema.parse({});
    assert.equal(c.default_runtime, 'runc');
    assert.equal(c.monitor_binary, 'conmon');
    assert.deepEqual(c.runtimes, { runc: { binary: 'runc', root: '', base_spec: '', options: {} } });
  });

  test('loadBaseSpec names the file for a missing, non-JSON or non-spec file', async () => {
    const missing = join(dir, 'missing.json');
    await assert.rejects(loadBaseSpec(missing, 'h'), (err) => {
      assert.equal(code(err), 'ERR_RUNTIME_BASE_SPEC');
      assert.ok((err as Error).message.includes(missing));
      assert.match((err as Error).message, /cannot read/);
      return true;
    });
    const cases: [string, RegExp][] = [
      ['{not json', /not valid JSON/],
      ['[1,2]', /not a JSON object/],
      ['{"process": {}}', /ociVersion/],
      ['{"ociVersion": "1.0.2", "mounts": {}}', /"mounts" is not an array/],
      ['{"ociVersion": "1.0.2", "process": []}', /"process" is not an object/],
    ];
    for (const [i, [text, why]] of cases.entries()) {
      const file = join(dir, `bad-${i}.json`);
      await writeFile(file, text);
      await assert.rejects(loadBaseSpec(file, 'h'), (err) => {
        assert.equal(code(err), 'ERR_RUNTIME_BASE_SPEC');
        assert.ok((err as Error).message.includes(file));
        assert.match((err as Error).message, why);
        return true;
      });
    }
  });

  test('OciRuntime.open refuses an unknown default, a missing binary, a bad handler name, a bad base spec', async () => {
    const open = (raw: object) =>
      OciRuntime.open({ config: runtimeConfigSchema.parse({ monitor_binary: CONMON, ...raw }), stateDir: join(dir, 'state'), events: new EventExchange(log), log });
    await assert.rejects(open({ default_runtime: 'crun' }), (err) => {
      assert.equal(code(err), 'ERR_RUNTIME_DEFAULT_UNKNOWN');
      assert.match((err as Error).message, /"crun".*runc/);
      return true;
    });
    await assert.rejects(open({ runtimes: { runc: { binary: 'no-such-runtime-binary' } } }), (err) => {
      assert.equal(code(err), 'ERR_RUNTIME_BINARY_NOT_FOUND');
      assert.match((err as Error).message, /no-such-runtime-binary.*PATH/);
      return true;
    });
    await assert.rejects(open({ monitor_binary: '/nonexistent/conmon' }), (err) => code(err) === 'ERR_RUNTIME_BINARY_NOT_FOUND');
    await assert.rejects(open({ default_runtime: 'Bad_Name', runtimes: { Bad_Name: { binary: RUNC } } }), (err) => code(err) === 'ERR_RUNTIME_HANDLER_NAME');
    await assert.rejects(open({ runtimes: { runc: { binary: RUNC, base_spec: join(dir, 'nope.json') } } }), (err) => {
      assert.equal(code(err), 'ERR_RUNTIME_BASE_SPEC');
      assert.ok((err as Error).message.includes(join(dir, 'nope.json')));
      return true;
    });
  });

  test('as a required plugin: a bad base spec fails start-up naming the file; a good config comes up', async () => {
    const bad = join(dir, 'broken-base.json');
    await writeFile(bad, '{"ociVersion": ');
    const registry = (config: object, sub: string) =>
      new PluginRegistry({
        registrations: [eventsExchangeRegistration, runtimeOciRegistration],
        root: join(dir, sub, 'root'),
        state: join(dir, sub, 'state'),
        log,
        required: ['runtime.oci'],
        pluginConfig: { 'runtime.oci': config },
      });
    const failing = registry({ monitor_binary: CONMON, runtimes: { runc: { binary: RUNC, base_spec: bad } } }, 'bad');
    await assert.rejects(failing.init(), (err) => {
      assert.equal(code(err), 'ERR_PLUGIN_REQUIRED');
      return true;
    });
    const rec = failing.records().find((r) => r.key === 'runtime.oci');
    assert.equal(rec?.status.state, 'failed');
    assert.ok(rec?.status.state === 'failed' && rec.status.error.includes(bad), JSON.stringify(rec?.status));

    const good = registry({ monitor_binary: CONMON, runtimes: { runc: { binary: RUNC } } }, 'good');
    await good.init();
    try {
      const r = good.records().find((x) => x.key === 'runtime.oci');
      assert.deepEqual(r?.status, { state: 'ok' });
      assert.equal(r?.meta.exports?.default_runtime, 'runc');
      assert.match(r?.meta.exports?.handlers ?? '', new RegExp(`runc=${RUNC} \\(root ${join(dir, 'good', 'state')}/runtime.oci/runc\\)`));
    } finally {
      await good.close();
    }
  });
});

describe('base spec applied to a real container', () => {
  let w: RuntimeWorld;
  before(async () => {
    w = await runtimeWorld();
  });
  after(async () => {
    await w.close();
    assert.deepEqual(await processesMentioning(w.fx.dir), []);
  });

  test('env, mounts and annotations come from the base; its oom_score_adj is clamped to berthd\'s own', async () => {
    const file = join(w.fx.dir, 'base.json');
    await writeFile(
      file,
      JSON.stringify({
        ociVersion: '1.0.2',
        process: { env: ['FOO=from-base', 'PATH=/nowhere'], oomScoreAdj: -999 },
        mounts: [{ destination: '/based', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'size=1m'] }],
        annotations: { 'example.com/base': 'yes' },
      }),
    );
    const config = w.config();
    config.runtimes.based = { binary: RUNC, root: '', base_spec: file, options: {} };
    const rt = await w.open(config);
    assert.equal(rt.baseSpec('based')?.annotations['example.com/base'], 'yes');
    assert.equal(rt.baseSpec('runc'), undefined);
    const b = await w.bundle('based', ['sleep', '60']);
    try {
      await rt.create({ id: 'based', handler: 'based', ...b, tty: false, stdin: false, stdinOnce: false });
      await rt.start('based');
      const written = JSON.parse(await readFile(join(b.bundle, 'config.json'), 'utf8')) as OciSpec;
      const floor = Number((await readFile('/proc/self/oom_score_adj', 'utf8')).trim());
      assert.equal(written.process.oomScoreAdj, Math.max(-999, floor));
      assert.equal(written.annotations['example.com/base'], 'yes');
      const r = await rt.exec('based', { cmd: ['sh', '-c', 'echo $FOO $PATH; grep -c " /based tmpfs" /proc/mounts'], timeoutSec: 10 });
      assert.equal(r.stderr.toString(), '');
      const [env, mounts] = r.stdout.toString().trim().split('\n');
      assert.match(env!, /^from-base \/usr\/local\/sbin:/, 'the generated PATH wins over the base one');
      assert.equal(mounts, '1');
    } finally {
      await rt.delete('based');
    }
  });
});
