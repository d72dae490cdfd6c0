import type { Logger } from 'pino';
import type { DecisionCache } from '../cache/decision-cache.js';
import type { Config } from '../config/schema.js';
import type { StateDocument } from '../state/document.js';
import { ALLOW_ALL_AUTHORIZER, type AuthorizationDecision, type AuthorizationInput, type Authorizer } from './authorizer.js';
import { PolicyEngine } from './engine.js';

/** A policy engine in front of the two-tier decision cache. */
class CachedAuthorizer implements Authorizer {
  private readonly engine: PolicyEngine;
  private readonly cache: DecisionCache;

  constructor(engine: PolicyEngine, cache: DecisionCache) {
    this.engine = engine;
    this.cache = cache;
  }

  async authorize(input: AuthorizationInput): Promise<AuthorizationDecision> {
    const now = Date.now();
    const key = this.engine.decisionKey(input, now);
    const cached = await this.cache.get(key);
    if (cached !== undefined) return cached;
    const decision = this.engine.authorize(input, now);
    this.cache.set(key, decision);
    return decision;
  }
}

/**
 * The policy in force: from the policy file, or (source "managed") from the
 * fleet state, where the admin API puts it. Rebuilt on reload and whenever
 * the managed policy changes; the version-keyed cache needs no flush.
 */
export class PolicyProvider {
  private readonly cache: DecisionCache;
  private readonly logger: Logger;
  private config: Config['policy'];
  private engine: PolicyEngine | undefined;
  private authorizer: Authorizer = ALLOW_ALL_AUTHORIZER;
  private managedVersion: string | undefined;

  constructor(config: Config['policy'], cache: DecisionCache, logger: Logger) {
    this.config = config;
    this.cache = cache;
    this.logger = logger;
  }

  get source(): 'file' | 'managed' {
    return this.config.source;
  }

  current(): Authorizer {
    return this.authorizer;
  }

  currentEngine(): PolicyEngine | undefined {
    return this.engine;
  }

  /** Loads the file policy (at start-up and on reload); throws ConfigError on an invalid file so the reload is refused. */
  loadConfig(config: Config['policy'], state: StateDocument | undefined): void {
    const fileEngine = config.file === undefined ? undefined : PolicyEngine.fromFile(config.file);
    this.config = config;
    if (config.source === 'managed' && state?.policy !== undefined) {
      this.install(PolicyEngine.fromText(state.policy.text, 'managed policy'));
      this.managedVersion = state.policy.version;
      return;
    }
    this.managedVersion = undefined;
    this.install(fileEngine);
  }

  /** A managed policy changed in the fleet state. */
  onState(state: StateDocument): void {
    if (this.config.source !== 'managed' || state.policy === undefined || state.policy.version === this.managedVersion) return;
    try {
      this.install(PolicyEngine.fromText(state.policy.text, 'managed policy'));
      this.managedVersion = state.policy.version;
    } catch (error) {
      // Validated before it was stored; a failure here means the document was tampered with. Keep the old policy.
      this.logger.error({ err: (error as Error).message }, 'managed policy in the state is invalid; keeping the previous one');
    }
  }

  private install(engine: PolicyEngine | undefined): void {
    this.engine = engine;
    if (engine === undefined) {
      this.logger.warn('no policy configured: every authenticated request for a configured key is allowed');
      this.authorizer = ALLOW_ALL_AUTHORIZER;
      return;
    }
    this.authorizer = new CachedAuthorizer(engine, this.cache);
    this.logger.info({ policyVersion: engine.version.slice(0, 12), source: this.config.source, reads: engine.attributesRead }, 'policy in force');
  }
}
