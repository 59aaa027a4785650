/**
 * AppArmor choice for a container. Berth loads no AppArmor profile of its
 * own, so RuntimeDefault confines nothing (reported); on a host without
 * AppArmor a Localhost profile cannot be honoured and is an error, as
 * containerd refuses it there too. (containerd also refuses RuntimeDefault
 * without AppArmor; the kubelet only asks for it on nodes that have it.)
 */
import { BerthError } from '../../errors.js';
import { SecurityProfile_ProfileType, type SecurityProfile } from '../../../generated/api.js';

export interface ApparmorChoice {
  /** process.apparmorProfile, when one applies. */
  profile?: string;
  /** Why a requested confinement was not applied. */
  ignored?: string;
}

function invalid(message: string, profile: string): BerthError {
  return new BerthError('invalid-argument', 'ERR_SPEC_APPARMOR', message, { context: { profile } });
}

/** The deprecated apparmor_profile string ("runtime/default", "unconfined", "localhost/<name>"); '' is "not set". */
export function apparmorProfileFromString(value: string): SecurityProfile | undefined {
  switch (value) {
    case '':
      return undefined;
    case 'runtime/default':
      return { profileType: SecurityProfile_ProfileType.RuntimeDefault, localhostRef: '' };
    case 'unconfined':
      return { profileType: SecurityProfile_ProfileType.Unconfined, localhostRef: '' };
    default:
      if (!value.startsWith('localhost/')) throw invalid(`invalid apparmor profile ${JSON.stringify(value)}`, value);
      return { profileType: SecurityProfile_ProfileType.Localhost, localhostRef: value.slice('localhost/'.length) };
  }
}

export function chooseApparmor(profile: SecurityProfile | undefined, deprecated: string, privileged: boolean, hostHasApparmor: boolean): ApparmorChoice {
  const sp = profile ?? apparmorProfileFromString(deprecated);
  if (sp === undefined) return {};
  if (sp.profileType !== SecurityProfile_ProfileType.Localhost && sp.localhostRef !== '') {
    throw invalid('apparmor localhost_ref may only be set with profile type Localhost', sp.localhostRef);
  }
  switch (sp.profileType) {
    case SecurityProfile_ProfileType.Unconfined:
      return {};
    case SecurityProfile_ProfileType.RuntimeDefault:
      if (privileged) return {};
      return { ignored: hostHasApparmor ? 'berth has no AppArmor default profile' : 'AppArmor is not enabled on this host' };
    case SecurityProfile_ProfileType.Localhost: {
      const name = sp.localhostRef.startsWith('localhost/') ? sp.localhostRef.slice('localhost/'.length) : sp.localhostRef;
      if (!hostHasApparmor) throw invalid(`apparmor profile ${JSON.stringify(name)} requested but AppArmor is not enabled on this host`, name);
      if (name === '') throw invalid('apparmor Localhost profile without a name', name);
      return { profile: name };
    }
    default:
      throw invalid(`unknown apparmor profile type ${sp.profileType}`, sp.localhostRef);
  }
}
