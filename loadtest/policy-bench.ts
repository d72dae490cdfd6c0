/**
 * `npm run bench:policy`: what a policy decision costs on the request path,
 * per tier, measured call by call in this process (no HTTP, no HSM):
 *
 *   none        no policy configured (the allow-all authorizer)
 *   evaluate    the policy engine alone, no cache
 *   memory-hit  the in-process LRU answers
 *   redis-hit   the in-process tier is off, so every decision comes from Redis
 *               (a local redis-server on loopback), MAC checked
 *
 * The targets: a cached decision adds <= 0.1 ms at p50 over no policy,
 * the Redis tier adds <= 1 ms at p99. Full-proxy throughput with policy on and
 * off comes from `npm run bench -- --policy loadtest/policy.bench.yaml`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { pino } from 'pino';
import { DecisionCache } from '../src/cache/decision-cache.js';
import { RedisTier } from '../src/cache/redis.js';
import type { RedisConfig } from '../src/config/schema.js';
import { fromRoot } from '../src/lib/paths.js';
import { ALLOW_ALL_AUTHORIZER, type AuthorizationInput, type Authorizer } from '../src/policy/authorizer.js';
import { PolicyProvider } from '../src/policy/provider.js';
import { percentile } from './open-loop.js';
import { startLocalRedis } from './local-redis.js';

interface TierResult {
  readonly tier: string;
  readonly calls: number;
  readonly cache: Record<string, number>;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly p50OverNoneUs: number;
  readonly p99OverNoneUs: number;
}

const logger = pino({ level: 'silent' });
/** Cache hits and misses per tier, so the report shows each tier really answered from where it claims. */
class Counters {
  readonly counts: Record<string, number> = {};

  count(tier: string, result: string): void {
    const name = `${tier}-${result}`;
    this.counts[name] = (this.counts[name] ?? 0) + 1;
  }

  reset(): void {
    for (const name of Object.keys(this.counts)) delete this.counts[name];
  }
}

/** Distinct principals, so the cache holds many keys as in production (all allowed by the bench policy). */
function inputs(count: number): AuthorizationInput[] {
  return Array.from({ length: count }, (_, index) => ({
    action: index % 2 === 0 ? 'xks:Encrypt' : 'xks:Decrypt',
    keyStore: 'dev',
    externalKeyId: 'foo',
    attributes: {
      awsPrincipalArn: `arn:aws:iam::123456789012:user/loadtest-${index}`,
      kmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
      kmsKeyAccount: '123456789012',
      kmsKeyRegion: 'us-east-1',
      kmsOperation: index % 2 === 0 ? 'Encrypt' : 'Decrypt',
      kmsRequestId: `request-${index}`,
    },
  }));
}

async function measure(authorizer: Authorizer, requests: AuthorizationInput[], calls: number): Promise<Float64Array> {
  const samples = new Float64Array(calls);
  for (let i = 0; i < calls; i++) {
    const input = requests[i % requests.length] as AuthorizationInput;
    const started = process.hrtime.bigint();
    const decision = await authorizer.authorize(input);
    samples[i] = Number(process.hrtime.bigint() - started) / 1000;
    if (!decision.allowed) throw new Error(`bench policy denied ${input.attributes['awsPrincipalArn'] ?? ''}: ${decision.reason}`);
  }
  return samples;
}

function provider(policyFile: string, cache: DecisionCache): Authorizer {
  const policy = new PolicyProvider({ file: policyFile, source: 'file', decisionTtlMs: 600_000, decisionCacheEntries: 0 }, cache, logger);
  policy.loadConfig({ file: policyFile, source: 'file', decisionTtlMs: 600_000, decisionCacheEntries: 0 }, undefined);
  return policy.current();
}

async function main(): Promise<void> {
  const options = new Command('bench:policy')
    .option('-n, --calls <n>', 'measured calls per tier', Number, 100_000)
    .option('--principals <n>', 'distinct principals (cache keys)', Number, 1000)
    .option('--policy <file>', 'policy file', fromRoot('loadtest', 'policy.bench.yaml'))
    .option('--no-redis', 'skip the Redis tier')
    .option('--json <file>', 'where to write the results (default loadtest/results/policy-<timestamp>.json)')
    .parse()
    .opts<{ calls: number; principals: number; policy: string; redis: boolean; json?: string }>();
  const requests = inputs(options.principals);
  const counters = new Counters();
  const tiers: Array<[string, Authorizer, number]> = [
    ['none', ALLOW_ALL_AUTHORIZER, options.calls],
    ['evaluate', provider(options.policy, new DecisionCache({ entries: 0, ttlMs: 0, redis: undefined, counters })), options.calls],
    ['memory-hit', provider(options.policy, new DecisionCache({ entries: 100_000, ttlMs: 600_000, redis: undefined, counters })), options.calls],
  ];
  const redis = options.redis ? await startLocalRedis() : undefined;
  let tier: RedisTier | undefined;
  try {
    if (redis !== undefined) {
      const config: RedisConfig = {
        url: redis.url,
        decisionSigningKey: { env: 'HYOK_BENCH_UNUSED' },
        commandTimeoutMs: 5,
        keyPrefix: 'bench:',
        breaker: { errorThresholdPercentage: 50, volumeThreshold: 10, resetTimeoutMs: 2000, rollingWindowMs: 10_000 },
      };
      tier = new RedisTier(config, logger);
      const ready = Date.now() + 5000;
      while (!tier.status().connected && Date.now() < ready) await new Promise((resolve) => setTimeout(resolve, 20));
      const cache = new DecisionCache({ entries: 0, ttlMs: 600_000, redis: { tier, signingKey: Buffer.from('bench-signing-key-of-at-least-32-characters') }, counters });
      tiers.push(['redis-hit', provider(options.policy, cache), Math.min(options.calls, 20_000)]);
    }
    const results: TierResult[] = [];
    let none: { p50: number; p99: number } | undefined;
    for (const [name, authorizer, calls] of tiers) {
      // Warm-up fills the caches (and, for Redis, waits for the fire-and-forget writes) and lets the JIT settle.
      await measure(authorizer, requests, Math.max(requests.length * 2, 10_000));
      await new Promise((resolve) => setTimeout(resolve, 200));
      counters.reset();
      const samples = (await measure(authorizer, requests, calls)).sort();
      const p50 = percentile(samples, 50);
      const p99 = percentile(samples, 99);
      none ??= { p50, p99 };
      const round = (value: number): number => Math.round(value * 100) / 100;
      const result = { tier: name, calls, cache: { ...counters.counts }, p50Us: round(p50), p99Us: round(p99), p50OverNoneUs: round(p50 - none.p50), p99OverNoneUs: round(p99 - none.p99) };
      results.push(result);
      process.stdout.write(`${name}: p50 ${result.p50Us} µs, p99 ${result.p99Us} µs (over no policy: p50 +${result.p50OverNoneUs} µs, p99 +${result.p99OverNoneUs} µs) cache ${JSON.stringify(result.cache)}\n`);
    }
    const report = {
      at: new Date().toISOString(),
      machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
      principals: options.principals,
      targets: { memoryHitP50OverNoneUs: 100, redisHitP99OverNoneUs: 1000 },
      results,
    };
    const file = options.json ?? join(fromRoot('loadtest', 'results'), `policy-${report.at.replace(/[:.]/g, '-')}.json`);
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(`wrote ${file}\n`);
  } finally {
    await tier?.close();
    await redis?.stop();
  }
}

await main();
