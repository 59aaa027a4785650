import { BerthError } from '../errors.js';
import type { Logger } from '../log.js';

/** How often a pull in progress logs its bytes and rate. */
const REPORT_INTERVAL_MS = 10_000;

/**
 * Watches the downloads of one pull: counts bytes per blob, logs progress
 * periodically, and aborts the pull (deadline-exceeded
 * `ERR_PULL_PROGRESS_TIMEOUT`) when downloads are running but no byte has
 * arrived for `timeoutMs`, as containerd's image_pull_progress_timeout.
 */
export class PullProgress {
  private readonly bytes = new Map<string, number>();
  private active = 0;
  private lastMove = performance.now();
  private readonly started = performance.now();
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly reporter: NodeJS.Timeout;
  private layersDone = 0;

  constructor(
    private readonly image: string,
    private readonly totalLayers: number,
    private readonly totalBytes: number,
    private readonly timeoutMs: number,
    private readonly abort: (reason: BerthError) => void,
    private readonly log: Logger,
  ) {
    if (timeoutMs > 0) {
      this.timer = setInterval(() => this.check(), Math.max(50, Math.min(1000, timeoutMs / 4)));
      this.timer.unref();
    }
    this.reporter = setInterval(() => this.report(), REPORT_INTERVAL_MS);
    this.reporter.unref();
  }

  /** Call around one blob download; the returned callback is its `onProgress`. */
  begin(digest: string): (bytes: number) => void {
    if (this.active === 0) this.lastMove = performance.now();
    this.active++;
    return (bytes: number) => {
      this.bytes.set(digest, bytes);
      this.lastMove = performance.now();
    };
  }

  end(): void {
    this.active--;
  }

  layerDone(): void {
    this.layersDone++;
  }

  /** Bytes this pull saw arrive (downloads it led or waited on). */
  downloaded(): number {
    let sum = 0;
    for (const b of this.bytes.values()) sum += b;
    return sum;
  }

  elapsedMs(): number {
    return performance.now() - this.started;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    clearInterval(this.reporter);
  }

  private check(): void {
    if (this.active === 0) return;
    const idle = performance.now() - this.lastMove;
    if (idle < this.timeoutMs) return;
    this.stop();
    this.abort(
      new BerthError(
        'deadline-exceeded',
        'ERR_PULL_PROGRESS_TIMEOUT',
        `pull of ${this.image}: no bytes received for ${Math.round(idle / 1000)} s (${this.downloaded()} of ${this.totalBytes} bytes so far)`,
        { context: { image: this.image, downloaded: this.downloaded(), total: this.totalBytes } },
      ),
    );
  }

  private report(): void {
    const seconds = this.elapsedMs() / 1000;
    const bytes = this.downloaded();
    this.log.info(
      { bytes, totalBytes: this.totalBytes, layers: this.layersDone, totalLayers: this.totalLayers, bytesPerSecond: Math.round(bytes / seconds) },
      'pull in progress',
    );
  }
}
