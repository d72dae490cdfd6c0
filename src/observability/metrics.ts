import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CacheCounters, CacheTier } from '../cache/decision-cache.js';
import type { RedisStatus } from '../cache/redis.js';
import type { HsmCluster } from '../hsm/cluster.js';
import { RecentRequests, type ApiSummary } from './recent-requests.js';

/** Sampling interval of the event-loop delay monitor. */
const EVENT_LOOP_RESOLUTION_MS = 10;

const HEALTH_VALUE = { ACTIVE: 2, DEGRADED: 1, UNAVAILABLE: 0 } as const;
const BREAKER_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const;

/**
 * Prometheus metrics. With `serve --workers N` the primary sums counters and
 * histograms across workers; each gauge says how it combines (`aggregator`):
 * a member is as healthy as the worst worker sees it. Labels are bounded: contract, API, key store name,
 * outcome (an error name), member id. Never a key id or a principal.
 */
export class ProxyMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'contract' | 'api' | 'key_store' | 'outcome'>;
  private readonly duration: Histogram<'contract' | 'api' | 'outcome'>;
  /** The last minute per API, for the SRE console. */
  private readonly recent = new RecentRequests();
  /** Agent calls per member since start (probes included), for the console's per-member chart. */
  private readonly memberTotals = new Map<string, { operations: number; errors: number }>();

  constructor(options: { defaultMetrics: boolean } = { defaultMetrics: true }) {
    if (options.defaultMetrics) {
      // Includes nodejs_eventloop_lag_p50/p90/p99_seconds from monitorEventLoopDelay.
      collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_RESOLUTION_MS });
      this.watchEventLoopDelay();
    }
    this.requests = new Counter({
      name: 'hyok_requests_total',
      help: 'Requests by contract, API, key store and outcome (success, aborted or the error name).',
      labelNames: ['contract', 'api', 'key_store', 'outcome'],
      registers: [this.registry],
    });
    this.duration = new Histogram({
      name: 'hyok_request_duration_seconds',
      help: 'Time from request start to response, by contract, API and outcome.',
      labelNames: ['contract', 'api', 'outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [this.registry],
    });
  }

  /**
   * nodejs_eventloop_lag_* report each timer interval whole, sampling interval
   * included: an idle loop reads ~10 ms. This gauge subtracts the interval, so it
   * is the delay a callback actually waited. Reset at each scrape, like those.
   */
  private watchEventLoopDelay(): void {
    const histogram = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
    histogram.enable();
    const delaySeconds = (recordedNs: number): number => Math.max(0, recordedNs / 1e6 - EVENT_LOOP_RESOLUTION_MS) / 1000;
    new Gauge({
      name: 'hyok_event_loop_delay_seconds',
      aggregator: 'max',
      help: `Event-loop delay since the last scrape (the ${EVENT_LOOP_RESOLUTION_MS} ms sampling interval removed), by quantile (0.5, 0.99, 1 for the maximum).`,
      labelNames: ['quantile'],
      registers: [this.registry],
      collect() {
        if (histogram.count > 0) {
          this.set({ quantile: '0.5' }, delaySeconds(histogram.percentile(50)));
          this.set({ quantile: '0.99' }, delaySeconds(histogram.percentile(99)));
          this.set({ quantile: '1' }, delaySeconds(histogram.max));
        }
        histogram.reset();
      },
    });
  }

  /** Decision-cache hits and misses per tier (memory, redis). */
  readonly decisionCache: CacheCounters = (() => {
    const counter = new Counter({
      name: 'hyok_policy_decision_cache_total',
      help: 'Policy decision cache lookups by tier (memory, redis) and result (hit, miss).',
      labelNames: ['tier', 'result'],
      registers: [this.registry],
    });
    return { count: (tier: CacheTier, result: 'hit' | 'miss') => counter.inc({ tier, result }) };
  })();

  watchRedis(status: () => RedisStatus): void {
    new Gauge({
      name: 'hyok_redis_up',
      aggregator: 'min',
      help: '1 when the Redis connection is ready and its breaker closed, else 0.',
      registers: [this.registry],
      collect() {
        const current = status();
        this.set(current.connected && current.breaker === 'closed' ? 1 : 0);
      },
    });
  }

  observeRequest(contract: string, api: string, keyStore: string, outcome: string, durationMs: number): void {
    this.requests.inc({ contract, api, key_store: keyStore, outcome });
    this.duration.observe({ contract, api, outcome: outcome === 'success' ? 'success' : 'error' }, durationMs / 1000);
    this.recent.record(contract, api, durationMs, outcome !== 'success');
  }

  /** Rate, errors, p50 and p99 per API over the last minute, or a shorter window (the console's "now"). */
  apiSummaries(windowSeconds?: number): ApiSummary[] {
    return this.recent.summaries(windowSeconds);
  }

  /** Agent calls and failed ones per member since start (this process). */
  memberOperationTotals(): Record<string, { readonly operations: number; readonly errors: number }> {
    return Object.fromEntries([...this.memberTotals].map(([member, totals]) => [member, { ...totals }]));
  }

  /** Requests and failures since start. */
  requestTotals(): { readonly requests: number; readonly errors: number } {
    return this.recent.totals();
  }

  /** 1 while a console drill runs, so dashboards can shade the drill's window. */
  watchDrills(active: () => { readonly scenario: string; readonly member: string } | undefined): void {
    new Gauge({
      name: 'hyok_drill_active',
      aggregator: 'max',
      help: 'A console drill in progress (1), by scenario and member; absent when none runs.',
      labelNames: ['scenario', 'member'],
      registers: [this.registry],
      collect() {
        this.reset();
        const drill = active();
        if (drill !== undefined) this.set({ scenario: drill.scenario, member: drill.member }, 1);
      },
    });
  }

  /** Gauges read from the cluster at scrape time, so they are never stale; agent calls observed as they happen. */
  watchCluster(cluster: HsmCluster): void {
    const operations = new Histogram({
      name: 'hyok_hsm_operation_duration_seconds',
      help: 'Agent calls to each HSM member (probes included) by operation and outcome (ok or the HSM error kind).',
      labelNames: ['member', 'operation', 'outcome'],
      buckets: [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5],
      registers: [this.registry],
    });
    const errors = new Counter({
      name: 'hyok_hsm_operation_errors_total',
      help: 'Failed agent calls to each HSM member by operation and HSM error kind (data and usage errors are the caller\'s, not the member\'s).',
      labelNames: ['member', 'operation', 'kind'],
      registers: [this.registry],
    });
    cluster.observeOperations(({ member, op, ms, error }) => {
      operations.observe({ member, operation: op, outcome: error ?? 'ok' }, ms / 1000);
      if (error !== undefined) errors.inc({ member, operation: op, kind: error });
      let totals = this.memberTotals.get(member);
      if (totals === undefined) {
        totals = { operations: 0, errors: 0 };
        this.memberTotals.set(member, totals);
      }
      totals.operations += 1;
      if (error !== undefined) totals.errors += 1;
    });
    new Gauge({
      name: 'hyok_hsm_member_agents',
      aggregator: 'sum',
      help: 'Agent processes (each one PKCS#11 session) of each HSM member: configured, and serving now.',
      labelNames: ['member', 'state'],
      registers: [this.registry],
      collect() {
        for (const member of cluster.snapshot()) {
          this.set({ member: member.id, state: 'configured' }, member.agents);
          this.set({ member: member.id, state: 'serving' }, member.servingAgents);
        }
      },
    });
    new Gauge({
      name: 'hyok_hsm_member_health',
      aggregator: 'min',
      help: 'Health of each HSM member: 2 ACTIVE, 1 DEGRADED, 0 UNAVAILABLE.',
      labelNames: ['member'],
      registers: [this.registry],
      collect() {
        for (const member of cluster.snapshot()) this.set({ member: member.id }, HEALTH_VALUE[member.health]);
      },
    });
    new Gauge({
      name: 'hyok_hsm_member_in_flight',
      aggregator: 'sum',
      help: 'Operations sent to each HSM member and not yet answered.',
      labelNames: ['member'],
      registers: [this.registry],
      collect() {
        for (const member of cluster.snapshot()) this.set({ member: member.id }, member.inFlight);
      },
    });
    new Gauge({
      name: 'hyok_hsm_member_breaker_state',
      aggregator: 'max',
      help: 'Circuit breaker of each HSM member: 0 closed, 1 half-open, 2 open.',
      labelNames: ['member'],
      registers: [this.registry],
      collect() {
        for (const member of cluster.snapshot()) this.set({ member: member.id }, BREAKER_VALUE[member.breaker]);
      },
    });
    new Gauge({
      name: 'hyok_hsm_member_fenced',
      aggregator: 'max',
      help: '1 while an HSM member is fenced (by an operator, the key-material check or the watchdog), else 0.',
      labelNames: ['member'],
      registers: [this.registry],
      collect() {
        for (const member of cluster.snapshot()) this.set({ member: member.id }, member.fence === undefined ? 0 : 1);
      },
    });
  }

  /** Keys per effective lifecycle state, read from the fleet state at scrape time. */
  watchKeyStates(count: () => Readonly<Record<string, number>>): void {
    new Gauge({
      name: 'hyok_keys',
      aggregator: 'max',
      help: 'Configured keys by effective lifecycle state.',
      labelNames: ['state'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [state, value] of Object.entries(count())) this.set({ state }, value);
      },
    });
  }
}
