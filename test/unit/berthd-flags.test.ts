import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BERTHD_V8_FLAGS, missingV8Flags } from '../../src/cmd/node-flags.js';

test('every berthd V8 flag is missing from a plain node', () => {
  assert.ok(BERTHD_V8_FLAGS.length > 0);
  assert.deepEqual(missingV8Flags([], undefined), [...BERTHD_V8_FLAGS]);
  assert.deepEqual(missingV8Flags(['--enable-source-maps'], '--no-warnings'), [...BERTHD_V8_FLAGS]);
});

test('a flag node already has, with any value or spelling, is not added again', () => {
  assert.deepEqual(missingV8Flags([...BERTHD_V8_FLAGS], undefined), []);
  assert.deepEqual(missingV8Flags(['--max-semi-space-size=16'], undefined), []);
  assert.deepEqual(missingV8Flags(['--max_semi_space_size=8'], undefined), []);
  assert.deepEqual(missingV8Flags([], '--inspect  --max-semi-space-size=4'), []);
  // A value that only looks like the flag is not one.
  assert.deepEqual(missingV8Flags(['--title=max-semi-space-size'], 'max-semi-space-size=2'), [...BERTHD_V8_FLAGS]);
});
