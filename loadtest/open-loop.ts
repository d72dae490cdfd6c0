import { Agent, request } from 'node:https';
import { performance } from 'node:perf_hooks';
import type { PreparedRequest } from './xks-requests.js';

/**
 * An open-loop load generator: requests are scheduled at evenly spaced
 * instants (1/rate apart) and each latency is measured from its scheduled
 * instant, not from when a connection became free. A slow server therefore
 * shows up as latency instead of silently lowering the offered rate
 * (no coordinated omission). Keep-alive TLS connections, no pipelining.
 */

export interface OpenLoopOptions {
  readonly host: string;
  readonly port: number;
  readonly rate: number;
  readonly durationS: number;
  readonly connections: number;
  readonly requests: readonly PreparedRequest[];
  /** Per-request timeout; a timed-out request counts as an error. */
  readonly timeoutMs?: number;
}

export interface OpenLoopResult {
  readonly sent: number;
  readonly ok: number;
  readonly errors: number;
  readonly statusCounts: Record<string, number>;
  /** Sorted latencies in ms, measured from the scheduled send time. */
  readonly latenciesMs: Float64Array;
  readonly elapsedS: number;
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

/**
 * Calls `fire(index, scheduledAt)` for request 0..total-1 at `started + index * intervalMs`, evenly paced; a slot
 * that came while the event loop was late is fired at once, so latency measured from `scheduledAt` counts the wait.
 * Resolves with the number fired (fewer than `total` when `signal` aborted).
 */
export function pace(options: { total: number; intervalMs: number; started: number; fire: (index: number, scheduledAt: number) => void; signal?: AbortSignal }): Promise<number> {
  const { total, intervalMs, started, fire, signal } = options;
  let sent = 0;
  return new Promise((resolve) => {
    const tick = (): void => {
      if (signal?.aborted === true) {
        resolve(sent);
        return;
      }
      const now = performance.now();
      while (sent < total && started + sent * intervalMs <= now) {
        fire(sent, started + sent * intervalMs);
        sent += 1;
      }
      if (sent < total) setTimeout(tick, Math.max(0, started + sent * intervalMs - performance.now()));
      else resolve(sent);
    };
    tick();
  });
}

export async function runOpenLoop(options: OpenLoopOptions): Promise<OpenLoopResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: options.connections, rejectUnauthorized: false });
  const total = Math.floor(options.rate * options.durationS);
  const intervalMs = 1000 / options.rate;
  const latencies = new Float64Array(total);
  const statusCounts: Record<string, number> = {};
  let finished = 0;
  let ok = 0;
  let errors = 0;
  const started = performance.now();

  const fire = (index: number, scheduledAt: number): void => {
    const prepared = options.requests[index % options.requests.length] as PreparedRequest;
    const done = (status: string): void => {
      latencies[index] = performance.now() - scheduledAt;
      statusCounts[status] = (statusCounts[status] ?? 0) + 1;
      if (status === '200') ok += 1;
      else errors += 1;
      finished += 1;
    };
    const req = request(
      { host: options.host, port: options.port, path: prepared.path, method: prepared.method, headers: prepared.headers, agent, timeout: options.timeoutMs ?? 5000 },
      (res) => {
        res.resume();
        res.on('end', () => done(String(res.statusCode)));
        res.on('error', () => done('response-error'));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error) => done((error as NodeJS.ErrnoException).code ?? error.message));
    req.end(prepared.body);
  };

  const sent = await pace({ total, intervalMs, started, fire });
  while (finished < total) await new Promise((resolve) => setTimeout(resolve, 5));
  agent.destroy();
  return { sent, ok, errors, statusCounts, latenciesMs: latencies.sort(), elapsedS: (performance.now() - started) / 1000 };
}
