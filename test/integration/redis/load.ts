import { get } from 'node:http';
import { performance } from 'node:perf_hooks';
import { readAuditRecords } from '../../helpers/test-env.js';

/**
 * Bounded load for the Redis tier tests: a fixed number of workers, each
 * sending one request after the other until the duration or the request cap
 * is reached. A request that does not answer within its timeout counts as
 * failed and its worker moves on, so a load always ends by itself.
 */

export interface Outcome {
  readonly ok: boolean;
  /** What was expected and what came back, for failure messages. */
  readonly detail: string;
  /** The kmsRequestId sent, to find the request's audit record (server-side latency). */
  readonly kmsRequestId?: string;
}

export interface Sample extends Outcome {
  /** ms since the load started. */
  readonly startedAtMs: number;
  /** Client-side round trip (TLS handshake, SigV4, proxy, response validation), ms. */
  readonly latencyMs: number;
}

export interface LoadOptions {
  readonly concurrency: number;
  readonly durationMs: number;
  /** Upper bound on requests, whatever the duration. */
  readonly maxRequests?: number;
  /** A request slower than this counts as failed (and is no longer awaited). */
  readonly requestTimeoutMs?: number;
  readonly send: (index: number) => Promise<Outcome>;
}

export interface RunningLoad {
  /** ms since the load started. */
  elapsedMs(): number;
  readonly done: Promise<Sample[]>;
}

export function startLoad(options: LoadOptions): RunningLoad {
  const started = performance.now();
  const endAt = started + options.durationMs;
  const maxRequests = options.maxRequests ?? 20_000;
  const timeoutMs = options.requestTimeoutMs ?? 5000;
  const samples: Sample[] = [];
  let issued = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < endAt && issued < maxRequests) {
      const index = issued++;
      const t0 = performance.now();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<Outcome>((resolve) => {
        timer = setTimeout(() => resolve({ ok: false, detail: `no answer within ${timeoutMs} ms` }), timeoutMs);
      });
      const outcome = await Promise.race([
        options.send(index).catch((error: unknown) => ({ ok: false, detail: `request threw: ${(error as Error).message}` })),
        timeout,
      ]);
      clearTimeout(timer);
      samples.push({ ...outcome, startedAtMs: t0 - started, latencyMs: performance.now() - t0 });
    }
  };
  const done = Promise.all(Array.from({ length: options.concurrency }, () => worker())).then(() => samples);
  return { elapsedMs: () => performance.now() - started, done };
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface Summary {
  readonly requests: number;
  readonly failures: number;
  readonly firstFailures: readonly string[];
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p))] as number;
}

export function summarize(values: readonly number[], outcomes: readonly Outcome[] = []): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const failed = outcomes.filter((outcome) => !outcome.ok);
  return {
    requests: values.length,
    failures: failed.length,
    firstFailures: failed.slice(0, 5).map((outcome) => outcome.detail),
    p50Ms: Math.round(percentile(sorted, 0.5)),
    p99Ms: Math.round(percentile(sorted, 0.99)),
    maxMs: Math.round(sorted[sorted.length - 1] ?? 0),
  };
}

/** Server-side latency (the audit record's latencyMs: from the request reaching the router to its answer) of the given requests. */
export function serverLatencies(auditFile: string, kmsRequestIds: Iterable<string>): { latencies: number[]; missing: number } {
  const wanted = new Set(kmsRequestIds);
  const latencies: number[] = [];
  for (const record of readAuditRecords(auditFile)) {
    const id = record['kmsRequestId'];
    if (typeof id === 'string' && wanted.has(id) && typeof record['latencyMs'] === 'number') {
      latencies.push(record['latencyMs']);
      wanted.delete(id);
    }
  }
  return { latencies, missing: wanted.size };
}

/** GET a Prometheus text endpoint. */
export function scrape(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = get(url, { timeout: 5000 }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => (response.statusCode === 200 ? resolve(text) : reject(new Error(`${url} answered ${response.statusCode}`))));
    });
    request.on('timeout', () => request.destroy(new Error(`${url} timed out`)));
    request.on('error', reject);
  });
}

/** The value of one sample, e.g. metric(text, 'hyok_policy_decision_cache_total', { tier: 'redis', result: 'hit' }); 0 when absent. */
export function metric(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? ([^ ]+)/.exec(line);
    if (match === null || match[1] !== name) continue;
    const found = new Map<string, string>();
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) found.set(pair[1] as string, pair[2] as string);
    if (Object.entries(labels).every(([key, value]) => found.get(key) === value)) return Number(match[3]);
  }
  return 0;
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>, intervalMs = 50): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(intervalMs);
  }
}
