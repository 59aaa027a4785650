import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SupplementalGroupsPolicy } from '../../src/generated/api.js';
import { parseGroup, parsePasswd, readRootfsFile, resolveInRoot, rootfsPasswd } from '../../src/core/runtime/spec/passwd.js';
import { criUserString, resolveUser, resolveUserString, type UserRequest } from '../../src/core/runtime/spec/user.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'berth-spec-user-'));
  dirs.push(d);
  return d;
}

const PASSWD = `root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:App:/home/app:/bin/sh
broken:x:notanumber:0::/:/bin/sh
nogroup-user:x:1001:4242::/:/bin/sh
+nis
`;
const GROUP = `root:x:0:root
wheel:x:10:root,app
app:x:1000:app
audio:x:29:app, daemon
video:x:44:
bad:x::app
`;

async function rootfs(files: Record<string, string> = { 'etc/passwd': PASSWD, 'etc/group': GROUP }): Promise<string> {
  const root = path.join(await tempDir(), 'rootfs');
  await mkdir(path.join(root, 'etc'), { recursive: true });
  for (const [name, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(root, name)), { recursive: true });
    await writeFile(path.join(root, name), text);
  }
  return root;
}

test('parsePasswd and parseGroup skip comments, NIS entries and malformed ids', () => {
  const users = parsePasswd(PASSWD);
  assert.deepEqual(
    users.map((u) => [u.name, u.uid, u.gid]),
    [
      ['root', 0, 0],
      ['daemon', 1, 1],
      ['app', 1000, 1000],
      ['nogroup-user', 1001, 4242],
    ],
  );
  const groups = parseGroup(GROUP);
  assert.deepEqual(
    groups.map((g) => [g.name, g.gid, g.members]),
    [
      ['root', 0, ['root']],
      ['wheel', 10, ['root', 'app']],
      ['app', 1000, ['app']],
      ['audio', 29, ['app', 'daemon']],
      ['video', 44, []],
    ],
  );
});

test('resolveInRoot keeps symlinks inside the rootfs', async () => {
  const root = await rootfs();
  const outside = await tempDir();
  await writeFile(path.join(outside, 'secret'), 'root:x:0:0::/:/bin/sh\nsecret:x:7:7::/:/bin/sh\n');
  await mkdir(path.join(root, 'usr/lib'), { recursive: true });
  await writeFile(path.join(root, 'usr/lib/passwd'), 'inside:x:5:5::/:/bin/sh\n');
  await symlink('../usr/lib/passwd', path.join(root, 'etc/rel-link'));
  await symlink('/usr/lib/passwd', path.join(root, 'etc/abs-link'));
  await symlink(path.join(outside, 'secret'), path.join(root, 'etc/escape-abs'));
  await symlink('../../../../../../../../..' + path.join(outside, 'secret'), path.join(root, 'etc/escape-dotdot'));
  await symlink('loop-b', path.join(root, 'etc/loop-a'));
  await symlink('loop-a', path.join(root, 'etc/loop-b'));

  assert.equal(await resolveInRoot(root, '/etc/rel-link'), path.join(root, 'usr/lib/passwd'));
  assert.equal(await resolveInRoot(root, '/etc/abs-link'), path.join(root, 'usr/lib/passwd'));
  assert.equal(await readRootfsFile(root, '/etc/rel-link'), 'inside:x:5:5::/:/bin/sh\n');
  // Both escapes resolve inside the rootfs, where nothing is: "missing", never the host file.
  assert.equal(await readRootfsFile(root, '/etc/escape-abs'), null);
  assert.equal(await readRootfsFile(root, '/etc/escape-dotdot'), null);
  assert.equal(await readRootfsFile(root, '/../../etc/passwd'), PASSWD);
  await assert.rejects(readRootfsFile(root, '/etc/loop-a'), { code: 'ERR_SPEC_PASSWD_READ', message: /symbolic links/ });
  assert.equal(await readRootfsFile(root, '/etc/passwd/x'), null);
});

test('readRootfsFile refuses non-regular files and oversized ones', async () => {
  const root = await rootfs();
  execFileSync('mkfifo', [path.join(root, 'etc/fifo')]);
  await mkdir(path.join(root, 'etc/dir'));
  await assert.rejects(readRootfsFile(root, '/etc/fifo'), { code: 'ERR_SPEC_PASSWD_READ', message: /regular file/ });
  await assert.rejects(readRootfsFile(root, '/etc/dir'), { code: 'ERR_SPEC_PASSWD_READ' });
  await assert.rejects(readRootfsFile(root, '/etc/passwd', 10), { code: 'ERR_SPEC_PASSWD_READ', message: /larger than 10 bytes/ });
  assert.equal(await readRootfsFile(root, '/etc/missing'), null);
});

test('rootfsPasswd returns null for missing files', async () => {
  const root = await rootfs({});
  const db = rootfsPasswd(root);
  assert.equal(await db.users(), null);
  assert.equal(await db.groups(), null);
});

test('criUserString combinations', () => {
  const base: UserRequest = { supplementalGroups: [], supplementalGroupsPolicy: SupplementalGroupsPolicy.Merge };
  assert.equal(criUserString(base), '');
  assert.equal(criUserString({ ...base, runAsUser: { value: 5n } }), '5');
  assert.equal(criUserString({ ...base, runAsUser: { value: 5n }, runAsGroup: { value: 6n } }), '5:6');
  assert.equal(criUserString({ ...base, runAsUsername: 'app', runAsUser: { value: 5n } }), 'app');
  assert.equal(criUserString({ ...base, runAsUsername: 'app', runAsGroup: { value: 6n } }), 'app:6');
  assert.throws(() => criUserString({ ...base, runAsGroup: { value: 6n } }), { code: 'ERR_SPEC_USER_INVALID' });
  assert.throws(() => criUserString({ ...base, runAsUser: { value: -1n } }), { code: 'ERR_SPEC_USER_INVALID' });
  assert.throws(() => criUserString({ ...base, runAsUser: { value: 1n << 31n } }), { code: 'ERR_SPEC_USER_INVALID' });
});

test('resolveUserString (table)', async () => {
  const db = rootfsPasswd(await rootfs());
  const none = rootfsPasswd(await rootfs({}));
  const rows: [string, typeof db, { uid: number; gid: number }][] = [
    ['0', db, { uid: 0, gid: 0 }],
    ['app', db, { uid: 1000, gid: 1000 }],
    ['1000', db, { uid: 1000, gid: 1000 }],
    ['1001', db, { uid: 1001, gid: 4242 }],
    ['4321', db, { uid: 4321, gid: 0 }],
    ['4321', none, { uid: 4321, gid: 0 }],
    ['1234:5678', none, { uid: 1234, gid: 5678 }],
    ['app:wheel', db, { uid: 1000, gid: 10 }],
    ['app:7', db, { uid: 1000, gid: 7 }],
    ['77:audio', db, { uid: 77, gid: 29 }],
  ];
  for (const [userstr, lookup, want] of rows) assert.deepEqual(await resolveUserString(userstr, lookup), want, userstr);
  await assert.rejects(resolveUserString('ghost', db), { code: 'ERR_SPEC_USER_NOT_FOUND', message: /"ghost".*no such user/ });
  await assert.rejects(resolveUserString('app', none), { code: 'ERR_SPEC_USER_NOT_FOUND', message: /no \/etc\/passwd/ });
  await assert.rejects(resolveUserString('app:nogroup', db), { code: 'ERR_SPEC_GROUP_NOT_FOUND' });
  await assert.rejects(resolveUserString('1:nogroup', none), { code: 'ERR_SPEC_GROUP_NOT_FOUND', message: /no \/etc\/group/ });
  await assert.rejects(resolveUserString('a:b:c', db), { code: 'ERR_SPEC_USER_INVALID' });
  await assert.rejects(resolveUserString('99999999999', db), { code: 'ERR_SPEC_USER_INVALID' });
});

test('resolveUser: user choice and supplementary groups (table)', async () => {
  const db = rootfsPasswd(await rootfs());
  const M = SupplementalGroupsPolicy.Merge;
  const S = SupplementalGroupsPolicy.Strict;
  const rows: { name: string; req: UserRequest; want: { uid: number; gid: number; additionalGids: number[] } }[] = [
    { name: 'nothing: root with root\'s memberships', req: { supplementalGroups: [], supplementalGroupsPolicy: M }, want: { uid: 0, gid: 0, additionalGids: [10] } },
    {
      name: 'image user by name',
      req: { supplementalGroups: [], supplementalGroupsPolicy: M, imageUser: 'app' },
      want: { uid: 1000, gid: 1000, additionalGids: [10, 29] },
    },
    {
      name: 'image user:group',
      req: { supplementalGroups: [], supplementalGroupsPolicy: M, imageUser: 'app:wheel' },
      want: { uid: 1000, gid: 10, additionalGids: [10, 29] },
    },
    {
      name: 'run_as_user overrides the image user; groups looked up by uid',
      req: { supplementalGroups: [5n], supplementalGroupsPolicy: M, imageUser: 'daemon', runAsUser: { value: 1000n } },
      want: { uid: 1000, gid: 1000, additionalGids: [5, 10, 29] },
    },
    {
      name: 'run_as_user + run_as_group, unknown uid',
      req: { supplementalGroups: [300n, 200n, 300n], supplementalGroupsPolicy: M, runAsUser: { value: 1234n }, runAsGroup: { value: 99n } },
      want: { uid: 1234, gid: 99, additionalGids: [200, 300] },
    },
    {
      name: 'run_as_username',
      req: { supplementalGroups: [], supplementalGroupsPolicy: M, runAsUsername: 'daemon' },
      want: { uid: 1, gid: 1, additionalGids: [29] },
    },
    {
      name: 'Strict: only the requested groups',
      req: { supplementalGroups: [7n], supplementalGroupsPolicy: S, runAsUsername: 'app' },
      want: { uid: 1000, gid: 1000, additionalGids: [7] },
    },
  ];
  for (const r of rows) assert.deepEqual(await resolveUser(r.req, db), r.want, r.name);
  await assert.rejects(resolveUser({ supplementalGroups: [], supplementalGroupsPolicy: M, runAsUsername: 'ghost' }, db), { code: 'ERR_SPEC_USER_NOT_FOUND' });
  await assert.rejects(resolveUser({ supplementalGroups: [], supplementalGroupsPolicy: SupplementalGroupsPolicy.UNRECOGNIZED }, db), {
    code: 'ERR_SPEC_USER_INVALID',
  });
});
