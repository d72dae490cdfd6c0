import { readFileSync } from 'node:fs';
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { Logger } from 'pino';

const FETCH_TIMEOUT_MS = 5000;

/**
 * The admin API's JWT verification keys. Fetched (URL) or read (file) before
 * the listener opens and refreshed in the background; a request is verified
 * against the keys in memory and never waits for a fetch. A failed refresh
 * keeps the previous keys.
 */
export class JwksSource {
  private readonly source: { file: string } | { url: string };
  private readonly refreshIntervalMs: number;
  private readonly logger: Logger;
  private keySet: JWTVerifyGetKey | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(source: { file: string } | { url: string }, refreshIntervalMs: number, logger: Logger) {
    this.source = source;
    this.refreshIntervalMs = refreshIntervalMs;
    this.logger = logger;
  }

  /** Loads the keys once (start-up fails without them) and schedules refreshes. */
  async start(): Promise<void> {
    this.keySet = createLocalJWKSet(await this.load());
    this.timer = setInterval(() => void this.refresh(), this.refreshIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** For jwtVerify: the keys held in memory. */
  readonly getKey: JWTVerifyGetKey = (header, token) => {
    if (this.keySet === undefined) throw new Error('JWKS not loaded');
    return this.keySet(header, token);
  };

  async refresh(): Promise<void> {
    try {
      this.keySet = createLocalJWKSet(await this.load());
    } catch (error) {
      this.logger.warn({ err: (error as Error).message }, 'JWKS refresh failed; keeping the previous keys');
    }
  }

  private async load(): Promise<JSONWebKeySet> {
    let text: string;
    if ('file' in this.source) {
      text = readFileSync(this.source.file, 'utf8');
    } else {
      // redirect: 'error' so a compromised redirect cannot swap the key source.
      const response = await fetch(this.source.url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), redirect: 'error' });
      if (!response.ok) throw new Error(`JWKS fetch returned ${response.status}`);
      text = await response.text();
    }
    const parsed = JSON.parse(text) as JSONWebKeySet;
    if (!Array.isArray(parsed.keys)) throw new Error('JWKS has no "keys" array');
    return parsed;
  }
}
