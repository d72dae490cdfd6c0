import { performance } from 'node:perf_hooks';

/** A point in monotonic time by which work must finish; immune to wall-clock jumps. */
export class Deadline {
  readonly expiresAt: number;

  private constructor(expiresAt: number) {
    this.expiresAt = expiresAt;
  }

  static after(ms: number): Deadline {
    return new Deadline(performance.now() + ms);
  }

  remainingMs(): number {
    return Math.max(0, this.expiresAt - performance.now());
  }

  expired(): boolean {
    return performance.now() >= this.expiresAt;
  }

  /** The sooner of this deadline and `ms` from now. */
  capped(ms: number): Deadline {
    return new Deadline(Math.min(this.expiresAt, performance.now() + ms));
  }
}
