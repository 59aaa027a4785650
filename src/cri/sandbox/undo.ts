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
