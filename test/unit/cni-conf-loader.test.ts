import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { loadConfDir, parseNetworkConfig } from '../../src/cni/conf-loader.js';
import { LOOPBACK_NETWORK_NAME, loopbackNetwork } from '../../src/cni/loopback.js';

/** A pino logger whose JSON lines land in `lines`. */
function captureLog(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: 'debug' }, sink), lines };
}

const conflist = (name: string, plugins: unknown[] = [{ type: 'bridge' }], extra: Record<string, unknown> = {}) =>
  JSON.stringify({ cniVersion: '1.0.0', name, plugins, ...extra });
const single = (name: string, type = 'bridge', extra: Record<string, unknown> = {}) =>
  JSON.stringify({ cniVersion: '0.4.0', name, type, ...extra });

describe('CNI conf loader', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'berth-cni-loader-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function confDir(files: Record<string, string>): Promise<string> {
    const dir = await mkdtemp(path.join(root, 'net.d-'));
    for (const [name, content] of Object.entries(files)) await writeFile(path.join(dir, name), content);
    return dir;
  }

  it('loads .conf, .conflist and .json files in lexical order and ignores other files and subdirs', async () => {
    const dir = await confDir({
      '30-c.json': conflist('c'),
      '10-a.conflist': conflist('a'),
      '20-b.conf': single('b'),
      '05-readme.txt': 'not a conf',
      '01-x.conf.bak': single('bak'),
      '00-old.conflist.swp': conflist('swp'),
      'B-upper.conf': single('upper'),
    });
    await mkdir(path.join(dir, '00-sub.conf'));
    await writeFile(path.join(dir, '00-sub.conf', 'inner.conf'), single('inner'));
    const { log, lines } = captureLog();
    const load = await loadConfDir(dir, { maxConfNum: 0, log });
    // Byte order: digits < upper case.
    assert.deepEqual(
      load.networks.map((n) => n.name),
      ['a', 'b', 'c', 'upper'],
    );
    assert.deepEqual(
      load.networks.map((n) => path.basename(n.file ?? '')),
      ['10-a.conflist', '20-b.conf', '30-c.json', 'B-upper.conf'],
    );
    assert.deepEqual(load.skipped, []);
    assert.equal(load.missing, false);
    assert.equal(lines.filter((l) => l['level'] === 40).length, 0);
  });

  it('skips invalid files with a warning naming the file and the reason, and loads the rest', async () => {
    const dir = await confDir({
      '01-badjson.conflist': '{"cniVersion": "1.0.0", "name": ',
      '02-noname.conflist': JSON.stringify({ cniVersion: '1.0.0', plugins: [{ type: 'bridge' }] }),
      '03-notype.conf': JSON.stringify({ cniVersion: '1.0.0', name: 'x' }),
      '04-noplugins.conflist': JSON.stringify({ cniVersion: '1.0.0', name: 'x' }),
      '05-empty.conflist': conflist('x', []),
      '06-version.conflist': JSON.stringify({ cniVersion: '9.9.9', name: 'x', plugins: [{ type: 'bridge' }] }),
      '07-pluginnotype.conflist': conflist('x', [{ type: 'bridge' }, { ipMasq: true }]),
      '08-listinconf.conf': conflist('x'),
      '09-array.json': '[1,2]',
      '10-badname.conflist': conflist('../etc'),
      '11-badcap.conflist': conflist('x', [{ type: 'portmap', capabilities: { portMappings: 'yes' } }]),
      '12-noversion.conflist': JSON.stringify({ name: 'x', plugins: [{ type: 'bridge' }] }),
      '50-good.conflist': conflist('good'),
    });
    const { log, lines } = captureLog();
    const load = await loadConfDir(dir, { maxConfNum: 1, log });
    assert.deepEqual(
      load.networks.map((n) => n.name),
      ['good'],
    );
    const reasons = new Map(load.skipped.map((s) => [path.basename(s.file), s.reason]));
    assert.equal(reasons.size, 12);
    assert.match(reasons.get('01-badjson.conflist') ?? '', /invalid JSON/);
    assert.match(reasons.get('02-noname.conflist') ?? '', /missing "name"/);
    assert.match(reasons.get('03-notype.conf') ?? '', /missing "type"/);
    assert.match(reasons.get('04-noplugins.conflist') ?? '', /missing "plugins"/);
    assert.match(reasons.get('05-empty.conflist') ?? '', /no plugins/);
    assert.match(reasons.get('06-version.conflist') ?? '', /unsupported cniVersion "9.9.9"/);
    assert.match(reasons.get('07-pluginnotype.conflist') ?? '', /plugin 1: missing "type"/);
    assert.match(reasons.get('08-listinconf.conf') ?? '', /\.conflist/);
    assert.match(reasons.get('09-array.json') ?? '', /not a JSON object/);
    assert.match(reasons.get('10-badname.conflist') ?? '', /invalid network name/);
    assert.match(reasons.get('11-badcap.conflist') ?? '', /capability "portMappings" must be a boolean/);
    assert.match(reasons.get('12-noversion.conflist') ?? '', /missing "cniVersion"/);
    const warns = lines.filter((l) => l['level'] === 40);
    assert.equal(warns.length, 12);
    for (const w of warns) {
      assert.equal(typeof w['file'], 'string');
      assert.ok(String(w['msg']).includes(String(w['file'])), 'warn message names the file');
      assert.equal(typeof w['reason'], 'string');
    }
  });

  it('stops at max_conf_num networks, counting only valid ones; 0 loads all', async () => {
    const dir = await confDir({
      '10-a.conflist': conflist('a'),
      '15-bad.conflist': '{',
      '20-b.conflist': conflist('b'),
      '30-c.conflist': conflist('c'),
    });
    const { log } = captureLog();
    assert.deepEqual(
      (await loadConfDir(dir, { maxConfNum: 1, log })).networks.map((n) => n.name),
      ['a'],
    );
    assert.deepEqual(
      (await loadConfDir(dir, { maxConfNum: 2, log })).networks.map((n) => n.name),
      ['a', 'b'],
    );
    assert.deepEqual(
      (await loadConfDir(dir, { maxConfNum: 0, log })).networks.map((n) => n.name),
      ['a', 'b', 'c'],
    );
    // With one network wanted, files after the first valid one are not even read.
    assert.deepEqual((await loadConfDir(dir, { maxConfNum: 1, log })).skipped, []);
  });

  it('turns a .conf into a one-plugin list with its name and cniVersion, keeping the raw config', async () => {
    const content = single('mynet', 'bridge', { bridge: 'cni0', ipam: { type: 'host-local', subnet: '10.1.0.0/24' } });
    const dir = await confDir({ '10-mynet.conf': content });
    const { log } = captureLog();
    const [net] = (await loadConfDir(dir, { maxConfNum: 1, log })).networks;
    assert.ok(net);
    assert.equal(net.name, 'mynet');
    assert.equal(net.cniVersion, '0.4.0');
    assert.equal(net.disableCheck, false);
    assert.equal(net.file, path.join(dir, '10-mynet.conf'));
    assert.equal(net.bytes.toString('utf8'), content);
    assert.deepEqual(net.raw, JSON.parse(content));
    assert.equal(net.plugins.length, 1);
    assert.equal(net.plugins[0]?.type, 'bridge');
    assert.deepEqual(net.plugins[0]?.conf, JSON.parse(content));
    assert.ok(Object.isFrozen(net.plugins[0]?.conf));
  });

  it('reads a .json as a list when it has plugins, else as a single config', async () => {
    const dir = await confDir({
      '10-list.json': conflist('listy', [{ type: 'bridge' }, { type: 'portmap' }]),
      '20-single.json': single('singly', 'ptp'),
    });
    const { log } = captureLog();
    const load = await loadConfDir(dir, { maxConfNum: 0, log });
    assert.deepEqual(
      load.networks.map((n) => [n.name, n.plugins.map((p) => p.type)]),
      [
        ['listy', ['bridge', 'portmap']],
        ['singly', ['ptp']],
      ],
    );
  });

  it('extracts the capabilities each plugin declares true, and disableCheck', async () => {
    const dir = await confDir({
      '10-caps.conflist': conflist(
        'caps',
        [
          { type: 'bridge', capabilities: { ips: true, mac: false } },
          { type: 'portmap', capabilities: { portMappings: true } },
          { type: 'bandwidth', capabilities: { bandwidth: true } },
          { type: 'tuning' },
        ],
        { disableCheck: 'True' },
      ),
    });
    const { log } = captureLog();
    const [net] = (await loadConfDir(dir, { maxConfNum: 1, log })).networks;
    assert.ok(net);
    assert.deepEqual(
      net.plugins.map((p) => [p.type, p.capabilities]),
      [
        ['bridge', ['ips']],
        ['portmap', ['portMappings']],
        ['bandwidth', ['bandwidth']],
        ['tuning', []],
      ],
    );
    assert.equal(net.disableCheck, true);
  });

  it('picks the highest supported version from cniVersions', () => {
    const outcome = parseNetworkConfig(
      Buffer.from(JSON.stringify({ cniVersion: '0.4.0', cniVersions: ['1.0.0', '7.0.0', '0.3.1'], name: 'v', plugins: [{ type: 'x' }] })),
      'list',
    );
    assert.ok(outcome.ok);
    assert.equal(outcome.network.cniVersion, '1.0.0');
  });

  it('reports a missing dir as missing, not as an error', async () => {
    const { log, lines } = captureLog();
    const load = await loadConfDir(path.join(root, 'does-not-exist'), { maxConfNum: 1, log });
    assert.equal(load.missing, true);
    assert.equal(load.readError, undefined);
    assert.deepEqual(load.networks, []);
    assert.equal(lines.length, 0);
  });

  it('reports an unreadable dir (a file in its place) as a read error', async () => {
    const file = path.join(root, 'plain-file');
    await writeFile(file, 'x');
    const { log } = captureLog();
    const load = await loadConfDir(file, { maxConfNum: 1, log });
    assert.equal(load.missing, false);
    assert.match(load.readError ?? '', /ENOTDIR/);
  });

  it('provides the built-in loopback network', () => {
    assert.equal(loopbackNetwork.name, LOOPBACK_NETWORK_NAME);
    assert.equal(loopbackNetwork.name, 'cni-loopback');
    assert.equal(loopbackNetwork.cniVersion, '1.0.0');
    assert.deepEqual(
      loopbackNetwork.plugins.map((p) => p.type),
      ['loopback'],
    );
    assert.equal(loopbackNetwork.file, undefined);
  });
});
