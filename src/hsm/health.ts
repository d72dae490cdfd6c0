import type { Logger } from 'pino';
import type { HsmCluster } from './cluster.js';
import type { MemberSnapshot } from './member.js';

export interface HealthMonitorSettings {
  readonly intervalMs: number;
  /** Results older than this are never reported (the spec allows at most one minute). */
  readonly maxAgeMs: number;
  /**
   * Deadline of one member's deep check in the background. Two calls in a row, each of which may wait
   * behind a data call on the member's agent: a member that is only slow must not time it out.
   */
  readonly probeTimeoutMs: number;
  /** Deadline of a deep check made while a GetHealthStatus caller waits (results all stale): within AWS's 250 ms. */
  readonly requestProbeTimeoutMs: number;
}

/** A failed member is re-probed this often, so recovery is seen quickly. */
const FAILED_REPROBE_MS = 1000;

/**
 * Runs the deep check (encrypt + decrypt with the health-check key) on every
 * member in the background, so GetHealthStatus answers from a fresh cache
 * instead of spending the caller's 250 ms on HSM round trips.
 */
export class HealthMonitor {
  private readonly cluster: HsmCluster;
  private readonly settings: HealthMonitorSettings;
  private readonly logger: Logger;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(cluster: HsmCluster, settings: HealthMonitorSettings, logger: Logger) {
    this.cluster = cluster;
    this.settings = settings;
    this.logger = logger;
  }

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => void this.tick(), Math.min(FAILED_REPROBE_MS, this.settings.intervalMs));
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Member states, probing now any member whose last result is older than `maxAgeMs`. */
  async fleet(): Promise<MemberSnapshot[]> {
    const now = Date.now();
    const stale = this.cluster.list().filter((member) => {
      const probe = member.snapshot().lastProbe;
      return probe === undefined || now - probe.at > this.settings.maxAgeMs;
    });
    if (stale.length > 0) await Promise.all(stale.map((member) => member.probe(this.settings.requestProbeTimeoutMs)));
    return this.cluster.snapshot();
  }

  /** One round of due probes; never overlaps with the previous round. */
  async tick(): Promise<void> {
    if (this.running !== undefined) return this.running;
    const now = Date.now();
    const due = this.cluster.list().filter((member) => {
      const probe = member.snapshot().lastProbe;
      if (probe === undefined) return true;
      const age = now - probe.at;
      return age >= this.settings.intervalMs || (!probe.ok && age >= FAILED_REPROBE_MS);
    });
    if (due.length === 0) return;
    this.running = (async () => {
      const results = await Promise.all(due.map(async (member) => ({ member, result: await member.probe(this.settings.probeTimeoutMs) })));
      for (const { member, result } of results) {
        if (!result.ok) this.logger.warn({ member: member.id, error: result.error }, 'deep health check failed');
      }
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }
}
