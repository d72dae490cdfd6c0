import { Agent, request } from 'node:https';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { pace, percentile } from '../open-loop.js';
import type { PreparedRequest } from '../xks-requests.js';

/**
 * Steady signed XKS traffic for a drill: the same evenly paced open loop as
 * loadtest/open-loop.ts (each latency measured from the request's scheduled
 * send time, so a stall shows up as latency, not as a lower offered rate), but
 * recording every second on its own: successes, failures by kind, latency
 * percentiles. It stops by itself after `durationS` (or when `signal` aborts),
 * then waits at most `timeoutMs` for the answers still outstanding.
 */

export interface TrafficOptions {
  readonly host: string;
  readonly port: number;
  /** Requests per second, evenly spaced. */
  readonly rate: number;
  readonly durationS: number;
  readonly agent: Agent;
  /** Signed requests, replayed in turn; called for every send so a refreshed batch takes effect at once. */
  readonly requests: () => readonly PreparedRequest[];
  /** A request unanswered this long counts as failed ('timeout'). */
  readonly timeoutMs?: number;
  /** Latency above this counts as over budget (AWS KMS gives up after 250 ms). */
  readonly budgetMs?: number;
  readonly signal?: AbortSignal;
  /** Called once, at the instant the first request is scheduled (performance.now() time base). */
  readonly onStart?: (startedAtPerf: number) => void;
}

/** Counts and latencies of a set of requests (one second, or the whole run). */
export interface RequestStats {
  readonly sent: number;
  readonly ok: number;
  readonly failed: number;
  readonly overBudget: number;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly maxMs: number | null;
  /** Failures by kind: HTTP status and XKS errorName ("500 InternalException"), or a socket error code. */
  readonly failures: Record<string, number>;
}

export interface SecondStats extends RequestStats {
  /** Seconds since traffic started (bucket by scheduled send time). */
  readonly second: number;
}

export interface NotableRequest {
  /** Seconds since traffic started (scheduled send time). */
  readonly atS: number;
  readonly latencyMs: number;
  readonly outcome: string;
}

export interface TrafficResult extends RequestStats {
  /** Date.now() of the first scheduled send. */
  readonly startedAt: number;
  readonly durationS: number;
  readonly rate: number;
  readonly budgetMs: number;
  readonly perSecond: SecondStats[];
  /** Every request over budget or failed, at most 500 (for the report). */
  readonly notable: NotableRequest[];
  /** Requests that never got an answer before the generator gave up on them (counted as failed). */
  readonly abandoned: number;
  /** Every request, by index (scheduled at index / rate seconds): 0 not sent, 1 ok, 2 failed; and its latency. Not for JSON. */
  readonly outcomes: Uint8Array;
  readonly latenciesMs: Float32Array;
}

/** Scheduled send time, in seconds since traffic started, of request `index`. */
export function scheduledAtS(result: Pick<TrafficResult, 'rate'>, index: number): number {
  return index / result.rate;
}

interface Bucket {
  sent: number;
  ok: number;
  failed: number;
  overBudget: number;
  latencies: number[];
  failures: Record<string, number>;
}

const MAX_NOTABLE = 500;

export async function runTraffic(options: TrafficOptions): Promise<TrafficResult> {
  const timeoutMs = options.timeoutMs ?? 2000;
  const budgetMs = options.budgetMs ?? 250;
  const total = Math.floor(options.rate * options.durationS);
  const intervalMs = 1000 / options.rate;
  const seconds = Math.ceil(options.durationS);
  const buckets: Bucket[] = Array.from({ length: seconds }, () => ({ sent: 0, ok: 0, failed: 0, overBudget: 0, latencies: [], failures: {} }));
  const notable: NotableRequest[] = [];
  const outcomes = new Uint8Array(total);
  const latenciesMs = new Float32Array(total);
  const inFlight = new Set<{ abandon(): void }>();
  let abandoned = 0;
  const started = performance.now();
  const startedAt = Date.now();
  options.onStart?.(started);

  const fire = (index: number, scheduledAt: number): void => {
    const pool = options.requests();
    const prepared = pool[index % pool.length] as PreparedRequest;
    const bucket = buckets[Math.min(seconds - 1, Math.floor((index * intervalMs) / 1000))] as Bucket;
    bucket.sent += 1;
    let finished = false;
    const done = (outcome: string): void => {
      if (finished) return;
      finished = true;
      inFlight.delete(handle);
      const latency = performance.now() - scheduledAt;
      bucket.latencies.push(latency);
      outcomes[index] = outcome === '200' ? 1 : 2;
      latenciesMs[index] = latency;
      const over = latency > budgetMs;
      if (over) bucket.overBudget += 1;
      if (outcome === '200') bucket.ok += 1;
      else {
        bucket.failed += 1;
        bucket.failures[outcome] = (bucket.failures[outcome] ?? 0) + 1;
      }
      if ((over || outcome !== '200') && notable.length < MAX_NOTABLE) {
        notable.push({ atS: round((scheduledAt - started) / 1000, 3), latencyMs: round(latency, 1), outcome });
      }
    };
    const req = request(
      { host: options.host, port: options.port, path: prepared.path, method: prepared.method, headers: prepared.headers, agent: options.agent, timeout: timeoutMs },
      (res) => {
        if (res.statusCode === 200) {
          res.resume();
          res.on('end', () => done('200'));
        } else {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text.length < 4096 ? (text += chunk) : undefined));
          res.on('end', () => done(`${String(res.statusCode)} ${errorName(text)}`.trim()));
        }
        res.on('error', () => done('response-error'));
      },
    );
    const handle = {
      abandon: () => {
        abandoned += 1;
        req.destroy();
        done('abandoned');
      },
    };
    inFlight.add(handle);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error) => done(error.message === 'timeout' ? 'timeout' : ((error as NodeJS.ErrnoException).code ?? error.message)));
    req.end(prepared.body);
  };

  await pace({ total, intervalMs, started, fire, ...(options.signal === undefined ? {} : { signal: options.signal }) });
  // Every request has its own timeout, so this ends; the grace is a second line of defence.
  const giveUpAt = performance.now() + timeoutMs + 1000;
  while (inFlight.size > 0 && performance.now() < giveUpAt) await sleep(5);
  for (const handle of [...inFlight]) handle.abandon();

  const perSecond = buckets.map((bucket, second) => secondStats(second, bucket));
  const all = Float64Array.from(buckets.flatMap((bucket) => bucket.latencies)).sort();
  const failures: Record<string, number> = {};
  for (const bucket of buckets) for (const [kind, count] of Object.entries(bucket.failures)) failures[kind] = (failures[kind] ?? 0) + count;
  return {
    startedAt,
    durationS: options.durationS,
    rate: options.rate,
    budgetMs,
    perSecond,
    sent: perSecond.reduce((sum, entry) => sum + entry.sent, 0),
    ok: perSecond.reduce((sum, entry) => sum + entry.ok, 0),
    failed: perSecond.reduce((sum, entry) => sum + entry.failed, 0),
    overBudget: perSecond.reduce((sum, entry) => sum + entry.overBudget, 0),
    p50Ms: stat(all, 50),
    p99Ms: stat(all, 99),
    maxMs: stat(all, 100),
    failures,
    notable: notable.sort((a, b) => a.atS - b.atS),
    abandoned,
    outcomes,
    latenciesMs,
  };
}

function secondStats(second: number, bucket: Bucket): SecondStats {
  const sorted = Float64Array.from(bucket.latencies).sort();
  return {
    second,
    sent: bucket.sent,
    ok: bucket.ok,
    failed: bucket.failed,
    overBudget: bucket.overBudget,
    p50Ms: stat(sorted, 50),
    p99Ms: stat(sorted, 99),
    maxMs: stat(sorted, 100),
    failures: bucket.failures,
  };
}

function stat(sorted: Float64Array, p: number): number | null {
  return sorted.length === 0 ? null : round(percentile(sorted, p), 2);
}

function round(value: number, digits: number): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

function errorName(body: string): string {
  try {
    const parsed = JSON.parse(body) as { errorName?: unknown };
    return typeof parsed.errorName === 'string' ? parsed.errorName : '';
  } catch {
    return '';
  }
}
