import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.js';
import type { HsmCluster } from '../hsm/cluster.js';
import { AdminRequestError } from './errors.js';

/**
 * Drills an SRE starts from the console: take one member out of service for a
 * while, watch traffic move to the others, and get it back automatically.
 * They only use the operator actions (fence, drain, restore), so a drill can
 * never do what an operator could not; killing or freezing an HSM process is
 * the job of `npm run drill`, outside the proxy.
 */

export const DRILL_SCENARIOS = ['fence-one', 'drain-one'] as const;
export type DrillScenario = (typeof DRILL_SCENARIOS)[number];

export const DRILL_DURATION_S = { min: 5, max: 600 } as const;

export interface DrillStart {
  readonly scenario: DrillScenario;
  /** Which member; the default is the serving member with the least work in flight. */
  readonly member?: string;
  readonly durationSeconds: number;
  readonly actor: string;
  readonly reason?: string;
}

export interface DrillView {
  readonly id: string;
  readonly scenario: DrillScenario;
  readonly member: string;
  readonly startedBy: string;
  readonly startedAt: string;
  readonly endsAt: string;
  readonly endedAt: string | null;
  /** running; completed (restored on time); stopped (ended early by an operator); failed (the member did not come back). */
  readonly status: 'running' | 'completed' | 'stopped' | 'failed';
  readonly detail: string | null;
  /** Requests this process answered since the drill began, and how many of them failed. */
  readonly requests: number;
  readonly errors: number;
}

interface RunningDrill {
  readonly id: string;
  readonly scenario: DrillScenario;
  readonly member: string;
  readonly startedBy: string;
  readonly startedAt: number;
  readonly endsAt: number;
  readonly baseline: { readonly requests: number; readonly errors: number };
  timer: NodeJS.Timeout | undefined;
  ending?: Promise<void>;
  endedAt?: number;
  status: DrillView['status'];
  detail?: string;
  final?: { readonly requests: number; readonly errors: number };
}

export interface DrillDependencies {
  readonly cluster: HsmCluster;
  readonly audit: AuditLog;
  readonly logger: Logger;
  /** Requests and failures since start (the metrics' running totals). */
  readonly totals: () => { readonly requests: number; readonly errors: number };
}

export class MemberDrills {
  private readonly deps: DrillDependencies;
  private last: RunningDrill | undefined;

  constructor(deps: DrillDependencies) {
    this.deps = deps;
  }

  /** The running drill's scenario and member, for the hyok_drill_active gauge. */
  active(): { readonly scenario: string; readonly member: string } | undefined {
    const drill = this.last;
    return drill?.status === 'running' ? { scenario: drill.scenario, member: drill.member } : undefined;
  }

  current(): DrillView | undefined {
    return this.last === undefined ? undefined : this.view(this.last);
  }

  start(request: DrillStart): DrillView {
    if (this.last?.status === 'running') throw new AdminRequestError(409, 'conflict', `drill ${this.last.id} is still running`);
    const { cluster } = this.deps;
    const serving = cluster.snapshot().filter((member) => member.mode === 'serving' && member.health !== 'UNAVAILABLE');
    const chosen =
      request.member === undefined
        ? [...serving].sort((a, b) => a.inFlight - b.inFlight || a.id.localeCompare(b.id))[0]
        : serving.find((member) => member.id === request.member);
    if (request.member !== undefined && cluster.member(request.member) === undefined) {
      throw new AdminRequestError(404, 'not_found', `no member '${request.member.slice(0, 64)}'`);
    }
    if (chosen === undefined) throw new AdminRequestError(409, 'conflict', 'the drill needs a serving, reachable member to take out');
    // A drill proves failover; one that takes out the last serving member is an outage.
    if (serving.length < 2) throw new AdminRequestError(409, 'conflict', 'the drill would leave no other serving member');
    const member = cluster.member(chosen.id);
    if (member === undefined) throw new AdminRequestError(404, 'not_found', `no member '${chosen.id}'`);

    const now = Date.now();
    const drill: RunningDrill = {
      id: randomUUID(),
      scenario: request.scenario,
      member: chosen.id,
      startedBy: request.actor,
      startedAt: now,
      endsAt: now + request.durationSeconds * 1000,
      baseline: this.deps.totals(),
      timer: undefined,
      status: 'running',
    };
    const why = `drill ${drill.id} (${drill.scenario}${request.reason === undefined ? '' : `: ${request.reason}`})`;
    if (request.scenario === 'fence-one') member.fenceOff(why, request.actor);
    else member.drain(request.actor);
    drill.timer = setTimeout(() => void this.finish(drill, 'completed', 'proxy:drill'), request.durationSeconds * 1000);
    drill.timer.unref();
    this.last = drill;
    this.deps.logger.warn({ drill: drill.id, scenario: drill.scenario, member: drill.member, actor: request.actor }, 'drill started');
    return this.view(drill);
  }

  /** Ends the running drill now and restores its member. */
  async stop(actor: string): Promise<DrillView> {
    const drill = this.last;
    if (drill?.status !== 'running' || drill.ending !== undefined) throw new AdminRequestError(409, 'conflict', 'no drill is running');
    await this.finish(drill, 'stopped', actor);
    return this.view(drill);
  }

  /** On shutdown: the member's fence dies with the process, only the timer needs clearing. */
  close(): void {
    clearTimeout(this.last?.timer);
  }

  /** The first caller ends the drill; a second (the timer racing a stop) waits for the same end. */
  private finish(drill: RunningDrill, status: 'completed' | 'stopped', actor: string): Promise<void> {
    drill.ending ??= this.end(drill, status, actor);
    return drill.ending;
  }

  /** Restores the member and audits the end; the drill reads as running until both are done. */
  private async end(drill: RunningDrill, status: 'completed' | 'stopped', actor: string): Promise<void> {
    clearTimeout(drill.timer);
    const endedAt = Date.now();
    const totals = this.deps.totals();
    const final = { requests: totals.requests - drill.baseline.requests, errors: totals.errors - drill.baseline.errors };
    let detail: string | undefined;
    try {
      const snapshot = await this.deps.cluster.restore(drill.member, actor);
      if (snapshot?.mode === 'fenced') detail = `member stays fenced: ${snapshot.fence?.reason ?? 'unknown'}`;
    } catch (error) {
      detail = `restore failed: ${(error as Error).message}`;
    }
    const finalStatus = detail === undefined ? status : 'failed';
    const summary = `${drill.scenario} of ${drill.member} ${finalStatus}: ${final.requests} requests, ${final.errors} failed${detail === undefined ? '' : `; ${detail}`}; started by ${drill.startedBy}`;
    try {
      // The proxy ends the drill and restores the member; an operator's early stop has its own drill.stop record.
      this.deps.audit.write({
        event: 'admin.action',
        actor: 'proxy',
        via: 'none',
        roles: [],
        action: 'drill.end',
        target: drill.member,
        outcome: detail === undefined ? 'success' : 'failure',
        reason: summary.slice(0, 500),
        sourceIp: undefined,
      });
    } catch (error) {
      this.deps.logger.error({ err: error }, 'drill end not audited');
    }
    drill.endedAt = endedAt;
    drill.final = final;
    drill.detail = detail;
    drill.status = finalStatus;
    this.deps.logger.warn({ drill: drill.id, status: finalStatus, requests: final.requests, errors: final.errors }, 'drill ended');
  }

  private view(drill: RunningDrill): DrillView {
    const figures = drill.final ?? (() => {
      const totals = this.deps.totals();
      return { requests: totals.requests - drill.baseline.requests, errors: totals.errors - drill.baseline.errors };
    })();
    const iso = (ms: number): string => new Date(ms).toISOString();
    return {
      id: drill.id,
      scenario: drill.scenario,
      member: drill.member,
      startedBy: drill.startedBy,
      startedAt: iso(drill.startedAt),
      endsAt: iso(drill.endsAt),
      endedAt: drill.endedAt === undefined ? null : iso(drill.endedAt),
      status: drill.status,
      detail: drill.detail ?? null,
      requests: figures.requests,
      errors: figures.errors,
    };
  }
}
