import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { Deadline } from '../lib/deadline.js';
import { HsmError } from './errors.js';
import type { HsmMember, MemberSnapshot } from './member.js';
import type { AgentOperation, AgentResults } from './protocol.js';

/** Below this, a retry on another member could not finish inside the request's budget. */
const MIN_RETRY_BUDGET_MS = 5;

export interface ClusterResult<T> {
  readonly result: T;
  /** The member that produced the result (for the audit log). */
  readonly member: string;
  readonly attempts: number;
  /** Time in the cluster, retries included. */
  readonly latencyMs: number;
}

/**
 * Routes each operation to the least-loaded member able to serve (outstanding
 * work per unit of weight) and, when a member fails in a way that does not blame
 * the request, retries once on another member within the request's deadline.
 */
export class HsmCluster {
  private readonly members: readonly HsmMember[];
  private readonly logger: Logger;
  private rotation = 0;

  constructor(members: readonly HsmMember[], logger: Logger) {
    if (members.length === 0) throw new Error('an HSM cluster needs at least one member');
    this.members = members;
    this.logger = logger;
  }

  async start(): Promise<void> {
    await Promise.all(this.members.map((member) => member.start()));
    const serving = this.members.filter((member) => member.health() !== 'UNAVAILABLE').length;
    this.logger.info({ serving, members: this.members.length }, 'HSM cluster started');
  }

  async close(): Promise<void> {
    await Promise.all(this.members.map((member) => member.close()));
  }

  list(): readonly HsmMember[] {
    return this.members;
  }

  snapshot(): MemberSnapshot[] {
    return this.members.map((member) => member.snapshot());
  }

  canServe(): boolean {
    return this.members.some((member) => member.health() !== 'UNAVAILABLE');
  }

  async execute<K extends AgentOperation['op']>(
    operation: Extract<AgentOperation, { op: K }>,
    deadline: Deadline,
  ): Promise<ClusterResult<AgentResults[K]>> {
    const started = performance.now();
    const tried = new Set<HsmMember>();
    let lastError: HsmError | undefined;
    for (let attempt = 1; attempt <= 2; attempt++) {
      const member = this.pick(tried);
      if (member === undefined) break;
      tried.add(member);
      // The first attempt keeps half the budget back, so a retry elsewhere can still finish in time.
      const canRetry = attempt === 1 && this.members.some((other) => !tried.has(other) && other.load() !== Number.POSITIVE_INFINITY);
      const budget = canRetry ? deadline.remainingMs() / 2 : deadline.remainingMs();
      try {
        const result = await member.execute(operation, budget);
        return { result, member: member.id, attempts: attempt, latencyMs: performance.now() - started };
      } catch (error) {
        lastError = error instanceof HsmError ? error : new HsmError('internal', String(error), { member: member.id });
        if (!lastError.retryable || deadline.remainingMs() < MIN_RETRY_BUDGET_MS) break;
        this.logger.debug({ member: member.id, kind: lastError.kind }, 'retrying on another member');
      }
    }
    throw lastError ?? new HsmError('unavailable', 'no HSM member can serve');
  }

  /** Lowest load wins; the rotating start spreads ties evenly across equal members. */
  private pick(exclude: ReadonlySet<HsmMember>): HsmMember | undefined {
    const count = this.members.length;
    const start = this.rotation++ % count;
    let best: HsmMember | undefined;
    let bestLoad = Number.POSITIVE_INFINITY;
    for (let i = 0; i < count; i++) {
      const member = this.members[(start + i) % count] as HsmMember;
      if (exclude.has(member)) continue;
      const load = member.load();
      if (load < bestLoad) {
        best = member;
        bestLoad = load;
      }
    }
    return best;
  }
}
