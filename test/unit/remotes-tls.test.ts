// The registry client against real docker-registry instances over TLS on loopback: a registry with a
// private CA and htpasswd Basic auth (the fixture's), and one that demands client certificates (same
// storage, started here). Covers CA trust from hosts.toml, skip_verify, Basic credentials in every CRI
// form, wrong or missing credentials, and client certificates.

import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildImage, file, pushImage, type Image } from '../fixtures/oci-image.js';
import { startRegistry, type RegistryHandle } from '../fixtures/registry.js';
import { RegistryHosts, type AuthConfig } from '../../src/core/remotes/index.js';
import { berthError, makePki, readAll, registryClients, startCustomRegistry, writeHostsToml, type Pki, type Stoppable } from './remotes-helpers.js';

const USER = 'berth';
const PASSWORD = 'correct horse:battery';

let tmp: string;
let reg: RegistryHandle;
let img: Image;
let ref: string;
const clients = registryClients();
const client = clients.client;

/** A hosts dir for the registry with `text` as hosts.toml and the CA copied in as ca.crt. */
async function hostsDir(name: string, text: string): Promise<RegistryHosts> {
  const root = path.join(tmp, name);
  const dir = await writeHostsToml(root, reg.host, text);
  if (reg.caFile) await copyFile(reg.caFile, path.join(dir, 'ca.crt'));
  return new RegistryHosts({ configPath: root });
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'berth-remotes-tls-'));
  reg = await startRegistry({ tls: { htpasswd: { user: USER, password: PASSWORD } } });
  img = await buildImage({ layers: [[file('/tls', 'over tls\n')]] });
  await pushImage(reg, 'secure/app', 'v1', img);
  ref = `${reg.host}/secure/app:v1`;
});

after(async () => {
  await clients.closeAll();
  await reg?.stop();
  await rm(tmp, { recursive: true, force: true });
});

const good: AuthConfig = { username: USER, password: PASSWORD };

describe('TLS registry with htpasswd auth', () => {
  test('without host config a loopback registry is spoken to in plain HTTP: the HTTPS server says so', async () => {
    await assert.rejects(
      client().resolve(ref, { auth: good }),
      berthError((e) => {
        assert.equal(e.code, 'ERR_REGISTRY_ERROR');
        assert.match(e.message, /400 Bad Request: Client sent an HTTP request to an HTTPS server/);
        assert.match(e.message, /set server = "https:\/\/127\.0\.0\.1:\d+"/);
      }),
    );
  });

  test('https without the CA: unavailable ERR_REGISTRY_TLS saying to configure ca or skip_verify', async () => {
    const hosts = await hostsDir('noca', `server = "https://${reg.host}"\n`);
    await assert.rejects(
      client({ hosts }).resolve(ref, { auth: good }),
      berthError((e) => {
        assert.equal(e.kind, 'unavailable');
        assert.equal(e.code, 'ERR_REGISTRY_TLS');
        assert.match(e.message, /TLS handshake with https:\/\/127\.0\.0\.1:\d+ failed/);
        assert.match(e.message, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN/);
        assert.match(e.message, /ca = "\.\.\."/);
        assert.match(e.message, /skip_verify = true/);
        assert.doesNotMatch(e.message, /Node\.js/);
      }),
    );
  });

  test('ca in hosts.toml (path relative to the host dir) + username/password: resolve and fetch', async () => {
    const hosts = await hostsDir('ca', `server = "https://${reg.host}"\nca = "ca.crt"\n`);
    const repo = client({ hosts }).repository(ref, { auth: good });
    const r = await repo.resolve();
    assert.equal(r.descriptor.digest, img.digest);
    assert.equal(r.endpoint.scheme, 'https');
    assert.ok((await repo.fetchManifest(r.descriptor)).equals(img.manifestBlob));
    assert.ok((await readAll(await repo.fetchBlob(img.configDescriptor))).equals(img.configBlob));
  });

  test('skip_verify = true works without the CA', async () => {
    const hosts = await hostsDir('skip', `server = "https://${reg.host}"\nskip_verify = true\n`);
    const r = await client({ hosts }).resolve(ref, { auth: good });
    assert.equal(r.descriptor.digest, img.digest);
  });

  test('credentials as base64 "auth", and from the daemon credentials callback', async () => {
    const hosts = await hostsDir('auth-forms', `server = "https://${reg.host}"\nca = "ca.crt"\n`);
    const auth = Buffer.from(`${USER}:${PASSWORD}`).toString('base64');
    assert.equal((await client({ hosts }).resolve(ref, { auth: { auth, serverAddress: reg.host } })).descriptor.digest, img.digest);
    const asked: string[] = [];
    const viaCallback = client({
      hosts,
      credentials: (registry) => {
        asked.push(registry);
        return good;
      },
    });
    assert.equal((await viaCallback.resolve(ref)).descriptor.digest, img.digest);
    assert.deepEqual(asked, [reg.host]);
  });

  test('no credentials: unauthenticated ERR_REGISTRY_UNAUTHORIZED naming the registry', async () => {
    const hosts = await hostsDir('nocreds', `server = "https://${reg.host}"\nca = "ca.crt"\n`);
    await assert.rejects(
      client({ hosts }).resolve(ref),
      berthError((e) => {
        assert.equal(e.kind, 'unauthenticated');
        assert.equal(e.code, 'ERR_REGISTRY_UNAUTHORIZED');
        assert.match(e.message, new RegExp(`registry ${reg.host}`));
        assert.match(e.message, /requires a username and password/);
      }),
    );
  });

  test('wrong password: unauthenticated, naming the user but never the password', async () => {
    const hosts = await hostsDir('wrongpw', `server = "https://${reg.host}"\nca = "ca.crt"\n`);
    const bad = 'not-the-password';
    await assert.rejects(
      client({ hosts }).resolve(ref, { auth: { username: USER, password: bad } }),
      berthError((e) => {
        assert.equal(e.kind, 'unauthenticated');
        assert.equal(e.code, 'ERR_REGISTRY_UNAUTHORIZED');
        assert.match(e.message, new RegExp(`registry ${reg.host}`));
        assert.match(e.message, /as user "berth"/);
        assert.match(e.message, /401 Unauthorized/);
        assert.ok(!e.message.includes(bad));
        assert.ok(!JSON.stringify(e.context).includes(bad));
      }),
    );
  });

  test('blob fetch with wrong credentials fails the same way', async () => {
    const hosts = await hostsDir('wrongpw-blob', `server = "https://${reg.host}"\nca = "ca.crt"\n`);
    await assert.rejects(
      client({ hosts }).repository(ref, { auth: { username: 'someone', password: 'x' } }).fetchBlob(img.configDescriptor),
      berthError((e) => assert.equal(e.code, 'ERR_REGISTRY_UNAUTHORIZED')),
    );
  });

  test('a CA file that cannot be read: ERR_HOSTS_CONFIG naming the file and hosts.toml', async () => {
    const hosts = await hostsDir('badca', `server = "https://${reg.host}"\nca = "missing.pem"\n`);
    await assert.rejects(
      client({ hosts }).resolve(ref, { auth: good }),
      berthError((e) => {
        assert.equal(e.code, 'ERR_HOSTS_CONFIG');
        assert.match(e.message, /missing\.pem/);
        assert.match(e.message, /hosts\.toml/);
      }),
    );
  });
});

describe('TLS registry requiring client certificates', () => {
  let pki: Pki;
  let mtls: Stoppable;
  before(async () => {
    pki = await makePki(path.join(tmp, 'pki'));
    // Serves the same storage the htpasswd registry was pushed to, without auth but with client certs.
    mtls = await startCustomRegistry({
      storage: path.join(reg.dir, 'storage'),
      dir: path.join(tmp, 'mtls'),
      tls: { cert: pki.serverCrt, key: pki.serverKey, clientCa: pki.caCrt },
    });
  });
  after(async () => {
    await mtls?.stop();
  });

  test('without a client certificate the handshake is refused', async () => {
    const hosts = new RegistryHosts({ configs: { [mtls.host]: { mirrors: [], server: { url: mtls.url, ca: [pki.caCrt] } } } });
    await assert.rejects(
      client({ hosts, attempts: 1 }).resolve(`${mtls.host}/secure/app:v1`),
      berthError((e) => assert.equal(e.kind, 'unavailable')),
    );
  });

  test('client = [[cert, key]] in hosts.toml: resolve and fetch', async () => {
    const root = path.join(tmp, 'mtls-hosts');
    const dir = await writeHostsToml(root, mtls.host, `server = "https://${mtls.host}"\nca = "ca.crt"\nclient = [["client.crt", "client.key"]]\n`);
    for (const f of ['ca.crt', 'client.crt', 'client.key']) await copyFile(path.join(pki.dir, f), path.join(dir, f));
    const repo = client({ hosts: new RegistryHosts({ configPath: root }) }).repository(`${mtls.host}/secure/app:v1`);
    const r = await repo.resolve();
    assert.equal(r.descriptor.digest, img.digest);
    assert.ok((await readAll(await repo.fetchBlob(img.configDescriptor))).equals(img.configBlob));
  });
});
