import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Capability } from '../../src/generated/api.js';
import {
  CAPABILITY_NAMES,
  DEFAULT_CAPABILITIES,
  capabilitiesFromMask,
  chooseCapabilities,
  normalizeCapability,
} from '../../src/core/runtime/spec/capabilities.js';
import { boundingMaskFromStatus, hostFacts } from '../../src/core/runtime/spec/host.js';

/** This host's bounding set: everything up to CAP_CHECKPOINT_RESTORE but CAP_SYS_RESOURCE. */
const HOST_MASK = '000001fffeffffff';
const HOST = capabilitiesFromMask(HOST_MASK);

test('capabilitiesFromMask maps bits to names', () => {
  assert.equal(HOST.length, 40);
  assert.ok(!HOST.includes('CAP_SYS_RESOURCE'));
  assert.ok(HOST.includes('CAP_CHECKPOINT_RESTORE'));
  assert.deepEqual(capabilitiesFromMask('0000000000000000'), []);
  assert.deepEqual(capabilitiesFromMask('5'), ['CAP_CHOWN', 'CAP_DAC_READ_SEARCH']);
  assert.deepEqual(capabilitiesFromMask('000001ffffffffff'), [...CAPABILITY_NAMES]);
  // Bits beyond the known names are not named.
  assert.deepEqual(capabilitiesFromMask('ffffffffffffffff'), [...CAPABILITY_NAMES]);
  assert.throws(() => capabilitiesFromMask('xyz'), { code: 'ERR_SPEC_CAPABILITY_MASK' });
});

test('boundingMaskFromStatus reads the CapBnd line', () => {
  const status = 'Name:\tnode\nCapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\n';
  assert.equal(boundingMaskFromStatus(status), HOST_MASK);
  assert.throws(() => boundingMaskFromStatus('Name:\tx\n'), { code: 'ERR_SPEC_HOST_FACTS' });
});

test('normalizeCapability accepts CRI and OCI spellings', () => {
  assert.equal(normalizeCapability('net_admin'), 'CAP_NET_ADMIN');
  assert.equal(normalizeCapability('NET_ADMIN'), 'CAP_NET_ADMIN');
  assert.equal(normalizeCapability('CAP_NET_ADMIN'), 'CAP_NET_ADMIN');
  assert.throws(() => normalizeCapability('FLY'), { code: 'ERR_SPEC_CAPABILITY_UNKNOWN', message: /FLY/ });
});

const cap = (add: string[], drop: string[], ambient: string[] = []) =>
  Capability.fromPartial({ addCapabilities: add, dropCapabilities: drop, addAmbientCapabilities: ambient });

test('capability rules (table)', () => {
  const rows: { name: string; req: Capability | undefined; privileged?: boolean; host?: string[]; main: string[]; ambient?: string[]; unavailable?: string[] }[] = [
    { name: 'nothing asked: default set', req: undefined, main: [...DEFAULT_CAPABILITIES] },
    { name: 'empty message: default set', req: cap([], []), main: [...DEFAULT_CAPABILITIES] },
    {
      name: 'add one',
      req: cap(['NET_ADMIN'], []),
      main: [...DEFAULT_CAPABILITIES, 'CAP_NET_ADMIN'],
    },
    {
      name: 'drop one',
      req: cap([], ['CHOWN']),
      main: DEFAULT_CAPABILITIES.filter((c) => c !== 'CAP_CHOWN'),
    },
    { name: 'drop ALL, add one', req: cap(['NET_BIND_SERVICE'], ['ALL']), main: ['CAP_NET_BIND_SERVICE'] },
    { name: 'drop ALL', req: cap([], ['all']), main: [] },
    {
      name: 'add ALL minus one: host set minus it',
      req: cap(['ALL'], ['CHOWN']),
      main: HOST.filter((c) => c !== 'CAP_CHOWN'),
    },
    {
      name: 'add ALL and drop ALL: drop wins, then adds',
      req: cap(['ALL', 'KILL'], ['ALL']),
      main: ['CAP_KILL'],
    },
    {
      name: 'a cap outside the host bounding set is left out and reported',
      req: cap(['SYS_RESOURCE'], []),
      main: [...DEFAULT_CAPABILITIES],
      unavailable: ['CAP_SYS_RESOURCE'],
    },
    { name: 'privileged: every host cap, add/drop ignored', req: cap([], ['ALL']), privileged: true, main: [...HOST] },
    {
      name: 'ambient adds go to every set',
      req: cap([], ['ALL'], ['NET_RAW']),
      main: ['CAP_NET_RAW'],
      ambient: ['CAP_NET_RAW'],
    },
    {
      name: 'host without a default cap',
      req: undefined,
      host: DEFAULT_CAPABILITIES.filter((c) => c !== 'CAP_MKNOD'),
      main: DEFAULT_CAPABILITIES.filter((c) => c !== 'CAP_MKNOD'),
      unavailable: [],
    },
  ];
  for (const row of rows) {
    const got = chooseCapabilities(row.req, row.privileged ?? false, row.host ?? HOST);
    const order = (l: string[]) => CAPABILITY_NAMES.filter((c) => l.includes(c));
    assert.deepEqual(got.caps.bounding, order(row.main), row.name);
    assert.deepEqual(got.caps.effective, order(row.main), row.name);
    assert.deepEqual(got.caps.permitted, order(row.main), row.name);
    assert.deepEqual(got.caps.ambient, row.ambient ?? [], row.name);
    assert.deepEqual(got.caps.inheritable, row.ambient ?? [], row.name);
    assert.deepEqual(got.unavailable, row.unavailable ?? [], row.name);
    assert.notEqual(got.caps.bounding, got.caps.effective, 'sets are separate arrays');
  }
});

test('an unknown capability name is an error', () => {
  assert.throws(() => chooseCapabilities(cap(['NOPE'], []), false, HOST), { code: 'ERR_SPEC_CAPABILITY_UNKNOWN' });
});

test('hostFacts agrees with /proc and statfs on this host', async () => {
  const facts = await hostFacts();
  const status = await readFile('/proc/self/status', 'utf8');
  assert.deepEqual(facts.capabilities, capabilitiesFromMask(boundingMaskFromStatus(status)));
  assert.equal(facts.oomScoreAdjFloor, Number((await readFile('/proc/self/oom_score_adj', 'utf8')).trim()));
  const fsType = execFileSync('stat', ['-f', '-c', '%T', '/sys/fs/cgroup'], { encoding: 'utf8' }).trim();
  assert.equal(facts.cgroupVersion, fsType === 'cgroup2fs' ? 2 : 1);
  if (facts.cgroupVersion === 1) assert.equal(facts.swapAccounting, existsSync('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes'));
  assert.equal(facts.apparmor, existsSync('/sys/module/apparmor/parameters/enabled') && readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8').trim() === 'Y');
});
