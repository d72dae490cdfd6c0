import { performance } from 'node:perf_hooks';

/** A per-key-store request quota (spec: a proxy MAY throttle each path prefix). */
export class TokenBucket {
  private readonly ratePerMs: number;
  private readonly capacity: number;
  private tokens: number;
  private updatedAt: number;

  constructor(requestsPerSecond: number, burst: number) {
    this.ratePerMs = requestsPerSecond / 1000;
    this.capacity = burst;
    this.tokens = burst;
    this.updatedAt = performance.now();
  }

  sameShape(requestsPerSecond: number, burst: number): boolean {
    return this.ratePerMs === requestsPerSecond / 1000 && this.capacity === burst;
  }

  take(now = performance.now()): boolean {
    this.tokens = Math.min(this.capacity, this.tokens + (now - this.updatedAt) * this.ratePerMs);
    this.updatedAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
