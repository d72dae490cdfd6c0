/**
 * A rolling window of requests per API, for the SRE console: rate, errors and
 * latency percentiles over the last minute, read without a Prometheus server.
 * One slot per second, each with a log-scale latency histogram, so memory and
 * the cost of a record are fixed whatever the traffic.
 */

export interface ApiSummary {
  readonly contract: string;
  readonly api: string;
  readonly windowSeconds: number;
  readonly requests: number;
  readonly errors: number;
  readonly ratePerSecond: number;
  readonly errorsPerSecond: number;
  /** Upper bound of the histogram bucket holding the percentile (within 10 %); null without requests. */
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
}

/** Bucket upper bounds in ms: 0.05 ms to ~60 s, each 10 % above the last. */
const BOUNDS_MS: readonly number[] = (() => {
  const bounds: number[] = [];
  for (let bound = 0.05; bound < 60_000; bound *= 1.1) bounds.push(bound);
  bounds.push(Number.POSITIVE_INFINITY);
  return bounds;
})();
const LOG_STEP = Math.log(1.1);

function bucketOf(ms: number): number {
  if (!(ms > BOUNDS_MS[0]!)) return 0;
  return Math.min(BOUNDS_MS.length - 1, Math.ceil(Math.log(ms / 0.05) / LOG_STEP - 1e-9));
}

interface Slot {
  second: number;
  requests: number;
  errors: number;
  readonly histogram: Uint32Array;
}

class ApiWindow {
  readonly contract: string;
  readonly api: string;
  private readonly slots: Slot[];

  constructor(contract: string, api: string, size: number) {
    this.contract = contract;
    this.api = api;
    this.slots = Array.from({ length: size }, () => ({ second: -1, requests: 0, errors: 0, histogram: new Uint32Array(BOUNDS_MS.length) }));
  }

  record(second: number, ms: number, failed: boolean): void {
    const slot = this.slots[second % this.slots.length]!;
    if (slot.second !== second) {
      slot.second = second;
      slot.requests = 0;
      slot.errors = 0;
      slot.histogram.fill(0);
    }
    slot.requests++;
    if (failed) slot.errors++;
    slot.histogram[bucketOf(ms)]!++;
  }

  summary(nowSecond: number, windowSeconds: number): ApiSummary {
    const merged = new Uint32Array(BOUNDS_MS.length);
    let requests = 0;
    let errors = 0;
    for (const slot of this.slots) {
      // The current second is partial: it is left out of rates, so they do not dip every second.
      if (slot.second >= nowSecond || slot.second < nowSecond - windowSeconds) continue;
      requests += slot.requests;
      errors += slot.errors;
      for (let i = 0; i < merged.length; i++) merged[i]! += slot.histogram[i]!;
    }
    const percentile = (fraction: number): number | null => {
      if (requests === 0) return null;
      const rank = Math.ceil(requests * fraction);
      let seen = 0;
      for (let i = 0; i < merged.length; i++) {
        seen += merged[i]!;
        if (seen >= rank) return Math.round(Math.min(BOUNDS_MS[i]!, BOUNDS_MS[BOUNDS_MS.length - 2]!) * 100) / 100;
      }
      return null;
    };
    return {
      contract: this.contract,
      api: this.api,
      windowSeconds,
      requests,
      errors,
      ratePerSecond: Math.round((requests / windowSeconds) * 100) / 100,
      errorsPerSecond: Math.round((errors / windowSeconds) * 100) / 100,
      p50Ms: percentile(0.5),
      p99Ms: percentile(0.99),
    };
  }
}

/** APIs are a bounded set (the contracts' operations), so one window each. */
export class RecentRequests {
  private readonly windows = new Map<string, ApiWindow>();
  private readonly windowSeconds: number;
  private readonly now: () => number;

  constructor(windowSeconds = 60, now: () => number = Date.now) {
    this.windowSeconds = windowSeconds;
    this.now = now;
  }

  private requestCount = 0;
  private errorCount = 0;

  record(contract: string, api: string, durationMs: number, failed: boolean): void {
    this.requestCount++;
    if (failed) this.errorCount++;
    const name = `${contract}\u0000${api}`;
    let window = this.windows.get(name);
    if (window === undefined) {
      window = new ApiWindow(contract, api, this.windowSeconds + 1);
      this.windows.set(name, window);
    }
    window.record(Math.floor(this.now() / 1000), durationMs, failed);
  }

  /** Per API over the last `windowSeconds` (at most the window this was built with), whole seconds only. */
  summaries(windowSeconds = this.windowSeconds): ApiSummary[] {
    const nowSecond = Math.floor(this.now() / 1000);
    const window = Math.max(1, Math.min(this.windowSeconds, Math.floor(windowSeconds)));
    return [...this.windows.values()]
      .map((api) => api.summary(nowSecond, window))
      .sort((a, b) => a.contract.localeCompare(b.contract) || a.api.localeCompare(b.api));
  }

  /** Requests and failures since start, for before-and-after figures such as a drill's. */
  totals(): { readonly requests: number; readonly errors: number } {
    return { requests: this.requestCount, errors: this.errorCount };
  }
}
