// WWW-Authenticate parsing as registries send it (Docker Hub, distribution, GHCR, quay, ECR/ACR styles)
// and the CRI AuthConfig decoding.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isBerthError } from '../../src/core/errors.js';
import { credentialsFrom, parseWwwAuthenticate } from '../../src/core/remotes/index.js';

test('Bearer challenge with realm, service and scope (Docker Hub form)', () => {
  assert.deepEqual(
    parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'),
    [{ scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' } }],
  );
});

test('Basic challenge; scheme and parameter names are case-insensitive', () => {
  assert.deepEqual(parseWwwAuthenticate('Basic realm="berth-test"'), [{ scheme: 'basic', params: { realm: 'berth-test' } }]);
  assert.deepEqual(parseWwwAuthenticate('BEARER Realm="r", SERVICE=svc'), [{ scheme: 'bearer', params: { realm: 'r', service: 'svc' } }]);
});

test('quoted strings: escapes, commas and spaces inside; scope with several entries', () => {
  const [c] = parseWwwAuthenticate('Bearer realm="https://r.example/t?a=1,b=2", scope="repository:a/b:pull repository:c:pull,push", error="insufficient_scope", note="say \\"hi\\""');
  assert.deepEqual(c?.params, {
    realm: 'https://r.example/t?a=1,b=2',
    scope: 'repository:a/b:pull repository:c:pull,push',
    error: 'insufficient_scope',
    note: 'say "hi"',
  });
});

test('several challenges in one header and across headers', () => {
  const cs = parseWwwAuthenticate(['Negotiate abc123==, Basic realm="x", Bearer realm="https://t",service="s"', 'Custom']);
  assert.deepEqual(cs.map((c) => c.scheme), ['negotiate', 'basic', 'bearer', 'custom']);
  assert.deepEqual(cs[2]?.params, { realm: 'https://t', service: 's' });
  assert.deepEqual(cs[0]?.params, {});
});

test('odd but seen forms: spaces around "=", empty values, unterminated quote', () => {
  assert.deepEqual(parseWwwAuthenticate('Bearer realm = "r" , service=""')[0]?.params, { realm: 'r', service: '' });
  assert.deepEqual(parseWwwAuthenticate('Bearer realm="r", scope="unterminated'), [{ scheme: 'bearer', params: { realm: 'r' } }]);
  assert.deepEqual(parseWwwAuthenticate(''), []);
  assert.deepEqual(parseWwwAuthenticate(undefined), []);
  // The first value of a repeated parameter wins.
  assert.equal(parseWwwAuthenticate('Bearer realm="a", realm="b"')[0]?.params['realm'], 'a');
});

test('CRI AuthConfig: auth is decoded; empty fields dropped; bad auth refused', () => {
  assert.equal(credentialsFrom(undefined), undefined);
  assert.equal(credentialsFrom({ username: '', password: '', serverAddress: 'x' }), undefined);
  assert.deepEqual(credentialsFrom({ auth: Buffer.from('alice:pa:ss').toString('base64') }), { username: 'alice', password: 'pa:ss' });
  assert.deepEqual(credentialsFrom({ username: 'bob', password: 'pw', auth: Buffer.from('x:y').toString('base64') }), { username: 'bob', password: 'pw' });
  assert.deepEqual(credentialsFrom({ identityToken: 'refresh' }), { identityToken: 'refresh' });
  assert.deepEqual(credentialsFrom({ registryToken: 'tok' }), { registryToken: 'tok' });
  assert.throws(() => credentialsFrom({ auth: Buffer.from('nocolon').toString('base64') }), (e: unknown) => isBerthError(e) && e.code === 'ERR_INVALID_AUTH' && !/nocolon/.test(e.message));
});
