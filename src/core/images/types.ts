import type { AuthConfig } from '../remotes/index.js';

/** The parts of an image config's `config` section the CRI reports and containers start from. */
export interface ImageConfigSummary {
  user?: string;
  env: string[];
  entrypoint: string[];
  cmd: string[];
  workingDir?: string;
  labels: Record<string, string>;
  stopSignal?: string;
  /** Keys of ExposedPorts (`80/tcp`), sorted. */
  exposedPorts: string[];
  /** Keys of Volumes (paths), sorted. */
  volumes: string[];
}

export interface ImagePlatform {
  os: string;
  architecture: string;
  variant?: string;
}

/** One image as the CRI sees it: every name whose target leads to the same config. */
export interface ImageRecord {
  /** `sha256:<config digest hex>`: the CRI image id. */
  id: string;
  /** Normalised `name:tag` names, sorted. */
  repoTags: string[];
  /** `name@sha256:<digest of the manifest or index pulled>`, sorted. */
  repoDigests: string[];
  /** Bytes of the config and the (compressed) layers, as containerd's CRI reports. */
  size: number;
  config: ImageConfigSummary;
  /** The parsed OCI image config JSON. */
  rawConfig: unknown;
  /** Chain ID of the top layer: the committed snapshot a container's rootfs is prepared from. */
  chainId: string;
  diffIds: string[];
  platform: ImagePlatform;
  pinned: boolean;
}

export interface PullOptions {
  /** Credentials for this pull; win over the configured `auths`. */
  auth?: AuthConfig;
  /** Aborts the pull (RPC deadline or cancellation). */
  signal?: AbortSignal;
}

/** A change to an image name (a metadata image record). */
export interface ImageEvent {
  type: 'create' | 'update' | 'delete';
  /** The name: `name:tag` or `name@digest`. */
  name: string;
}

export type ImageListener = (event: ImageEvent) => void;

/** What the CRI's ImageFsInfo reports for the image filesystem. */
export interface ImageFsInfo {
  /** The snapshotter's root dir. */
  mountpoint: string;
  /** Disk blocks used by snapshots and content blobs. */
  usedBytes: number;
  inodesUsed: number;
  /** When measured, nanoseconds since the epoch. */
  timestamp: bigint;
}
