import { watch, type FSWatcher } from 'node:fs';

/**
 * Calls back when files appear in a directory (conmon's exit dir), by inotify
 * (fs.watch) with a periodic poll behind it in case an event is missed or the
 * watch cannot be set up. Runs only while someone is waiting.
 */
export class DirWatch {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<(name: string | undefined) => void>();

  constructor(
    private readonly dir: string,
    private readonly pollMs: number,
  ) {}

  /** Adds a listener; `name` is the file an event named, undefined on a poll tick. Returns the remover. */
  add(listener: (name: string | undefined) => void): () => void {
    this.listeners.add(listener);
    if (this.listeners.size === 1) this.open();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.close();
    };
  }

  private emit(name: string | undefined): void {
    for (const l of [...this.listeners]) l(name);
  }

  private open(): void {
    try {
      this.watcher = watch(this.dir, (_event, filename) => this.emit(filename ?? undefined));
      this.watcher.on('error', () => {
        // The poll below still runs.
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch {
      this.watcher = undefined;
    }
    this.timer = setInterval(() => this.emit(undefined), this.pollMs);
  }

  private close(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
