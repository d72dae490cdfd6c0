import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { DecisionCache, type CacheTier } from '../../../src/cache/decision-cache.js';
import type { RedisTier } from '../../../src/cache/redis.js';
import type { AuthorizationDecision } from '../../../src/policy/authorizer.js';

// --- fixtures ------------------------------------------------------------------

const SIGNING_KEY = Buffer.from('0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0', 'hex');
const KEY = 'a'.repeat(64);
const OTHER_KEY = 'b'.repeat(64);
const TTL_MS = 30_000;

const ALLOW: AuthorizationDecision = { allowed: true, statementId: 'allow-ebs', reason: 'allowed by statement allow-ebs' };
const DENY: AuthorizationDecision = { allowed: false, statementId: undefined, reason: 'no statement matched; default effect deny' };

/** The part of RedisTier DecisionCache uses: get and set, over a Map. Anyone with access may edit `values`. */
class FakeRedis {
  readonly values = new Map<string, string>();
  readonly gets: string[] = [];
  readonly sets: Array<{ key: string; value: string; ttlMs: number }> = [];

  async get(key: string): Promise<string | undefined> {
    this.gets.push(key);
    return this.values.get(key);
  }

  set(key: string, value: string, ttlMs: number): void {
    this.sets.push({ key, value, ttlMs });
    this.values.set(key, value);
  }

  asTier(): RedisTier {
    return this as unknown as RedisTier;
  }
}

class Counters {
  readonly counts: string[] = [];

  count(tier: CacheTier, result: 'hit' | 'miss'): void {
    this.counts.push(`${tier}:${result}`);
  }
}

function cache(redis: FakeRedis | undefined, options: { signingKey?: Buffer; entries?: number; counters?: Counters } = {}): DecisionCache {
  return new DecisionCache({
    entries: options.entries ?? 100,
    ttlMs: TTL_MS,
    redis: redis === undefined ? undefined : { tier: redis.asTier(), signingKey: options.signingKey ?? SIGNING_KEY },
    counters: options.counters ?? new Counters(),
  });
}

/** What a proxy stores: "<hex HMAC-SHA256(key || 0x00 || json)>.<json>". */
function signed(key: string, json: string, signingKey: Buffer = SIGNING_KEY): string {
  return `${createHmac('sha256', signingKey).update(key).update('\0').update(json).digest('hex')}.${json}`;
}

/** A cache with an empty memory tier, as on another replica: every read goes to Redis. */
function otherReplica(redis: FakeRedis, options: { signingKey?: Buffer; counters?: Counters } = {}): DecisionCache {
  return cache(redis, { ...options, entries: 0 });
}

// --- tests ---------------------------------------------------------------------

describe('DecisionCache: signed decisions in Redis', () => {
  it('stores "<HMAC>.<json>" under decision:<key> with the cache TTL', () => {
    const redis = new FakeRedis();
    cache(redis).set(KEY, ALLOW);
    assert.equal(redis.sets.length, 1);
    const [stored] = redis.sets;
    assert.equal(stored?.key, `decision:${KEY}`);
    assert.equal(stored?.ttlMs, TTL_MS);
    assert.equal(stored?.value, signed(KEY, JSON.stringify(ALLOW)));
  });

  it('lets another replica holding the same signing key read the decision back', async () => {
    const redis = new FakeRedis();
    cache(redis).set(KEY, ALLOW);
    cache(redis).set(OTHER_KEY, DENY);
    const counters = new Counters();
    const reader = otherReplica(redis, { counters });
    assert.deepEqual(await reader.get(KEY), ALLOW);
    assert.deepEqual(await reader.get(OTHER_KEY), DENY);
    assert.deepEqual(counters.counts, ['memory:miss', 'redis:hit', 'memory:miss', 'redis:hit']);
  });

  it('accepts a value a test signs independently with the right key (the format is exactly HMAC over key, NUL, json)', async () => {
    const redis = new FakeRedis();
    redis.values.set(`decision:${KEY}`, signed(KEY, '{"allowed":true,"statementId":"s","reason":"r"}'));
    assert.deepEqual(await otherReplica(redis).get(KEY), { allowed: true, statementId: 's', reason: 'r' });
  });

  it('treats a value signed with another key as a miss', async () => {
    const redis = new FakeRedis();
    cache(redis, { signingKey: randomBytes(32) }).set(KEY, ALLOW);
    const counters = new Counters();
    assert.equal(await otherReplica(redis, { counters }).get(KEY), undefined);
    assert.deepEqual(counters.counts, ['memory:miss', 'redis:miss']);
  });

  it('treats an edited decision (deny turned into allow, signature kept) as a miss', async () => {
    const redis = new FakeRedis();
    cache(redis).set(KEY, DENY);
    const stored = redis.values.get(`decision:${KEY}`) as string;
    const forged = stored.replace('"allowed":false', '"allowed":true');
    assert.notEqual(forged, stored);
    redis.values.set(`decision:${KEY}`, forged);
    const counters = new Counters();
    assert.equal(await otherReplica(redis, { counters }).get(KEY), undefined);
    assert.deepEqual(counters.counts, ['memory:miss', 'redis:miss']);
  });

  it('treats a decision copied from another decision key as a miss (the MAC binds the key)', async () => {
    const redis = new FakeRedis();
    cache(redis).set(OTHER_KEY, ALLOW);
    redis.values.set(`decision:${KEY}`, redis.values.get(`decision:${OTHER_KEY}`) as string);
    const reader = otherReplica(redis);
    assert.equal(await reader.get(KEY), undefined);
    assert.deepEqual(await reader.get(OTHER_KEY), ALLOW, 'the original still verifies under its own key');
  });

  it('treats forged and malformed values as misses', async () => {
    const json = JSON.stringify(ALLOW);
    const mac = signed(KEY, json).slice(0, 64);
    const forgeries = [
      json,
      `.${json}`,
      `${'0'.repeat(64)}.${json}`,
      `${mac.slice(0, 63)}.${json}`,
      `${mac}0.${json}`,
      `${mac.slice(0, 62)}zz.${json}`,
      `${mac}`,
      `${mac}.`,
      `${mac}.${json} `,
      createHmac('sha256', SIGNING_KEY).update(json).digest('hex') + `.${json}`,
      createHmac('sha256', SIGNING_KEY).update(`${KEY}${json}`).digest('hex') + `.${json}`,
      '',
    ];
    for (const [index, value] of forgeries.entries()) {
      const redis = new FakeRedis();
      redis.values.set(`decision:${KEY}`, value);
      assert.equal(await otherReplica(redis).get(KEY), undefined, `forgery ${index}: ${value.slice(0, 80)}`);
    }
  });

  it('refuses correctly signed values that are not well-formed decisions', async () => {
    const bodies = [
      'not json',
      'null',
      '[]',
      '{"allowed":"true","reason":"r"}',
      '{"allowed":1,"reason":"r"}',
      '{"allowed":true}',
      '{"allowed":true,"reason":7}',
      '{"allowed":true,"reason":"r","statementId":42}',
    ];
    for (const body of bodies) {
      const redis = new FakeRedis();
      redis.values.set(`decision:${KEY}`, signed(KEY, body));
      assert.equal(await otherReplica(redis).get(KEY), undefined, body);
    }
  });

  it('keeps only the decision fields of a signed value', async () => {
    const redis = new FakeRedis();
    redis.values.set(`decision:${KEY}`, signed(KEY, '{"allowed":false,"reason":"r","statementId":"s","extra":"x","__proto__":{"allowed":true}}'));
    const decision = await otherReplica(redis).get(KEY);
    assert.deepEqual(decision, { allowed: false, statementId: 's', reason: 'r' });
    assert.deepEqual(Object.keys(decision ?? {}).sort(), ['allowed', 'reason', 'statementId']);
  });

  it('does not promote a rejected value into memory, and keeps asking Redis', async () => {
    const redis = new FakeRedis();
    redis.values.set(`decision:${KEY}`, signed(KEY, JSON.stringify(ALLOW), randomBytes(32)));
    const counters = new Counters();
    const reader = cache(redis, { counters });
    assert.equal(await reader.get(KEY), undefined);
    assert.equal(await reader.get(KEY), undefined);
    assert.deepEqual(redis.gets, [`decision:${KEY}`, `decision:${KEY}`]);
    assert.deepEqual(counters.counts, ['memory:miss', 'redis:miss', 'memory:miss', 'redis:miss']);
    // Once a genuine value replaces the forgery, it is used.
    cache(redis).set(KEY, DENY);
    assert.deepEqual(await reader.get(KEY), DENY);
  });

  it('promotes a verified value into memory: the next read does not reach Redis', async () => {
    const redis = new FakeRedis();
    cache(redis).set(KEY, ALLOW);
    const counters = new Counters();
    const reader = cache(redis, { counters });
    assert.deepEqual(await reader.get(KEY), ALLOW);
    // Even if Redis is tampered with afterwards, the verified copy in memory stands.
    redis.values.set(`decision:${KEY}`, 'garbage');
    assert.deepEqual(await reader.get(KEY), ALLOW);
    assert.deepEqual(redis.gets, [`decision:${KEY}`]);
    assert.deepEqual(counters.counts, ['memory:miss', 'redis:hit', 'memory:hit']);
  });

  it('answers a plain miss when Redis has nothing', async () => {
    const redis = new FakeRedis();
    const counters = new Counters();
    assert.equal(await cache(redis, { counters }).get(KEY), undefined);
    assert.deepEqual(counters.counts, ['memory:miss', 'redis:miss']);
  });
});

describe('DecisionCache: memory tier', () => {
  it('serves its own decisions from memory without Redis configured', async () => {
    const counters = new Counters();
    const local = cache(undefined, { counters });
    assert.equal(await local.get(KEY), undefined);
    local.set(KEY, DENY);
    assert.deepEqual(await local.get(KEY), DENY);
    assert.equal(await local.get(OTHER_KEY), undefined);
    assert.deepEqual(counters.counts, ['memory:miss', 'memory:hit', 'memory:miss']);
  });

  it('clear() empties memory; Redis still answers for the same key', async () => {
    const redis = new FakeRedis();
    const local = cache(redis);
    local.set(KEY, ALLOW);
    local.clear();
    assert.deepEqual(await local.get(KEY), ALLOW);
    assert.deepEqual(redis.gets, [`decision:${KEY}`]);
  });

  it('caches nothing in memory with zero entries or a zero TTL', async () => {
    for (const options of [
      { entries: 0, ttlMs: TTL_MS },
      { entries: 100, ttlMs: 0 },
    ]) {
      const local = new DecisionCache({ ...options, redis: undefined, counters: new Counters() });
      local.set(KEY, ALLOW);
      assert.equal(await local.get(KEY), undefined, JSON.stringify(options));
    }
  });
});
