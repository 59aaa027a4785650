import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { z } from 'zod';
import { BerthError } from '../../src/core/errors.js';
import {
  describeConfig,
  describeSchema,
  PluginErrorCode,
  PluginRegistry,
  PluginSkipError,
  PluginType,
  skipPlugin,
  type InitContext,
  type PluginRegistryOptions,
  type Registration,
} from '../../src/core/plugin/index.js';

interface LogLine {
  level: number;
  msg: string;
  plugin?: string;
  status?: string;
  ms?: number;
  err?: { message: string };
}

/** A pino logger writing JSON lines into an array the test can read. */
function memoryLogger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { log, lines };
}

async function tempDirs(t: TestContext): Promise<{ root: string; state: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-plugin-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return { root: join(dir, 'root'), state: join(dir, 'state') };
}

/** A plugin whose init appends its key to `calls` and returns a closable instance. */
function plugin(
  calls: string[],
  type: PluginType,
  id: string,
  requires: PluginType[] = [],
  init?: (ctx: InitContext<unknown>) => unknown,
): Registration {
  return {
    type,
    id,
    requires,
    init: async (ctx) => {
      calls.push(`init ${type}.${id}`);
      if (init) return init(ctx);
      return { name: `${type}.${id}`, close: () => void calls.push(`close ${type}.${id}`) };
    },
  };
}

async function registry(
  t: TestContext,
  options: Partial<PluginRegistryOptions> & Pick<PluginRegistryOptions, 'registrations'>,
): Promise<{ reg: PluginRegistry; lines: LogLine[]; root: string; state: string }> {
  const { root, state } = await tempDirs(t);
  const { log, lines } = memoryLogger();
  const reg = new PluginRegistry({ root, state, log, ...options });
  t.after(() => reg.close());
  return { reg, lines, root, state };
}

function status(reg: PluginRegistry, key: string): unknown {
  return reg.records().find((r) => r.key === key)?.status;
}

async function rejection(promise: Promise<unknown>): Promise<BerthError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof BerthError, `expected a BerthError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a rejection');
}

describe('PluginRegistry', () => {
  it('initialises in dependency order and creates private dirs', async (t) => {
    const calls: string[] = [];
    const seen: Array<{ rootDir: string; stateDir: string; daemonRoot: string }> = [];
    const { reg, root, state, lines } = await registry(t, {
      registrations: [
        plugin(calls, PluginType.CRI, 'service', [PluginType.Runtime], (ctx) => {
          seen.push({ rootDir: ctx.rootDir, stateDir: ctx.stateDir, daemonRoot: ctx.daemonRoot });
          return {};
        }),
        plugin(calls, PluginType.Runtime, 'oci'),
      ],
    });
    await reg.init();

    assert.deepEqual(calls, ['init runtime.oci', 'init cri.service']);
    assert.deepEqual(
      reg.records().map((r) => [r.key, r.status.state]),
      [
        ['runtime.oci', 'ok'],
        ['cri.service', 'ok'],
      ],
    );
    assert.deepEqual(seen, [{ rootDir: join(root, 'cri.service'), stateDir: join(state, 'cri.service'), daemonRoot: root }]);
    for (const dir of [join(root, 'cri.service'), join(state, 'cri.service'), join(root, 'runtime.oci')]) {
      const st = await stat(dir);
      assert.ok(st.isDirectory());
      assert.equal(st.mode & 0o777, 0o700, dir);
    }
    assert.equal(typeof reg.records()[0]!.initMs, 'number');
    const ok = lines.filter((l) => l.status === 'ok').map((l) => [l.plugin, typeof l.ms]);
    assert.deepEqual(ok, [
      ['runtime.oci', 'number'],
      ['cri.service', 'number'],
    ]);
  });

  it('throws graph errors from the constructor, before any init', async (t) => {
    const calls: string[] = [];
    const { root, state } = await tempDirs(t);
    const { log } = memoryLogger();
    assert.throws(
      () =>
        new PluginRegistry({
          root,
          state,
          log,
          registrations: [
            plugin(calls, PluginType.Content, 'local'),
            plugin(calls, PluginType.CRI, 'service', [PluginType.Runtime]),
            plugin(calls, PluginType.Runtime, 'oci', [PluginType.CRI]),
          ],
        }),
      { code: PluginErrorCode.Cycle, message: 'plugin dependency cycle: cri.service -> runtime.oci -> cri.service' },
    );
    assert.deepEqual(calls, []);
    await assert.rejects(stat(root), { code: 'ENOENT' });
  });

  it('rejects a required key that names no registration', async (t) => {
    const { root, state } = await tempDirs(t);
    const { log } = memoryLogger();
    assert.throws(
      () =>
        new PluginRegistry({
          root,
          state,
          log,
          required: ['runtime.oci', 'cri.typo'],
          registrations: [plugin([], PluginType.Runtime, 'oci')],
        }),
      { code: PluginErrorCode.Unknown, message: 'required plugins are not registered: cri.typo' },
    );
  });

  it('skips a disabled plugin and the plugins that depend on it', async (t) => {
    const calls: string[] = [];
    const { reg, root } = await registry(t, {
      disabled: ['network.cni'],
      registrations: [
        plugin(calls, PluginType.Network, 'cni'),
        plugin(calls, PluginType.CRI, 'service', [PluginType.Network]),
        plugin(calls, PluginType.GRPC, 'server', [PluginType.CRI]),
        plugin(calls, PluginType.Runtime, 'oci'),
      ],
    });
    await reg.init();

    assert.deepEqual(calls, ['init runtime.oci']);
    assert.deepEqual(status(reg, 'network.cni'), { state: 'skipped', reason: 'disabled by config' });
    assert.deepEqual(status(reg, 'cri.service'), {
      state: 'skipped',
      reason: 'requires network, but network.cni skipped: disabled by config',
    });
    assert.deepEqual(status(reg, 'grpc.server'), {
      state: 'skipped',
      reason: 'requires cri, but cri.service skipped: requires network, but network.cni skipped: disabled by config',
    });
    await assert.rejects(stat(join(root, 'network.cni')), { code: 'ENOENT' });
  });

  it('records an init failure and skips its dependents', async (t) => {
    const calls: string[] = [];
    const { reg, lines } = await registry(t, {
      registrations: [
        plugin(calls, PluginType.Runtime, 'oci', [], () => {
          throw new Error('runc not found');
        }),
        plugin(calls, PluginType.CRI, 'service', [PluginType.Runtime]),
        plugin(calls, PluginType.Content, 'local'),
      ],
    });
    await reg.init();

    assert.deepEqual(calls, ['init runtime.oci', 'init content.local']);
    assert.deepEqual(status(reg, 'runtime.oci'), { state: 'failed', error: 'runc not found' });
    assert.deepEqual(status(reg, 'cri.service'), {
      state: 'skipped',
      reason: 'requires runtime, but runtime.oci failed: runc not found',
    });
    assert.deepEqual(status(reg, 'content.local'), { state: 'ok' });
    assert.equal(typeof reg.records().find((r) => r.key === 'runtime.oci')!.initMs, 'number');
    const failed = lines.find((l) => l.status === 'failed');
    assert.equal(failed?.plugin, 'runtime.oci');
    assert.equal(failed?.err?.message, 'runc not found');
  });

  it('records a plugin that skips itself as skipped', async (t) => {
    const calls: string[] = [];
    const { reg } = await registry(t, {
      registrations: [
        plugin(calls, PluginType.Snapshotter, 'overlayfs', [], () => skipPlugin('overlayfs is not supported on /var')),
        plugin(calls, PluginType.Snapshotter, 'native', [], () => {
          throw new PluginSkipError('not wanted');
        }),
      ],
    });
    await reg.init();
    assert.deepEqual(status(reg, 'snapshotter.overlayfs'), {
      state: 'skipped',
      reason: 'overlayfs is not supported on /var',
    });
    assert.deepEqual(status(reg, 'snapshotter.native'), { state: 'skipped', reason: 'not wanted' });
  });

  it('runs a plugin when at least one plugin of its required type is ok', async (t) => {
    const calls: string[] = [];
    let found: unknown[] = [];
    const { reg } = await registry(t, {
      registrations: [
        plugin(calls, PluginType.Snapshotter, 'overlayfs', [], () => skipPlugin('unsupported')),
        plugin(calls, PluginType.Snapshotter, 'native', [], () => ({ name: 'native' })),
        plugin(calls, PluginType.Images, 'store', [PluginType.Snapshotter], (ctx) => {
          found = [ctx.get(PluginType.Snapshotter), [...ctx.getAll(PluginType.Snapshotter).keys()]];
          return {};
        }),
      ],
    });
    await reg.init();
    assert.deepEqual(status(reg, 'images.store'), { state: 'ok' });
    assert.deepEqual(found, [{ name: 'native' }, ['native']]);
  });

  it('fails startup when a required plugin is not ok, after closing the others in reverse', async (t) => {
    const calls: string[] = [];
    const { reg } = await registry(t, {
      required: ['content.local', 'cri.service', 'network.cni'],
      disabled: ['network.cni'],
      registrations: [
        plugin(calls, PluginType.Content, 'local'),
        plugin(calls, PluginType.Metadata, 'sqlite', [PluginType.Content]),
        plugin(calls, PluginType.Runtime, 'oci'),
        plugin(calls, PluginType.CRI, 'service', [PluginType.Runtime], () => {
          throw new Error('boom');
        }),
        plugin(calls, PluginType.Network, 'cni'),
      ],
    });
    const err = await rejection(reg.init());
    assert.equal(err.code, PluginErrorCode.Required);
    assert.equal(err.kind, 'failed-precondition');
    assert.equal(
      err.message,
      'required plugins did not start: cri.service failed: boom; network.cni skipped: disabled by config',
    );
    assert.deepEqual(calls, [
      'init content.local',
      'init metadata.sqlite',
      'init runtime.oci',
      'init cri.service',
      'close runtime.oci',
      'close metadata.sqlite',
      'close content.local',
    ]);
  });

  it('decodes the config section with defaults and reports invalid sections by path', async (t) => {
    const schema = z.object({
      mount_options: z.array(z.string()).default(['index=off']).describe('overlay mount options'),
      sync_remove: z.boolean().default(false).describe('wait for removal'),
    });
    const configs: Record<string, unknown> = {};
    const registrations: Registration[] = [PluginType.Snapshotter, PluginType.Content, PluginType.Diff].map(
      (type): Registration<z.infer<typeof schema>> => ({
        type,
        id: 'x',
        config: schema,
        init: (ctx) => {
          configs[`${type}.x`] = ctx.config;
          return {};
        },
      }),
    );
    const { reg } = await registry(t, {
      registrations,
      pluginConfig: {
        'content.x': { sync_remove: true },
        'diff.x': { mount_options: ['ok', 7], sync_remove: 'yes' },
      },
    });
    await reg.init();

    assert.deepEqual(configs, {
      'snapshotter.x': { mount_options: ['index=off'], sync_remove: false },
      'content.x': { mount_options: ['index=off'], sync_remove: true },
    });
    const failed = status(reg, 'diff.x') as { state: string; error: string };
    assert.equal(failed.state, 'failed');
    assert.match(failed.error, /^invalid config \[plugins\."diff\.x"\]: /);
    assert.match(failed.error, /mount_options\.1: Invalid input: expected string, received number/);
    assert.match(failed.error, /sync_remove: Invalid input: expected boolean, received string/);
  });

  it('limits lookups to the types a plugin declares in requires', async (t) => {
    const calls: string[] = [];
    const { reg } = await registry(t, {
      registrations: [
        plugin(calls, PluginType.Network, 'cni', [], () => ({ name: 'cni' })),
        plugin(calls, PluginType.Runtime, 'oci', [], () => ({ name: 'oci' })),
        plugin(calls, PluginType.CRI, 'service', [PluginType.Runtime], (ctx) => ctx.get(PluginType.Network)),
        plugin(calls, PluginType.GRPC, 'server', [PluginType.Runtime], (ctx) =>
          ctx.getById(PluginType.Runtime, 'oci'),
        ),
      ],
    });
    await reg.init();
    assert.deepEqual(status(reg, 'cri.service'), {
      state: 'failed',
      error: 'plugin cri.service looked up type "network" without declaring it in requires',
    });
    assert.deepEqual(status(reg, 'grpc.server'), { state: 'ok' });
    assert.deepEqual(reg.get(PluginType.GRPC), { name: 'oci' });
  });

  it('answers lookups with ok plugins only, in init order', async (t) => {
    const calls: string[] = [];
    const { reg } = await registry(t, {
      registrations: [
        plugin(calls, PluginType.Snapshotter, 'overlayfs', [], () => ({ name: 'overlayfs' })),
        plugin(calls, PluginType.Snapshotter, 'broken', [], () => {
          throw new Error('bad');
        }),
        plugin(calls, PluginType.Snapshotter, 'native', [], () => ({ name: 'native' })),
      ],
    });
    await reg.init();
    assert.deepEqual([...reg.getAll(PluginType.Snapshotter).entries()], [
      ['overlayfs', { name: 'overlayfs' }],
      ['native', { name: 'native' }],
    ]);
    assert.deepEqual(reg.getById(PluginType.Snapshotter, 'native'), { name: 'native' });
    assert.throws(() => reg.get(PluginType.Snapshotter), {
      code: PluginErrorCode.Ambiguous,
      message: /snapshotter\.overlayfs, snapshotter\.native/,
    });
    assert.throws(() => reg.getById(PluginType.Snapshotter, 'broken'), {
      code: PluginErrorCode.NotFound,
      message: 'plugin snapshotter.broken is not available (failed: bad)',
    });
    assert.throws(() => reg.get(PluginType.Network), { code: PluginErrorCode.NotFound, kind: 'not-found' });
    assert.equal(reg.getAll(PluginType.Network).size, 0);
  });

  it('publishes merged meta and shows earlier records to later plugins', async (t) => {
    const calls: string[] = [];
    let seenKeys: string[] = [];
    const { reg, root } = await registry(t, {
      registrations: [
        plugin(calls, PluginType.Content, 'local', [], (ctx) => {
          ctx.meta({ exports: { root: ctx.rootDir }, capabilities: ['a'] });
          ctx.meta({ exports: { version: '1' }, capabilities: ['a', 'b'], platforms: ['linux/amd64'] });
          return {};
        }),
        plugin(calls, PluginType.Metadata, 'sqlite', [PluginType.Content], (ctx) => {
          seenKeys = ctx.records().map((r) => `${r.key}:${r.status.state}`);
          return {};
        }),
      ],
    });
    await reg.init();
    const content = reg.records().find((r) => r.key === 'content.local')!;
    assert.deepEqual(content.meta, {
      exports: { root: join(root, 'content.local'), version: '1' },
      capabilities: ['a', 'b'],
      platforms: ['linux/amd64'],
    });
    assert.deepEqual(seenKeys, ['content.local:ok']);
  });

  it('closes in reverse init order, past a throwing or hanging close, once', async (t) => {
    const calls: string[] = [];
    const { reg, lines } = await registry(t, {
      closeTimeoutMs: 50,
      registrations: [
        plugin(calls, PluginType.Content, 'local'),
        plugin(calls, PluginType.Metadata, 'sqlite', [], () => ({
          close: () => {
            calls.push('close metadata.sqlite');
            throw new Error('db busy');
          },
        })),
        plugin(calls, PluginType.Events, 'exchange', [], () => ({ plain: true })),
        plugin(calls, PluginType.GC, 'scheduler', [], () => ({
          close: () => {
            calls.push('close gc.scheduler');
            return new Promise<void>(() => {});
          },
        })),
        plugin(calls, PluginType.Runtime, 'oci', [], () => {
          throw new Error('no runc');
        }),
        plugin(calls, PluginType.CRI, 'service'),
      ],
    });
    await reg.init();
    calls.length = 0;
    await reg.close();
    await reg.close();
    assert.deepEqual(calls, ['close cri.service', 'close gc.scheduler', 'close metadata.sqlite', 'close content.local']);
    const errors = lines.filter((l) => l.msg === 'plugin close failed').map((l) => [l.plugin, l.err?.message]);
    assert.deepEqual(errors, [
      ['gc.scheduler', 'close of gc.scheduler took over 50 ms'],
      ['metadata.sqlite', 'db busy'],
    ]);
    await assert.rejects(reg.init(), { code: PluginErrorCode.RegistryState });
  });

  it('refuses to init twice', async (t) => {
    const { reg } = await registry(t, { registrations: [plugin([], PluginType.Content, 'local')] });
    await reg.init();
    await assert.rejects(reg.init(), { code: PluginErrorCode.RegistryState });
  });
});

describe('describeConfig', () => {
  it('lists fields with their defaults and descriptions', () => {
    const registrations: Registration[] = [
      { type: PluginType.Content, id: 'local', init: () => ({}) },
      {
        type: PluginType.Snapshotter,
        id: 'overlayfs',
        config: z.object({
          mount_options: z.array(z.string()).default(() => ['index=off']).describe('extra overlay mount options'),
          upperdir_label: z.boolean().describe('label the upper dir').default(false),
          root_path: z.string().default('').meta({ description: 'where layers live' }),
        }),
        init: () => ({}),
      },
    ];
    assert.deepEqual(describeConfig(registrations), [
      {
        key: 'snapshotter.overlayfs',
        fields: [
          { name: 'mount_options', defaultValue: ['index=off'], description: 'extra overlay mount options' },
          { name: 'upperdir_label', defaultValue: false, description: 'label the upper dir' },
          { name: 'root_path', defaultValue: '', description: 'where layers live' },
        ],
      },
    ]);
  });

  it('describes nested object fields with defaults from the outer default', () => {
    const schema = z.object({
      grpc: z
        .object({
          address: z.string().describe('socket path'),
          max_recv: z.number().default(16).describe('max message size, MiB'),
        })
        .default({ address: '/run/berth/berth.sock', max_recv: 16 })
        .describe('gRPC server'),
      debug: z.boolean().default(false).describe('debug'),
    });
    assert.deepEqual(describeSchema(schema), [
      {
        name: 'grpc',
        defaultValue: { address: '/run/berth/berth.sock', max_recv: 16 },
        description: 'gRPC server',
        fields: [
          { name: 'address', defaultValue: '/run/berth/berth.sock', description: 'socket path' },
          { name: 'max_recv', defaultValue: 16, description: 'max message size, MiB' },
        ],
      },
      { name: 'debug', defaultValue: false, description: 'debug' },
    ]);
  });

  it('rejects a schema with fields lacking a default', () => {
    const registrations: Registration[] = [
      {
        type: PluginType.GC,
        id: 'scheduler',
        config: z.object({ pause: z.number().describe('pause'), ok: z.boolean().default(true) }),
        init: () => ({}),
      },
    ];
    assert.throws(() => describeConfig(registrations), {
      code: PluginErrorCode.ConfigSchema,
      message: 'config schema of gc.scheduler has fields without a usable default: pause',
    });
  });
});
