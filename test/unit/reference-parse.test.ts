import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseReference } from '../../src/core/remotes/reference.js';
import { isBerthError } from '../../src/core/errors.js';

const D256 = 'sha256:' + 'a'.repeat(64);
const D512 = 'sha512:' + 'b'.repeat(128);

// [input, full string, domain, path, tag, digest]
const valid: [string, string, string, string, string | undefined, string | undefined][] = [
  ['busybox', 'docker.io/library/busybox:latest', 'docker.io', 'library/busybox', 'latest', undefined],
  ['busybox:1.36', 'docker.io/library/busybox:1.36', 'docker.io', 'library/busybox', '1.36', undefined],
  ['user/img', 'docker.io/user/img:latest', 'docker.io', 'user/img', 'latest', undefined],
  ['docker.io/busybox', 'docker.io/library/busybox:latest', 'docker.io', 'library/busybox', 'latest', undefined],
  ['index.docker.io/user/img:v1', 'docker.io/user/img:v1', 'docker.io', 'user/img', 'v1', undefined],
  ['docker.io/library/busybox', 'docker.io/library/busybox:latest', 'docker.io', 'library/busybox', 'latest', undefined],
  ['quay.io/a/b/c:t', 'quay.io/a/b/c:t', 'quay.io', 'a/b/c', 't', undefined],
  ['localhost/app', 'localhost/app:latest', 'localhost', 'app', 'latest', undefined],
  ['localhost:5000/app:dev', 'localhost:5000/app:dev', 'localhost:5000', 'app', 'dev', undefined],
  ['127.0.0.1:5000/ns/app', '127.0.0.1:5000/ns/app:latest', '127.0.0.1:5000', 'ns/app', 'latest', undefined],
  ['[::1]:5000/app', '[::1]:5000/app:latest', '[::1]:5000', 'app', 'latest', undefined],
  ['reg:5000/app', 'reg:5000/app:latest', 'reg:5000', 'app', 'latest', undefined],
  ['Upper/app', 'Upper/app:latest', 'Upper', 'app', 'latest', undefined],
  ['localhost:5000', 'docker.io/library/localhost:5000', 'docker.io', 'library/localhost', '5000', undefined],
  [`busybox@${D256}`, `docker.io/library/busybox@${D256}`, 'docker.io', 'library/busybox', undefined, D256],
  [`busybox:1.36@${D256}`, `docker.io/library/busybox:1.36@${D256}`, 'docker.io', 'library/busybox', '1.36', D256],
  [`r.example.com:443/a/b@${D512}`, `r.example.com:443/a/b@${D512}`, 'r.example.com:443', 'a/b', undefined, D512],
  ['a.b/x__y.z-q--r:T_a.g-1', 'a.b/x__y.z-q--r:T_a.g-1', 'a.b', 'x__y.z-q--r', 'T_a.g-1', undefined],
  ['img:' + 'x'.repeat(128), 'docker.io/library/img:' + 'x'.repeat(128), 'docker.io', 'library/img', 'x'.repeat(128), undefined],
];

test('valid references normalise like docker/distribution', () => {
  for (const [input, full, domain, path, tag, digest] of valid) {
    const ref = parseReference(input);
    assert.equal(ref.toString(), full, input);
    assert.equal(ref.domain, domain, input);
    assert.equal(ref.path, path, input);
    assert.equal(ref.tag, tag, input);
    assert.equal(ref.digest, digest, input);
    assert.equal(ref.name, `${domain}/${path}`, input);
  }
});

test('string forms: name with tag, name@digest, repository name, object', () => {
  const tagged = parseReference('busybox:1.36');
  assert.equal(tagged.nameWithTag(), 'docker.io/library/busybox:1.36');
  assert.equal(tagged.nameWithDigest(), undefined);
  assert.equal(tagged.object, '1.36');

  const both = parseReference(`localhost:5000/app:v2@${D256}`);
  assert.equal(both.nameWithTag(), 'localhost:5000/app:v2');
  assert.equal(both.nameWithDigest(), `localhost:5000/app@${D256}`);
  assert.equal(both.name, 'localhost:5000/app');
  assert.equal(both.object, D256);

  const pinned = parseReference(`app@${D256}`);
  assert.equal(pinned.nameWithTag(), 'docker.io/library/app:latest');
  assert.equal(pinned.withDigest('sha256:' + 'c'.repeat(64)).toString(), `docker.io/library/app@sha256:${'c'.repeat(64)}`);
});

const invalidRefs: [string, RegExp][] = [
  ['', /at least one component/],
  ['a'.repeat(64).replace(/a/g, 'f'), /64-byte hexadecimal/],
  ['Busybox', /must be lowercase/],
  ['docker.io/User/img', /must be lowercase/],
  ['busybox:', /invalid tag/],
  ['busybox:-bad', /invalid tag/],
  ['img:' + 'x'.repeat(129), /invalid tag/],
  ['busybox@sha256:abc', /invalid digest format/],
  ['busybox@sha256:' + 'A'.repeat(64), /invalid sha256 digest/],
  ['busybox@sha256:' + 'a'.repeat(63) + 'g', /invalid digest format|invalid sha256/],
  ['busybox@md5:' + 'a'.repeat(32), /unsupported digest algorithm/],
  ['busybox@sha256:' + 'a'.repeat(65), /invalid sha256 digest/],
  ['-bad/img', /invalid registry host|invalid repository/],
  ['bad-.com/img', /invalid registry host/],
  ['example.com/img_', /invalid repository name/],
  ['example.com/a//b', /invalid repository name/],
  ['example.com/', /at least one component/],
  ['a/b/c d', /invalid repository name|invalid tag/],
  ['x.io/' + 'a'.repeat(251), /not be more than 255/],
];

test('invalid references: BerthError invalid-argument ERR_INVALID_REFERENCE naming the input', () => {
  for (const [input, why] of invalidRefs) {
    assert.throws(
      () => parseReference(input),
      (err: unknown) => {
        assert.ok(isBerthError(err), input);
        assert.equal(err.kind, 'invalid-argument');
        assert.equal(err.code, 'ERR_INVALID_REFERENCE');
        assert.equal(err.context['reference'], input);
        assert.ok(err.message.includes(`"${input}"`), err.message);
        assert.match(err.message, why, input);
        return true;
      },
      input,
    );
  }
});

test('name length limit is exactly 255 characters', () => {
  const path = 'a'.repeat(255 - 'x.io/'.length);
  assert.equal(parseReference(`x.io/${path}`).name.length, 255);
  assert.throws(() => parseReference(`x.io/${path}a`), /255/);
});
