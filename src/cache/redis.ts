import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type CircuitBreaker from 'opossum';
import type { Logger } from 'pino';
import { readSecret } from '../config/load.js';
import type { RedisConfig } from '../config/schema.js';
import { createBreaker } from '../lib/breaker.js';
import type { StateNotifier } from '../state/service.js';

type Client = Redis | Cluster;

function hostPort(value: string): { host: string; port: number } {
  const index = value.lastIndexOf(':');
  return { host: value.slice(0, index), port: Number(value.slice(index + 1)) };
}

/**
 * Options that keep Redis off the critical path: a command either answers
 * within a few milliseconds or fails, nothing queues while Redis is away, and
 * the client keeps reconnecting in the background (ioredis pitfalls, hsm-notes).
 */
function baseOptions(config: RedisConfig, password: string | undefined): RedisOptions {
  return {
    commandTimeout: config.commandTimeoutMs,
    connectTimeout: 1000,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    enableReadyCheck: true,
    lazyConnect: false,
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 1000),
    ...(password === undefined ? {} : { password }),
  };
}

function connect(config: RedisConfig, purpose: 'commands' | 'subscriber'): Client {
  const password = config.password === undefined ? undefined : readSecret(config.password, 'redis.password');
  const base = baseOptions(config, password);
  // The subscriber is off the request path: a millisecond timeout there only loses the subscription (and an
  // automatic re-subscribe that times out is an unhandled rejection inside ioredis). It subscribes itself on every
  // 'ready' instead.
  const options: RedisOptions =
    purpose === 'subscriber'
      ? { ...base, commandTimeout: undefined, autoResubscribe: false, connectionName: 'hyok-proxy-subscriber' }
      : { ...base, connectionName: 'hyok-proxy-commands' };
  if (config.cluster !== undefined) {
    // In Cluster mode the offline-queue option only counts at the cluster level (hsm-notes).
    return new Cluster(config.cluster.nodes.map(hostPort), {
      enableOfflineQueue: false,
      clusterRetryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 1000),
      redisOptions: options,
    });
  }
  if (config.sentinel !== undefined) {
    return new Redis({ ...options, sentinels: config.sentinel.sentinels.map(hostPort), name: config.sentinel.masterName });
  }
  return new Redis(config.url as string, options);
}

export interface RedisStatus {
  readonly connected: boolean;
  readonly breaker: 'closed' | 'open' | 'half-open';
}

/**
 * Redis through a circuit breaker: when Redis is down, slow or flushed, calls
 * fail fast (or are skipped while the breaker is open) and callers carry on
 * without it. Nothing here ever throws to a request.
 */
export class RedisTier {
  private readonly client: Client;
  private readonly prefix: string;
  private readonly logger: Logger;
  private readonly breaker: CircuitBreaker<[() => Promise<unknown>], unknown>;

  constructor(config: RedisConfig, logger: Logger) {
    this.client = connect(config, 'commands');
    this.prefix = config.keyPrefix;
    this.logger = logger;
    this.client.on('error', (error: Error) => this.logger.debug({ err: error.message }, 'redis error'));
    this.client.on('ready', () => this.logger.info('redis connected'));
    this.client.on('end', () => this.logger.warn('redis connection closed'));
    this.breaker = createBreaker('redis', (command: () => Promise<unknown>) => command(), config.breaker, () => true);
    this.breaker.on('open', () => this.logger.warn('redis breaker opened; running without Redis'));
    this.breaker.on('close', () => this.logger.info('redis breaker closed'));
  }

  status(): RedisStatus {
    return {
      connected: this.client.status === 'ready',
      breaker: this.breaker.opened ? 'open' : this.breaker.halfOpen ? 'half-open' : 'closed',
    };
  }

  /** The value, or undefined on a miss, an error, a timeout or while the breaker is open. */
  async get(key: string): Promise<string | undefined> {
    if (!this.usable()) return undefined;
    try {
      const value = (await this.breaker.fire(() => this.client.get(this.prefix + key))) as string | null;
      return value ?? undefined;
    } catch {
      return undefined;
    }
  }

  /** Best effort, never awaited by requests. */
  set(key: string, value: string, ttlMs: number): void {
    if (!this.usable() || ttlMs <= 0) return;
    this.breaker.fire(() => this.client.set(this.prefix + key, value, 'PX', ttlMs)).catch(() => undefined);
  }

  async publish(channel: string, message: string): Promise<void> {
    if (!this.usable()) return;
    await this.breaker.fire(() => this.client.publish(this.prefix + channel, message)).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.breaker.shutdown();
    this.client.disconnect();
  }

  get keyPrefix(): string {
    return this.prefix;
  }

  /** Without a connection, a command would only fail after its timeout; skip it. */
  private usable(): boolean {
    return this.client.status === 'ready' && !this.breaker.opened;
  }
}

const STATE_CHANNEL = 'state';

/** State-change notifications over Redis pub/sub (a dedicated subscriber connection). */
export class RedisStateNotifier implements StateNotifier {
  private readonly tier: RedisTier;
  private readonly subscriber: Client;
  private readonly logger: Logger;

  constructor(config: RedisConfig, tier: RedisTier, logger: Logger) {
    this.tier = tier;
    this.logger = logger;
    this.subscriber = connect(config, 'subscriber');
    this.subscriber.on('error', (error: Error) => this.logger.debug({ err: error.message }, 'redis subscriber error'));
  }

  publish(version: number): void {
    void this.tier.publish(STATE_CHANNEL, String(version));
  }

  subscribe(listener: (version: number | undefined) => void): void {
    const channel = this.tier.keyPrefix + STATE_CHANNEL;
    const subscribe = (): void => {
      this.subscriber.subscribe(channel).then(
        () => {
          this.logger.info({ channel }, 'subscribed to state changes');
          // Changes published while this replica was not subscribed are caught by one sync now.
          listener(undefined);
        },
        (error: unknown) => this.logger.warn({ err: (error as Error).message }, 'redis subscribe failed; retried on the next reconnect, state sync polls meanwhile'),
      );
    };
    // On every (re)connection, including the first if it is already up.
    this.subscriber.on('ready', subscribe);
    if (this.subscriber.status === 'ready') subscribe();
    this.subscriber.on('message', (received: string, message: string) => {
      if (received !== channel) return;
      const version = Number(message);
      if (Number.isInteger(version)) listener(version);
    });
  }

  async close(): Promise<void> {
    this.subscriber.disconnect();
  }
}
