import { BerthError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type {
  AuthConfig,
  Image,
  ImageFsInfoResponse,
  ImageSpec,
  ImageStatusResponse,
  ListImagesRequest,
  ListImagesResponse,
  PullImageRequest,
  PullImageResponse,
  RemoveImageRequest,
} from '../generated/api.js';
import type { ImageRecord, ImageStore } from '../core/images/index.js';
import type { AuthConfig as RegistryAuth } from '../core/remotes/index.js';

/** The image's default user, split as CRI wants it: a numeric uid or a name. */
export function imageUser(user: string | undefined): { uid?: bigint; username: string } {
  const name = (user ?? '').split(':')[0] ?? '';
  if (name === '') return { username: '' };
  if (/^\d+$/.test(name)) return { uid: BigInt(name), username: '' };
  return { username: name };
}

function requireRef(spec: ImageSpec | undefined, rpc: string): string {
  const ref = spec?.image ?? '';
  if (ref === '') throw new BerthError('invalid-argument', 'ERR_IMAGE_REF_EMPTY', `${rpc}: image reference is empty`);
  return ref;
}

/** CRI AuthConfig with empty fields dropped, as the registry client expects. */
function authOf(auth: AuthConfig | undefined): RegistryAuth | undefined {
  if (auth === undefined) return undefined;
  const out: RegistryAuth = {};
  for (const [k, v] of Object.entries(auth) as [keyof RegistryAuth, unknown][]) if (typeof v === 'string' && v !== '') out[k] = v;
  return Object.keys(out).length === 0 ? undefined : out;
}

export function toCriImage(record: ImageRecord): Image {
  const user = imageUser(record.config.user);
  return {
    id: record.id,
    repoTags: record.repoTags,
    repoDigests: record.repoDigests,
    size: BigInt(record.size),
    uid: user.uid === undefined ? undefined : { value: user.uid },
    username: user.username,
    spec: { image: record.id, annotations: {}, userSpecifiedImage: '', runtimeHandler: '', imageRef: record.id },
    pinned: record.pinned,
  };
}

/** The CRI ImageService over the images plugin; reads come from its in-memory index. */
export class CriImageService {
  constructor(
    private readonly images: ImageStore,
    private readonly log: Logger,
  ) {}

  async pull(request: PullImageRequest, signal: AbortSignal): Promise<PullImageResponse> {
    const ref = requireRef(request.image, 'PullImage');
    const record = await this.images.pull(ref, { auth: authOf(request.auth), signal });
    this.log.info({ image: ref, id: record.id }, 'image pulled');
    return { imageRef: record.id };
  }

  status(spec: ImageSpec | undefined, verbose: boolean): ImageStatusResponse {
    const ref = requireRef(spec, 'ImageStatus');
    const record = this.images.get(ref);
    if (record === undefined) return { image: undefined, info: {} };
    const info: Record<string, string> = {};
    if (verbose) {
      info['info'] = JSON.stringify({ chainID: record.chainId, imageSpec: record.rawConfig, platform: record.platform, pinned: record.pinned });
    }
    return { image: toCriImage(record), info };
  }

  list(request: ListImagesRequest): ListImagesResponse {
    const wanted = request.filter?.image?.image ?? '';
    if (wanted !== '') {
      const record = this.images.get(wanted);
      return { images: record === undefined ? [] : [toCriImage(record)] };
    }
    return { images: this.images.list().map(toCriImage) };
  }

  /** Removing an image that is not there succeeds, as CRI requires. */
  async remove(request: RemoveImageRequest): Promise<void> {
    const ref = requireRef(request.image, 'RemoveImage');
    const removed = await this.images.remove(ref);
    this.log.info({ image: ref, removed }, 'image remove');
  }

  async fsInfo(): Promise<ImageFsInfoResponse> {
    const fs = await this.images.fsInfo();
    const usage = {
      timestamp: fs.timestamp,
      fsId: { mountpoint: fs.mountpoint },
      usedBytes: { value: BigInt(fs.usedBytes) },
      inodesUsed: { value: BigInt(fs.inodesUsed) },
    };
    return { imageFilesystems: [usage], containerFilesystems: [] };
  }
}
