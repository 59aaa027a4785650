/** Public surface of the CNI network plugin (`network.cni`). */
export {
  cniNetworkRegistration,
  cniConfigSchema,
  CniNetworkManager,
  NETWORK_NOT_READY_REASON,
  IFNAME_PREFIX,
  type CniConfig,
  type CniStatus,
  type CniAttachment,
  type CniChangeListener,
  type CniManagerOptions,
} from './network.js';
export {
  loadConfDir,
  parseNetworkConfig,
  confKindOf,
  CONF_EXTENSIONS,
  MAX_CONF_FILE_BYTES,
  type CniNetwork,
  type CniPluginConf,
  type ConfDirLoad,
  type ConfKind,
  type LoadOptions,
  type ParseOutcome,
  type SkippedConf,
} from './conf-loader.js';
export { loopbackNetwork, LOOPBACK_NETWORK_NAME, LOOPBACK_IFNAME } from './loopback.js';
export {
  addNetworkList,
  checkNetworkList,
  delNetworkList,
  buildExecConfig,
  findPlugin,
  formatCniArgs,
  DEFAULT_PLUGIN_TIMEOUT_MS,
  type CniCommand,
  type CniExecOptions,
  type CniResult,
  type CniRuntimeConf,
} from './invoke.js';
export { SUPPORTED_CNI_VERSIONS, isSupportedCniVersion, compareCniVersions, cniVersionAtLeast } from './version.js';
export { NetnsManager, isNetnsPinned, NSFS_MAGIC, type NetnsManagerOptions } from './netns.js';
export {
  PodNetwork,
  podCniArgs,
  podCapabilityArgs,
  podIpsOf,
  bandwidthFromAnnotations,
  parseQuantity,
  INGRESS_BANDWIDTH_ANNOTATION,
  EGRESS_BANDWIDTH_ANNOTATION,
  type PodNetworkParams,
  type PodNetworkRecord,
  type PodAttachmentRecord,
  type PodNetworkSetup,
  type PodNetworkSource,
  type PodNetworkOptions,
  type PodNetworkCallOptions,
  type PodPortMapping,
  type PodBandwidth,
  type PodDns,
} from './pod-network.js';
