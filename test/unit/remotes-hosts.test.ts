// Registry host configuration: containerd's hosts.toml layout (order of mirrors, capabilities, TLS file
// paths relative to the host dir, header, override_path, _default, host_port_ dirs, certs.d fallback),
// the daemon's inline equivalent, and the defaults (docker.io API host, plain HTTP for loopback).

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { isBerthError } from '../../src/core/errors.js';
import { RegistryHosts, endpointsFromConfig, hostsConfigFromSimple, isLoopbackHost, parseHostsToml } from '../../src/core/remotes/index.js';
import { writeHostsToml } from './remotes-helpers.js';

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'berth-remotes-hosts-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('defaults: docker.io goes to registry-1.docker.io over https; others to themselves', async () => {
  const hosts = new RegistryHosts();
  const [hub] = await hosts.endpoints('docker.io');
  assert.equal(hub?.scheme, 'https');
  assert.equal(hub?.host, 'registry-1.docker.io');
  assert.equal(hub?.path, '/v2');
  assert.equal(hub?.isMirror, false);
  assert.deepEqual(hub?.capabilities, ['pull', 'resolve', 'push']);
  const [quay] = await hosts.endpoints('quay.io');
  assert.equal(`${quay?.scheme}://${quay?.host}${quay?.path}`, 'https://quay.io/v2');
  assert.equal(quay?.tls.skipVerify, false);
});

test('loopback registries: plain HTTP on a port, HTTPS without verification on 443 or no port', async () => {
  const hosts = new RegistryHosts();
  for (const h of ['127.0.0.1:5000', 'localhost:5000', '[::1]:5000', '127.1.2.3:8080']) {
    const [ep] = await hosts.endpoints(h);
    assert.equal(ep?.scheme, 'http', h);
    assert.equal(ep?.host, h);
  }
  for (const h of ['localhost', '127.0.0.1:443']) {
    const [ep] = await hosts.endpoints(h);
    assert.equal(ep?.scheme, 'https', h);
    assert.equal(ep?.tls.skipVerify, true, h);
  }
  assert.equal(isLoopbackHost('128.0.0.1:5000'), false);
  assert.equal(isLoopbackHost('localhost.example.com'), false);
  assert.equal(isLoopbackHost('::1'), true);
});

test('hosts.toml: mirrors in file order, then the server; per-host settings; relative paths from the host dir', async () => {
  const root = path.join(tmp, 'full');
  const dir = await writeHostsToml(
    root,
    'registry.example.com:5000',
    `
server = "https://upstream.example.com"
ca = "upstream-ca.pem"
capabilities = ["pull", "resolve"]

[host."https://z-mirror.example.com"]
  capabilities = ["pull"]
  ca = ["/abs/ca1.pem", "rel/ca2.pem"]
  client = [["client.cert", "client.key"], "both.pem"]
  skip_verify = true
  dial_timeout = "1m30s"
  [host."https://z-mirror.example.com".header]
    x-one = "1"
    x-many = ["a", "b"]

[host."http://a-mirror.example.com:8080/custom/prefix"]
  override_path = true

[host."mirror.example.com/base"]
`,
  );
  const eps = await new RegistryHosts({ configPath: root }).endpoints('registry.example.com:5000');
  assert.deepEqual(
    eps.map((e) => `${e.scheme}://${e.host}${e.path}`),
    [
      'https://z-mirror.example.com/v2',
      'http://a-mirror.example.com:8080/custom/prefix',
      'https://mirror.example.com/base/v2',
      'https://upstream.example.com/v2',
    ],
  );
  const [z, a, , server] = eps;
  assert.deepEqual(z?.capabilities, ['pull']);
  assert.deepEqual(z?.tls.ca, ['/abs/ca1.pem', path.join(dir, 'rel/ca2.pem')]);
  assert.deepEqual(z?.tls.client, [{ cert: path.join(dir, 'client.cert'), key: path.join(dir, 'client.key') }, { cert: path.join(dir, 'both.pem') }]);
  assert.equal(z?.tls.skipVerify, true);
  assert.equal(z?.dialTimeoutMs, 90_000);
  assert.deepEqual(z?.header, { 'x-one': ['1'], 'x-many': ['a', 'b'] });
  assert.equal(z?.isMirror, true);
  assert.equal(z?.source, path.join(dir, 'hosts.toml'));
  assert.deepEqual(a?.capabilities, ['pull', 'resolve', 'push']);
  assert.equal(a?.tls.skipVerify, false);
  assert.deepEqual(server?.capabilities, ['pull', 'resolve']);
  assert.deepEqual(server?.tls.ca, [path.join(dir, 'upstream-ca.pem')]);
});

test('hosts.toml without server: the registry itself (registry-1.docker.io for docker.io) comes last', async () => {
  const root = path.join(tmp, 'noserver');
  await writeHostsToml(root, 'docker.io', `[host."https://mirror.local"]\n  capabilities = ["pull", "resolve"]\n`);
  const eps = await new RegistryHosts({ configPath: root }).endpoints('docker.io');
  assert.deepEqual(eps.map((e) => e.host), ['mirror.local', 'registry-1.docker.io']);
  assert.equal(eps[1]?.isMirror, false);
});

test('lookup order: host_port_ dir, host dir, inline config, _default dir, inline _default, built-in', async () => {
  const root = path.join(tmp, 'order');
  await writeHostsToml(root, '_default', 'server = "https://default-dir.example"\n');
  await writeHostsToml(root, 'withport_5000_', 'server = "https://underscore.example"\n');
  await writeHostsToml(root, 'plain.example', 'server = "https://plain-dir.example"\n');
  const hosts = new RegistryHosts({
    configPath: root,
    configs: {
      'plain.example': { mirrors: [], server: { url: 'https://inline-loses.example' } },
      'inline.example': { mirrors: [], server: { url: 'https://inline.example' } },
    },
  });
  const first = async (h: string) => (await hosts.endpoints(h)).at(-1)?.host;
  assert.equal(await first('withport:5000'), 'underscore.example');
  assert.equal(await first('plain.example'), 'plain-dir.example');
  assert.equal(await first('inline.example'), 'inline.example');
  assert.equal(await first('other.example'), 'default-dir.example');

  const noDir = new RegistryHosts({ configs: { _default: { mirrors: [{ url: 'https://all.example' }], server: {} } } });
  assert.deepEqual((await noDir.endpoints('x.example')).map((e) => e.host), ['all.example', 'x.example']);
  assert.deepEqual((await new RegistryHosts({ configPath: path.join(tmp, 'absent') }).endpoints('x.example')).map((e) => e.host), ['x.example']);
});

test('a host dir without hosts.toml uses Docker certs.d files', async () => {
  const root = path.join(tmp, 'certsd');
  const dir = path.join(root, 'secure.example');
  await mkdir(dir, { recursive: true });
  for (const f of ['ca.crt', 'client.cert', 'client.key', 'solo.cert', 'notes.txt']) await writeFile(path.join(dir, f), 'x');
  const [ep] = await new RegistryHosts({ configPath: root }).endpoints('secure.example');
  assert.equal(ep?.host, 'secure.example');
  assert.deepEqual(ep?.tls.ca, [path.join(dir, 'ca.crt')]);
  assert.deepEqual(ep?.tls.client, [{ cert: path.join(dir, 'client.cert'), key: path.join(dir, 'client.key') }, { cert: path.join(dir, 'solo.cert') }]);
});

test('bad hosts.toml: invalid-argument ERR_HOSTS_CONFIG naming the file and the problem', () => {
  const cases: [string, RegExp][] = [
    ['server = ', /invalid TOML \(line 1/],
    ['server = 5', /"server" must be a string/],
    ['[host."https://m"]\ncapabilities = ["pull", "fly"]', /unknown capability "fly"/],
    ['[host."https://m"]\nca = 3', /"ca" must be a string or a list/],
    ['[host."https://m"]\nclient = [["a"]]', /invalid "client" entry/],
    ['[host."https://m"]\nskip_verify = "yes"', /"skip_verify" must be a boolean/],
    ['[host."https://m"]\ndial_timeout = "soon"', /invalid dial_timeout "soon"/],
    ['[host."ftp://m"]', /must be http or https/],
  ];
  for (const [text, why] of cases) {
    assert.throws(
      () => endpointsFromConfig('r.example', parseHostsToml(text, '/etc/berth/certs.d/r.example')),
      (err: unknown) => {
        assert.ok(isBerthError(err));
        assert.equal(err.kind, 'invalid-argument');
        assert.equal(err.code, 'ERR_HOSTS_CONFIG');
        assert.match(err.message, /\/etc\/berth\/certs\.d\/r\.example\/hosts\.toml/);
        assert.match(err.message, why);
        return true;
      },
      text,
    );
  }
});

test('simple daemon settings: mirrors for pull/resolve, insecure means plain HTTP', () => {
  const eps = endpointsFromConfig('docker.io', hostsConfigFromSimple('docker.io', { mirrors: ['https://m1.example', 'http://m2.example:5000'] }), 'config');
  assert.deepEqual(eps.map((e) => `${e.scheme}://${e.host}${e.path}`), ['https://m1.example/v2', 'http://m2.example:5000/v2', 'https://registry-1.docker.io/v2']);
  assert.deepEqual(eps[0]?.capabilities, ['pull', 'resolve']);
  const insecure = endpointsFromConfig('reg.lan:5000', hostsConfigFromSimple('reg.lan:5000', { insecure: true }));
  assert.equal(insecure[0]?.scheme, 'http');
  assert.equal(insecure[0]?.host, 'reg.lan:5000');
  const skip = endpointsFromConfig('reg.lan', hostsConfigFromSimple('reg.lan', { skipVerify: true, ca: ['/x.pem'] }));
  assert.equal(skip[0]?.tls.skipVerify, true);
  assert.deepEqual(skip[0]?.tls.ca, ['/x.pem']);
});

test('a registry name that could escape the config dir is refused', async () => {
  await assert.rejects(new RegistryHosts({ configPath: tmp }).endpoints('../etc'), (err: unknown) => isBerthError(err) && err.kind === 'invalid-argument');
});
