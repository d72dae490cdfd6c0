import { createHmac, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { AuthorizationDecision } from '../policy/authorizer.js';
import type { RedisTier } from './redis.js';

export type CacheTier = 'memory' | 'redis';

export interface CacheCounters {
  count(tier: CacheTier, result: 'hit' | 'miss'): void;
}

/**
 * Two tiers of policy decisions: an in-process LRU, always on, and Redis when
 * configured, shared by every replica. Keys already embed the policy version,
 * so a reload makes every older decision unreachable; entries also expire.
 * Decisions in Redis are MACed with a key only the proxies hold: whoever can
 * write to Redis still cannot forge an "allowed".
 */
export class DecisionCache {
  private readonly memory: LRUCache<string, AuthorizationDecision> | undefined;
  private readonly redis: RedisTier | undefined;
  private readonly ttlMs: number;
  private readonly counters: CacheCounters;
  private readonly signingKey: Buffer | undefined;

  constructor(options: { entries: number; ttlMs: number; redis: { tier: RedisTier; signingKey: Buffer } | undefined; counters: CacheCounters }) {
    this.ttlMs = options.ttlMs;
    this.memory = options.entries > 0 && options.ttlMs > 0 ? new LRUCache({ max: options.entries, ttl: options.ttlMs }) : undefined;
    this.redis = options.redis?.tier;
    this.signingKey = options.redis?.signingKey;
    this.counters = options.counters;
  }

  async get(key: string): Promise<AuthorizationDecision | undefined> {
    const local = this.memory?.get(key);
    if (local !== undefined) {
      this.counters.count('memory', 'hit');
      return local;
    }
    this.counters.count('memory', 'miss');
    if (this.redis === undefined) return undefined;
    const shared = await this.redis.get(`decision:${key}`);
    if (shared === undefined) {
      this.counters.count('redis', 'miss');
      return undefined;
    }
    const decision = this.verify(key, shared);
    if (decision === undefined) {
      this.counters.count('redis', 'miss');
      return undefined;
    }
    this.counters.count('redis', 'hit');
    this.memory?.set(key, decision);
    return decision;
  }

  set(key: string, decision: AuthorizationDecision): void {
    this.memory?.set(key, decision);
    if (this.redis === undefined) return;
    const json = JSON.stringify(decision);
    this.redis.set(`decision:${key}`, `${this.mac(key, json)}.${json}`, this.ttlMs);
  }

  private mac(key: string, json: string): string {
    return createHmac('sha256', this.signingKey as Buffer).update(key).update('\0').update(json).digest('hex');
  }

  /** A value from Redis counts only if its MAC is ours and it is well formed. */
  private verify(key: string, stored: string): AuthorizationDecision | undefined {
    const dot = stored.indexOf('.');
    if (dot !== 64) return undefined;
    const json = stored.slice(dot + 1);
    const expected = Buffer.from(this.mac(key, json), 'hex');
    const given = Buffer.from(stored.slice(0, dot), 'hex');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    return parseDecision(json);
  }

  clear(): void {
    this.memory?.clear();
  }
}

/** A decision read back from Redis is untrusted input: only a well-formed one is used. */
function parseDecision(text: string): AuthorizationDecision | undefined {
  try {
    const value = JSON.parse(text) as Partial<AuthorizationDecision>;
    if (typeof value.allowed !== 'boolean' || typeof value.reason !== 'string') return undefined;
    if (value.statementId !== undefined && typeof value.statementId !== 'string') return undefined;
    return { allowed: value.allowed, statementId: value.statementId, reason: value.reason };
  } catch {
    return undefined;
  }
}
