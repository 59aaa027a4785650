// Docker token auth end to end: a real docker-registry with `auth.token` (JWT ES256 checked against a CA
// bundle) and a small token server of our own on loopback. Anonymous tokens, username/password tokens,
// OAuth2 refresh_token grants for identity tokens, registry tokens sent as is, token caching per scope,
// and the refusals.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { buildImage, file, pushImage, type Image } from '../fixtures/oci-image.js';
import { startRegistry, type RegistryHandle } from '../fixtures/registry.js';
import { berthError, makePki, readAll, registryClients, startCustomRegistry, startTokenServer, type Stoppable, type TokenServer } from './remotes-helpers.js';

const SERVICE = 'berth-test-registry';
const ISSUER = 'berth-test-issuer';

let tmp: string;
let source: RegistryHandle;
let tokens: TokenServer;
let reg: Stoppable;
let img: Image;
const clients = registryClients();
const client = clients.client;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'berth-remotes-token-'));
  // Push through an open registry, then serve the same storage behind token auth.
  source = await startRegistry();
  img = await buildImage({ layers: [[file('/token', 'behind a token\n')]] });
  await pushImage(source, 'public/app', 'v1', img);
  await pushImage(source, 'private/app', 'v1', img);
  const pki = await makePki(path.join(tmp, 'pki'));
  tokens = await startTokenServer({
    pki,
    service: SERVICE,
    issuer: ISSUER,
    users: { alice: 'wonderland' },
    refreshTokens: { 'refresh-abc': 'alice' },
    anonymousPull: (repo) => repo.startsWith('public/'),
  });
  reg = await startCustomRegistry({
    storage: path.join(source.dir, 'storage'),
    dir: path.join(tmp, 'registry'),
    token: { realm: tokens.realm, service: SERVICE, issuer: ISSUER, rootCertBundle: pki.caCrt },
  });
});

beforeEach(() => {
  tokens.log.length = 0;
});

after(async () => {
  await clients.closeAll();
  await reg?.stop();
  await tokens?.stop();
  await source?.stop();
  await rm(tmp, { recursive: true, force: true });
});

test('anonymous token for a public repository; one token serves resolve and fetches', async () => {
  const repo = client().repository(`${reg.host}/public/app:v1`);
  const r = await repo.resolve();
  assert.equal(r.descriptor.digest, img.digest);
  assert.ok((await repo.fetchManifest(r.descriptor)).equals(img.manifestBlob));
  assert.ok((await readAll(await repo.fetchBlob(img.configDescriptor))).equals(img.configBlob));
  assert.deepEqual(tokens.log, ['GET user=anonymous scope=repository:public/app:pull']);
});

test('tokens are cached per scope across repositories of one client', async () => {
  const c = client();
  await c.resolve(`${reg.host}/public/app:v1`);
  await c.resolve(`${reg.host}/public/app@${img.digest}`);
  assert.equal(tokens.log.length, 1);
  await c.resolve(`${reg.host}/private/app:v1`, { auth: { username: 'alice', password: 'wonderland' } });
  assert.deepEqual(tokens.log, ['GET user=anonymous scope=repository:public/app:pull', 'GET user=alice scope=repository:private/app:pull']);
});

test('anonymous access to a private repository: unauthenticated after the registry refuses the token', async () => {
  await assert.rejects(
    client().resolve(`${reg.host}/private/app:v1`),
    berthError((e) => {
      assert.equal(e.kind, 'unauthenticated');
      assert.equal(e.code, 'ERR_REGISTRY_UNAUTHORIZED');
      assert.match(e.message, new RegExp(`registry ${reg.host}`));
      assert.match(e.message, /without credentials/);
    }),
  );
});

test('username/password: Basic auth to the token realm', async () => {
  const repo = client().repository(`${reg.host}/private/app:v1`, { auth: { username: 'alice', password: 'wonderland' } });
  const r = await repo.resolve();
  assert.equal(r.descriptor.digest, img.digest);
  assert.ok((await readAll(await repo.fetchBlob(img.configDescriptor))).equals(img.configBlob));
  assert.deepEqual(tokens.log, ['GET user=alice scope=repository:private/app:pull']);
});

test('wrong password: the token server refuses; unauthenticated naming user and token server, not the password', async () => {
  await assert.rejects(
    client().resolve(`${reg.host}/private/app:v1`, { auth: { username: 'alice', password: 'looking-glass' } }),
    berthError((e) => {
      assert.equal(e.kind, 'unauthenticated');
      assert.equal(e.code, 'ERR_REGISTRY_UNAUTHORIZED');
      assert.match(e.message, new RegExp(`token server http://${tokens.host} refused user "alice" \\(401\\)`));
      assert.match(e.message, /incorrect username or password/);
      assert.ok(!e.message.includes('looking-glass'));
    }),
  );
});

test('identity token: OAuth2 refresh_token grant by POST', async () => {
  const r = await client().resolve(`${reg.host}/private/app:v1`, { auth: { identityToken: 'refresh-abc' } });
  assert.equal(r.descriptor.digest, img.digest);
  assert.deepEqual(tokens.log, [`POST refresh=alice grant=refresh_token service=${SERVICE} scope=repository:private/app:pull`]);
});

test('a bad identity token is refused', async () => {
  await assert.rejects(
    client().resolve(`${reg.host}/private/app:v1`, { auth: { identityToken: 'stale' } }),
    berthError((e) => {
      assert.equal(e.code, 'ERR_REGISTRY_UNAUTHORIZED');
      assert.match(e.message, /refused the identity token/);
      assert.ok(!e.message.includes('stale'));
    }),
  );
});

test('registry token: sent as the Bearer token, the token server is not asked', async () => {
  const registryToken = tokens.mint('alice', 'private/app', ['pull']);
  const repo = client().repository(`${reg.host}/private/app:v1`, { auth: { registryToken } });
  assert.equal((await repo.resolve()).descriptor.digest, img.digest);
  assert.ok((await readAll(await repo.fetchBlob(img.configDescriptor))).equals(img.configBlob));
  assert.deepEqual(tokens.log, []);
});

test('a registry token for another repository is refused by the registry', async () => {
  const registryToken = tokens.mint('alice', 'public/app', ['pull']);
  await assert.rejects(
    client().resolve(`${reg.host}/private/app:v1`, { auth: { registryToken } }),
    berthError((e) => {
      assert.equal(e.kind, 'unauthenticated');
      assert.match(e.message, /with the given token/);
    }),
  );
});
