import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { Deadline } from '../lib/deadline.js';
import { HsmError } from './errors.js';
import type { ConsistencyReport, KeyConsistency } from './key-consistency.js';
import type { HsmMember, MemberControl, MemberSnapshot, OperationObserver } from './member.js';
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
  private consistency: KeyConsistency | undefined;

  constructor(members: readonly HsmMember[], logger: Logger) {
    if (members.length === 0) throw new Error('an HSM cluster needs at least one member');
    this.members = members;
    this.logger = logger;
  }

  /** Key-material checks: at start-up, periodically, and for every agent before it serves. */
  useKeyConsistency(consistency: KeyConsistency): void {
    this.consistency = consistency;
    for (const member of this.members) member.setVerifier(consistency.verifyAgent);
  }

  async start(): Promise<void> {
    await Promise.all(this.members.map((member) => member.start()));
    if (this.consistency !== undefined) {
      await this.consistency.verify();
      this.consistency.start();
    }
    const serving = this.members.filter((member) => member.health() !== 'UNAVAILABLE').length;
    this.logger.info({ serving, members: this.members.length }, 'HSM cluster started');
  }

  /** Every agent call of every member, probes included, goes to the observer (metrics). */
  observeOperations(observer: OperationObserver): void {
    for (const member of this.members) member.setObserver(observer);
  }

  keyConsistencyReport(): ConsistencyReport | undefined {
    return this.consistency?.lastReport();
  }

  member(id: string): HsmMember | undefined {
    return this.members.find((member) => member.id === id);
  }

  /** Puts a member back into service; if its key material still differs, the check fences it again at once. */
  async restore(id: string, actor: string, relay = true): Promise<MemberSnapshot | undefined> {
    const member = this.member(id);
    if (member === undefined) return undefined;
    member.restore(actor, relay);
    await this.consistency?.verify();
    return member.snapshot();
  }

  /** Operator actions on any member are told to `listener` (another worker process applies them with applyControl). */
  onControl(listener: (control: MemberControl) => void): void {
    for (const member of this.members) member.setControlListener(listener);
  }

  /** Applies an action another worker process took, without relaying it back. */
  async applyControl(control: MemberControl): Promise<void> {
    const member = this.member(control.member);
    if (member === undefined) return;
    if (control.action === 'drain') member.drain(control.actor, false);
    else if (control.action === 'fence') member.fenceOff(control.reason ?? 'fenced by an operator', control.actor, false);
    else await this.restore(control.member, control.actor, false);
  }

  async close(): Promise<void> {
    this.consistency?.stop();
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
    if ('label' in operation && this.consistency?.isQuarantined(operation.label) === true) {
      throw new HsmError('misconfigured', 'key material differs across HSM members; the key is quarantined');
    }
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
        // A key missing on one member may exist on the others (provisioning in progress): worth one retry too.
        const worthRetry = lastError.retryable || lastError.kind === 'key-not-found';
        if (!worthRetry || deadline.remainingMs() < MIN_RETRY_BUDGET_MS) break;
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
