/**
 * Which uid, gid and supplementary groups a container's process runs with,
 * from the CRI security context and the image's User, resolved through the
 * image's /etc/passwd and /etc/group the way containerd's CRI does it.
 */
import { BerthError } from '../../errors.js';
import { SupplementalGroupsPolicy, type Int64Value } from '../../../generated/api.js';
import type { OciUser, PasswdLookup } from './types.js';

/** runc keeps ids at or below 2^31-1. */
const MAX_ID = 0x7fffffff;

export interface UserRequest {
  runAsUser?: Int64Value | undefined;
  runAsUsername?: string | undefined;
  runAsGroup?: Int64Value | undefined;
  supplementalGroups: bigint[];
  supplementalGroupsPolicy: SupplementalGroupsPolicy;
  /** The image config's User ("name", "uid", "uid:gid", "name:group", ...). */
  imageUser?: string | undefined;
}

function invalid(code: string, message: string, user: string): BerthError {
  return new BerthError('invalid-argument', code, message, { context: { user } });
}

function idFromBigint(v: bigint, what: string): number {
  if (v < 0n || v > BigInt(MAX_ID)) throw invalid('ERR_SPEC_USER_INVALID', `${what} ${v} is out of range (0-${MAX_ID})`, String(v));
  return Number(v);
}

/** A numeric id, undefined for a name; out-of-range numbers are errors. */
function numericId(part: string, what: string, userstr: string): number | undefined {
  if (!/^-?\d+$/.test(part)) return undefined;
  const n = Number(part);
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_ID) {
    throw invalid('ERR_SPEC_USER_INVALID', `invalid user ${JSON.stringify(userstr)}: ${what} out of range`, userstr);
  }
  return n;
}

/**
 * The CRI user string: username or uid, with ":gid" when run_as_group is set;
 * '' when neither is set. A group without a user is an error.
 */
export function criUserString(req: UserRequest): string {
  let user = req.runAsUser !== undefined ? String(idFromBigint(req.runAsUser.value, 'run_as_user')) : '';
  if (req.runAsUsername) user = req.runAsUsername;
  const group = req.runAsGroup !== undefined ? String(idFromBigint(req.runAsGroup.value, 'run_as_group')) : '';
  if (user === '') {
    if (group !== '') throw invalid('ERR_SPEC_USER_INVALID', `run_as_group ${group} is set without run_as_user or run_as_username`, group);
    return '';
  }
  return group === '' ? user : `${user}:${group}`;
}

async function userByName(passwd: PasswdLookup, name: string, userstr: string) {
  const users = await passwd.users();
  const entry = users?.find((u) => u.name === name);
  if (entry === undefined) {
    const why = users === null ? 'the image has no /etc/passwd' : 'no such user in the image\'s /etc/passwd';
    throw invalid('ERR_SPEC_USER_NOT_FOUND', `cannot run as user ${JSON.stringify(name)}: ${why}`, userstr);
  }
  return entry;
}

async function gidOfGroup(passwd: PasswdLookup, name: string, userstr: string): Promise<number> {
  const groups = await passwd.groups();
  const entry = groups?.find((g) => g.name === name);
  if (entry === undefined) {
    const why = groups === null ? 'the image has no /etc/group' : 'no such group in the image\'s /etc/group';
    throw invalid('ERR_SPEC_GROUP_NOT_FOUND', `cannot run with group ${JSON.stringify(name)}: ${why}`, userstr);
  }
  return entry.gid;
}

/**
 * uid and gid of a user string (OCI image-spec User syntax): a bare uid takes
 * its primary group from /etc/passwd (0 when absent there or no file); a
 * bare name must exist; in "user:group" each side is a number or a name.
 */
export async function resolveUserString(userstr: string, passwd: PasswdLookup): Promise<{ uid: number; gid: number }> {
  const parts = userstr.split(':');
  if (parts.length > 2 || parts.some((p) => p === '')) {
    throw invalid('ERR_SPEC_USER_INVALID', `invalid user ${JSON.stringify(userstr)}`, userstr);
  }
  const [userPart, groupPart] = parts as [string, string | undefined];
  if (groupPart === undefined) {
    const uid = numericId(userPart, 'uid', userstr);
    if (uid === undefined) {
      const entry = await userByName(passwd, userPart, userstr);
      return { uid: entry.uid, gid: entry.gid };
    }
    const entry = (await passwd.users())?.find((u) => u.uid === uid);
    return { uid, gid: entry?.gid ?? 0 };
  }
  const uidNum = numericId(userPart, 'uid', userstr);
  const gidNum = numericId(groupPart, 'gid', userstr);
  const uid = uidNum ?? (await userByName(passwd, userPart, userstr)).uid;
  const gid = gidNum ?? (await gidOfGroup(passwd, groupPart, userstr));
  return { uid, gid };
}

/** Groups of /etc/group that list the user (by name, or by the name of its uid) as a member, not counting its own-named group. */
async function memberGids(userstr: string, passwd: PasswdLookup): Promise<number[]> {
  let name = userstr;
  if (/^\d+$/.test(userstr)) {
    const uid = Number(userstr);
    const entry = (await passwd.users())?.find((u) => u.uid === uid);
    if (entry === undefined) return [];
    name = entry.name;
  }
  const groups = await passwd.groups();
  if (groups === null) return [];
  return groups.filter((g) => g.name !== name && g.members.includes(name)).map((g) => g.gid);
}

/**
 * The process user of a container. The user is run_as_username, else
 * run_as_user (with run_as_group), else the image's User, else root. With the
 * Merge policy, supplementary groups are the image's /etc/group memberships
 * of that user plus supplemental_groups; with Strict only the latter.
 */
export async function resolveUser(req: UserRequest, passwd: PasswdLookup): Promise<OciUser> {
  const criUser = criUserString(req);
  const userstr = criUser !== '' ? criUser : (req.imageUser ?? '');
  const { uid, gid } = userstr === '' ? { uid: 0, gid: 0 } : await resolveUserString(userstr, passwd);

  const gids = new Set<number>();
  switch (req.supplementalGroupsPolicy) {
    case SupplementalGroupsPolicy.Merge: {
      // Membership is looked up for the user alone, never its group part.
      const who = req.runAsUsername || (req.runAsUser !== undefined ? String(uid) : (req.imageUser ?? '').split(':')[0]) || '0';
      for (const g of await memberGids(who, passwd)) gids.add(g);
      break;
    }
    case SupplementalGroupsPolicy.Strict:
      break;
    default:
      throw invalid('ERR_SPEC_USER_INVALID', `unknown supplemental_groups_policy ${req.supplementalGroupsPolicy}`, userstr);
  }
  for (const g of req.supplementalGroups) gids.add(idFromBigint(g, 'supplemental group'));
  return { uid, gid, additionalGids: [...gids].sort((a, b) => a - b) };
}
