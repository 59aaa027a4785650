import { chainIds } from '../gc/index.js';
import { summarizeConfig } from './image-config.js';
import type { SelectedImage } from './image-walk.js';
import type { ImageRecord } from './types.js';

/** An image's content, shared by every name that leads to its config. */
export interface ImageContent {
  /** `sha256:<config digest hex>`. */
  id: string;
  selected: SelectedImage;
  chainId: string;
  size: number;
}

export function imageContent(selected: SelectedImage, what: string): ImageContent {
  const chain = chainIds(selected.diffIds);
  // Parsed now so that a config the CRI cannot report fails the pull, not a later ListImages.
  summarizeConfig(selected.config, what);
  return {
    id: selected.configDesc.digest,
    selected,
    chainId: chain[chain.length - 1] ?? '',
    size: selected.configDesc.size + selected.manifest.layers.reduce((sum, l) => sum + l.size, 0),
  };
}

export interface NameState {
  /** Digest of the name's target (index or manifest). */
  target: string;
  /** The record carries the pinned label. */
  pinned: boolean;
}

interface Entry {
  content: ImageContent;
  names: Map<string, NameState>;
}

/**
 * The in-memory view of the image records: names grouped by the config their
 * target leads to. get/list are answered from here; the images service keeps
 * it in step with the metadata records it writes.
 */
export class ImageCatalog {
  private readonly byId = new Map<string, Entry>();
  private readonly byName = new Map<string, string>();

  /**
   * Points `name` at `content` (moving it off another image if it was
   * elsewhere). Returns the event it amounts to, undefined if nothing changed.
   */
  put(name: string, content: ImageContent, state: NameState): 'create' | 'update' | undefined {
    const previousId = this.byName.get(name);
    const previous = previousId === undefined ? undefined : this.byId.get(previousId)?.names.get(name);
    if (previousId !== undefined && previousId !== content.id) this.dropName(name);
    let entry = this.byId.get(content.id);
    if (!entry) {
      entry = { content, names: new Map() };
      this.byId.set(content.id, entry);
    }
    entry.names.set(name, state);
    this.byName.set(name, content.id);
    if (previous === undefined) return 'create';
    return previous.target !== state.target || previousId !== content.id ? 'update' : undefined;
  }

  /** Forgets a name; an image left without names is forgotten too. */
  dropName(name: string): boolean {
    const id = this.byName.get(name);
    if (id === undefined) return false;
    this.byName.delete(name);
    const entry = this.byId.get(id);
    entry?.names.delete(name);
    if (entry && entry.names.size === 0) this.byId.delete(id);
    return true;
  }

  setPinned(name: string, pinned: boolean): void {
    const id = this.byName.get(name);
    const state = id === undefined ? undefined : this.byId.get(id)?.names.get(name);
    if (state) state.pinned = pinned;
  }

  idOfName(name: string): string | undefined {
    return this.byName.get(name);
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** Names of an image, sorted. */
  names(id: string): string[] {
    return [...(this.byId.get(id)?.names.keys() ?? [])].sort();
  }

  /** Ids starting with `sha256:<hexPrefix>`. */
  idsWithPrefix(hexPrefix: string): string[] {
    const prefix = `sha256:${hexPrefix}`;
    return [...this.byId.keys()].filter((id) => id.startsWith(prefix));
  }

  ids(): string[] {
    return [...this.byId.keys()].sort();
  }

  content(id: string): ImageContent | undefined {
    return this.byId.get(id)?.content;
  }

  /** The CRI view of an image; `pinnedNames` are names configured as pinned. */
  record(id: string, pinnedNames: ReadonlySet<string>): ImageRecord | undefined {
    const entry = this.byId.get(id);
    if (!entry) return undefined;
    const { content } = entry;
    const { selected } = content;
    const repoTags: string[] = [];
    const repoDigests: string[] = [];
    let pinned = false;
    for (const [name, state] of entry.names) {
      if (name.includes('@')) repoDigests.push(name);
      else repoTags.push(name);
      if (state.pinned || pinnedNames.has(name)) pinned = true;
    }
    return {
      id: content.id,
      repoTags: repoTags.sort(),
      repoDigests: repoDigests.sort(),
      size: content.size,
      config: summarizeConfig(selected.config, content.id),
      rawConfig: selected.config,
      chainId: content.chainId,
      diffIds: [...selected.diffIds],
      platform: { ...selected.platform },
      pinned,
    };
  }
}
