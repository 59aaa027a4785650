/** One operation at a time per key (a sandbox id); different keys run in parallel. */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, op: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(op, op);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }
}

/**
 * Steps to undo, run newest first. Each undo is tried even when an earlier
 * one failed; failures are handed to `onError` so the original error is the
 * one the caller sees.
 */
export class UndoStack {
  private readonly steps: Array<{ what: string; undo: () => Promise<void> | void }> = [];

  push(what: string, undo: () => Promise<void> | void): void {
    this.steps.push({ what, undo });
  }

  async unwind(onError: (what: string, err: unknown) => void): Promise<void> {
    for (const step of this.steps.reverse()) {
      try {
        await step.undo();
      } catch (err) {
        onError(step.what, err);
      }
    }
    this.steps.length = 0;
  }
}
