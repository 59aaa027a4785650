/**
 * Registry client library: image references, registry host configuration
 * (containerd's hosts.toml layout), and an OCI distribution client with
 * mirrors, auth and platform selection. Used by the images plugin's pull.
 */
export { parseReference, validateDigest, ImageReference, DEFAULT_DOMAIN, DEFAULT_TAG } from './reference.js';
export {
  RegistryHosts,
  parseHostsToml,
  loadHostsDir,
  endpointsFromConfig,
  hostsConfigFromSimple,
  isLoopbackHost,
  defaultApiHost,
  type RegistryHostsOptions,
  type HostsConfig,
  type HostEntryConfig,
  type HostCapability,
  type RegistryEndpoint,
  type EndpointTLS,
  type SimpleRegistryConfig,
} from './hosts.js';
export { credentialsFrom, type AuthConfig, type Credentials } from './auth.js';
export { parseWwwAuthenticate, type Challenge } from './challenge.js';
export {
  RegistryClient,
  Repository,
  type RegistryClientOptions,
  type RepositoryOptions,
  type RequestOptions,
  type Resolved,
  type PlatformManifest,
} from './client.js';
export { detectManifestType, parseIndex, parseManifest } from './manifest.js';
export {
  hostPlatform,
  parsePlatform,
  formatPlatform,
  normalizePlatform,
  platformMatcher,
  selectManifests,
  type PlatformSpec,
  type PlatformMatcher,
  type NormalizedPlatform,
} from './platform.js';
export { MediaType, MANIFEST_ACCEPT, isIndexType, isManifestType, type Descriptor, type ImageIndex, type ImageManifest, type Platform } from './types.js';
