import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { HostSecond } from './host-monitor.js';
import type { Expectation, FaultEvent, Scenario } from './scenarios.js';
import { scheduledAtS, type SecondStats, type NotableRequest, type TrafficResult } from './traffic.js';
import { percentile } from '../open-loop.js';

/**
 * The drill report: a JSON document (per-second timeline of successes,
 * failures, p50/p99 and member health, the fault and restore events, totals,
 * time to detect and time to recover, and the checks of the product promise)
 * and a self-contained HTML page with an inline SVG chart of the same.
 */

export const REPORT_SCHEMA = 'hyok-proxy/drill-report/v1';

export type Health = 'ACTIVE' | 'DEGRADED' | 'UNAVAILABLE';

export interface MemberState {
  readonly health: Health;
  readonly breaker: string;
  readonly servingAgents: number;
  readonly lastError: string | null;
}

export interface HealthSample {
  /** Seconds since traffic started. */
  readonly atS: number;
  /** Per member id; null when the admin API did not answer. */
  readonly members: Record<string, MemberState> | null;
  readonly error?: string;
}

export interface DrillSettings {
  readonly durationS: number;
  readonly rate: number;
  readonly slowMs: number | null;
  readonly p11kitPrefix: string;
  readonly nodes: ReadonlyArray<{ member: string; token: string; socket: string; faultShim: boolean }>;
  readonly hsm: Readonly<Record<string, number>>;
  readonly machine: { readonly cpus: number; readonly node: string };
  readonly logs: string;
}

export interface Detection {
  readonly member: string;
  readonly faultAtS: number;
  /** First health sample showing the fault (null: never seen). */
  readonly detectedAtS: number | null;
  readonly timeToDetectS: number | null;
  /** The health the member showed when the fault was detected. */
  readonly health: Health | null;
  /** Every health other than ACTIVE the member showed from the fault until 0.25 s after the restore. */
  readonly healthSeen: Health[];
}

export interface Recovery {
  readonly member: string;
  /** The last restore of this member's node. */
  readonly restoreAtS: number;
  /**
   * First sample after the restore from which the member stays ACTIVE for RECOVERED_FOR_S (or to the end
   * of the run, when that comes sooner); null: not recovered.
   */
  readonly recoveredAtS: number | null;
  readonly timeToRecoverS: number | null;
  /** Samples after recovery in which the member was not ACTIVE (e.g. one slow call on a loaded host). */
  readonly laterNotActiveSamples: number;
  /** Health in the last sample of the run. */
  readonly finalHealth: Health | null;
}

/** How long a member must stay ACTIVE to count as recovered. */
export const RECOVERED_FOR_S = 1;

export interface ServiceImpact {
  /** Seconds from the first fault to the first failed request (null: none failed). */
  readonly firstFailureAtS: number | null;
  /** Seconds since traffic started of the last failed request. */
  readonly lastFailureAtS: number | null;
  /** Slowest failed request, and the p99 of failed requests: an outage must fail fast. */
  readonly maxFailureLatencyMs: number | null;
  readonly p99FailureLatencyMs: number | null;
  /** Outage only: the first restore, and the first success after it. */
  readonly restoreAtS: number | null;
  readonly firstOkAfterRestoreS: number | null;
  readonly serviceResumedAfterS: number | null;
  /** Requests that failed after service resumed. */
  readonly failedAfterResume: number;
}

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface TimelineEntry extends SecondStats {
  /** Worst health of each member sampled during this second (null: no sample). */
  readonly members: Record<string, Health | null>;
  /** How busy the machine was (null: not measured for this second). */
  readonly host: Omit<HostSecond, 'second'> | null;
}

export interface DrillReport {
  readonly schema: typeof REPORT_SCHEMA;
  readonly scenario: { readonly name: string; readonly description: string; readonly expectation: Expectation };
  /** The headline figures, under the names the drill contract uses (issue 3); `totals` has the same and more. */
  readonly requests: number;
  readonly failed: number;
  readonly errorsByName: Record<string, number>;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly maxMs: number | null;
  /** Fault to the faulted member leaving ACTIVE (fenced, breaker open or degraded), worst member; null: never seen. */
  readonly failoverMs: number | null;
  /** Restore to the member ACTIVE again, worst member; null: not recovered (or nothing restored). */
  readonly recoveryMs: number | null;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly aborted: boolean;
  readonly settings: DrillSettings;
  readonly events: FaultEvent[];
  readonly totals: {
    readonly sent: number;
    readonly ok: number;
    readonly failed: number;
    readonly overBudget: number;
    /** Latency budget per request (AWS KMS gives up after 250 ms). */
    readonly budgetMs: number;
    readonly abandoned: number;
    readonly p50Ms: number | null;
    readonly p99Ms: number | null;
    readonly maxMs: number | null;
    readonly failures: Record<string, number>;
  };
  readonly detection: Detection[];
  readonly recovery: Recovery[];
  readonly service: ServiceImpact;
  readonly checks: Check[];
  readonly passed: boolean;
  readonly timeline: TimelineEntry[];
  /** Failed or over-budget requests (at most 500). */
  readonly notable: NotableRequest[];
  readonly healthSamples: HealthSample[];
}

export interface ReportInput {
  readonly scenario: Scenario;
  readonly traffic: TrafficResult;
  readonly events: FaultEvent[];
  readonly samples: HealthSample[];
  readonly host: readonly HostSecond[];
  readonly memberIds: readonly string[];
  readonly settings: DrillSettings;
  readonly aborted: boolean;
}

const SEVERITY: Record<Health, number> = { ACTIVE: 0, DEGRADED: 1, UNAVAILABLE: 2 };

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}

function healthAt(sample: HealthSample, member: string): Health | null {
  return sample.members?.[member]?.health ?? null;
}

function detect(member: string, faultAtS: number, restoreAtS: number, samples: readonly HealthSample[], expected: ReadonlyArray<Health>): Detection {
  const during = samples.filter((sample) => sample.atS >= faultAtS && sample.atS <= restoreAtS + 0.25);
  const seen = [...new Set(during.map((sample) => healthAt(sample, member)).filter((health): health is Health => health !== null && health !== 'ACTIVE'))];
  const hit = during.find((sample) => {
    const health = healthAt(sample, member);
    return health !== null && (expected.includes(health) || (health !== 'ACTIVE' && expected.includes('DEGRADED')));
  });
  return {
    member,
    faultAtS,
    detectedAtS: hit?.atS ?? null,
    timeToDetectS: hit === undefined ? null : round3(hit.atS - faultAtS),
    health: hit === undefined ? null : healthAt(hit, member),
    healthSeen: seen.sort((a, b) => SEVERITY[a] - SEVERITY[b]),
  };
}

function recover(member: string, restoreAtS: number, samples: readonly HealthSample[]): Recovery {
  const after = samples.filter((sample) => sample.atS >= restoreAtS && sample.members !== null);
  const last = after[after.length - 1];
  let recovered: number | undefined;
  for (let i = 0; i < after.length && recovered === undefined; i++) {
    const start = after[i] as HealthSample;
    if (healthAt(start, member) !== 'ACTIVE') continue;
    let held = true;
    for (let j = i + 1; j < after.length && (after[j] as HealthSample).atS < start.atS + RECOVERED_FOR_S; j++) {
      if (healthAt(after[j] as HealthSample, member) !== 'ACTIVE') held = false;
    }
    if (held) recovered = i;
  }
  const recoveredAtS = recovered === undefined ? null : (after[recovered] as HealthSample).atS;
  const laterNotActiveSamples = recovered === undefined ? 0 : after.slice(recovered).filter((sample) => healthAt(sample, member) !== 'ACTIVE').length;
  return {
    member,
    restoreAtS,
    recoveredAtS,
    timeToRecoverS: recoveredAtS === null ? null : round3(recoveredAtS - restoreAtS),
    laterNotActiveSamples,
    finalHealth: last === undefined ? null : healthAt(last, member),
  };
}

function serviceImpact(input: ReportInput, firstFaultS: number | null): ServiceImpact {
  const { traffic } = input;
  const restore = input.scenario.expectation === 'outage' ? input.events.find((event) => event.kind === 'restore') : undefined;
  const restoreAtS = restore?.atS ?? null;
  let firstFailure: number | undefined;
  let lastFailure: number | undefined;
  let maxFailureLatencyMs: number | null = null;
  const failureLatencies: number[] = [];
  let firstOkAfterRestore: number | undefined;
  for (let index = 0; index < traffic.outcomes.length; index++) {
    const outcome = traffic.outcomes[index];
    const atS = scheduledAtS(traffic, index);
    if (outcome === 2) {
      firstFailure ??= index;
      lastFailure = index;
      maxFailureLatencyMs = Math.max(maxFailureLatencyMs ?? 0, Math.round((traffic.latenciesMs[index] as number) * 10) / 10);
      failureLatencies.push(traffic.latenciesMs[index] as number);
    } else if (outcome === 1 && restoreAtS !== null && atS >= restoreAtS) firstOkAfterRestore ??= index;
  }
  let failedAfterResume = 0;
  if (firstOkAfterRestore !== undefined) for (let index = firstOkAfterRestore; index < traffic.outcomes.length; index++) if (traffic.outcomes[index] === 2) failedAfterResume += 1;
  const firstOkAfterRestoreS = firstOkAfterRestore === undefined ? null : round3(scheduledAtS(traffic, firstOkAfterRestore));
  return {
    firstFailureAtS: firstFailure === undefined || firstFaultS === null ? null : round3(scheduledAtS(traffic, firstFailure) - firstFaultS),
    lastFailureAtS: lastFailure === undefined ? null : round3(scheduledAtS(traffic, lastFailure)),
    maxFailureLatencyMs,
    p99FailureLatencyMs: failureLatencies.length === 0 ? null : Math.round(percentile(Float64Array.from(failureLatencies).sort(), 99) * 10) / 10,
    restoreAtS,
    firstOkAfterRestoreS,
    serviceResumedAfterS: firstOkAfterRestoreS === null || restoreAtS === null ? null : round3(firstOkAfterRestoreS - restoreAtS),
    failedAfterResume,
  };
}

/** The largest of per-member times in seconds, in ms; null when any member has none (or there are none). */
function worstMs(seconds: ReadonlyArray<number | null>): number | null {
  if (seconds.length === 0 || seconds.some((value) => value === null)) return null;
  return Math.round(Math.max(...(seconds as number[])) * 1000);
}

export function buildReport(input: ReportInput): DrillReport {
  const { scenario, traffic, events, samples, memberIds } = input;
  const faults = events.filter((event) => event.kind === 'fault');
  const restores = events.filter((event) => event.kind === 'restore');
  const firstFaultS = faults[0]?.atS ?? null;

  const detection: Detection[] = [];
  const recovery: Recovery[] = [];
  for (const index of scenario.faulted) {
    const member = memberIds[index] as string;
    const fault = faults.find((event) => event.node === member);
    if (fault === undefined) continue;
    const restore = restores.find((event) => event.node === member && event.atS >= fault.atS);
    detection.push(detect(member, fault.atS, restore?.atS ?? traffic.durationS, samples, scenario.faultHealth));
  }
  for (const index of scenario.recovers) {
    const member = memberIds[index] as string;
    const last = restores.filter((event) => event.node === member).pop();
    if (last !== undefined) recovery.push(recover(member, last.atS, samples));
  }
  const service = serviceImpact(input, firstFaultS);

  const timeline: TimelineEntry[] = traffic.perSecond.map((second) => {
    const members: Record<string, Health | null> = {};
    for (const member of memberIds) {
      let worst: Health | null = null;
      for (const sample of samples) {
        if (sample.atS < second.second || sample.atS >= second.second + 1) continue;
        const health = healthAt(sample, member);
        if (health !== null && (worst === null || SEVERITY[health] > SEVERITY[worst])) worst = health;
      }
      members[member] = worst;
    }
    const measured = input.host.find((entry) => entry.second === second.second);
    let host: Omit<HostSecond, 'second'> | null = null;
    if (measured !== undefined) {
      const { second: _measuredSecond, ...rest } = measured;
      host = rest;
    }
    return { ...second, members, host };
  });

  const checks: Check[] = [];
  if (scenario.expectation === 'failover') {
    checks.push({ name: 'no failed request', ok: traffic.failed === 0, detail: `${traffic.failed} of ${traffic.sent} failed` });
    checks.push({ name: `every request within ${traffic.budgetMs} ms`, ok: traffic.overBudget === 0, detail: `${traffic.overBudget} over budget, max ${String(traffic.maxMs)} ms` });
  } else {
    checks.push({
      name: `failures are fast (within ${traffic.budgetMs} ms)`,
      ok: service.maxFailureLatencyMs === null || service.maxFailureLatencyMs <= traffic.budgetMs,
      detail: `slowest failure ${String(service.maxFailureLatencyMs)} ms`,
    });
    checks.push({ name: 'service resumes after one node returns', ok: service.serviceResumedAfterS !== null, detail: `first success ${String(service.serviceResumedAfterS)} s after the restore` });
    checks.push({ name: 'no failure once service resumed', ok: service.failedAfterResume === 0, detail: `${service.failedAfterResume} failed after resuming` });
  }
  for (const entry of detection) {
    checks.push({
      name: `${entry.member} reported ${scenario.faultHealth.join(' or ')} while faulted`,
      ok: entry.detectedAtS !== null && entry.healthSeen.some((health) => (scenario.faultHealth as readonly Health[]).includes(health)),
      detail:
        entry.detectedAtS === null
          ? 'stayed ACTIVE'
          : `left ACTIVE after ${String(entry.timeToDetectS)} s (${String(entry.health)}); showed ${entry.healthSeen.join(', ')}`,
    });
  }
  for (const entry of recovery) {
    checks.push({
      name: `${entry.member} ACTIVE again after restore`,
      ok: entry.recoveredAtS !== null,
      detail:
        entry.recoveredAtS === null
          ? `not ACTIVE for ${RECOVERED_FOR_S} s after the restore (last: ${String(entry.finalHealth)})`
          : `after ${String(entry.timeToRecoverS)} s${entry.laterNotActiveSamples > 0 ? `; ${entry.laterNotActiveSamples} later sample(s) not ACTIVE, last ${String(entry.finalHealth)}` : ''}`,
    });
  }
  if (samples.length === 0 || samples.every((sample) => sample.members === null)) checks.push({ name: 'member health sampled', ok: false, detail: 'the admin API never answered' });

  const startedAt = new Date(traffic.startedAt).toISOString();
  return {
    schema: REPORT_SCHEMA,
    scenario: { name: scenario.name, description: scenario.description, expectation: scenario.expectation },
    requests: traffic.sent,
    failed: traffic.failed,
    errorsByName: traffic.failures,
    p50Ms: traffic.p50Ms,
    p99Ms: traffic.p99Ms,
    maxMs: traffic.maxMs,
    failoverMs: worstMs(detection.map((entry) => entry.timeToDetectS)),
    recoveryMs: worstMs(recovery.map((entry) => entry.timeToRecoverS)),
    startedAt,
    finishedAt: new Date().toISOString(),
    aborted: input.aborted,
    settings: input.settings,
    events,
    totals: {
      sent: traffic.sent,
      ok: traffic.ok,
      failed: traffic.failed,
      overBudget: traffic.overBudget,
      budgetMs: traffic.budgetMs,
      abandoned: traffic.abandoned,
      p50Ms: traffic.p50Ms,
      p99Ms: traffic.p99Ms,
      maxMs: traffic.maxMs,
      failures: traffic.failures,
    },
    detection,
    recovery,
    service,
    checks,
    passed: !input.aborted && checks.every((check) => check.ok),
    timeline,
    notable: traffic.notable,
    healthSamples: samples,
  };
}

// ---------------------------------------------------------------------------------------------
// HTML

const COLORS = { ok: '#2e8b57', failed: '#d62728', p50: '#1f77b4', p99: '#ff7f0e', max: '#999999', budget: '#d62728', fault: '#d62728', restore: '#2ca02c' };
const HEALTH_COLORS: Record<Health, string> = { ACTIVE: '#2ca02c', DEGRADED: '#f0ad4e', UNAVAILABLE: '#d62728' };

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

function niceCeiling(value: number): number {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

function polyline(points: Array<[number, number] | null>, color: string, width = 1.5): string {
  const runs: string[] = [];
  let current: string[] = [];
  for (const point of points) {
    if (point === null) {
      if (current.length > 0) runs.push(current.join(' '));
      current = [];
    } else current.push(`${point[0].toFixed(1)},${point[1].toFixed(1)}`);
  }
  if (current.length > 0) runs.push(current.join(' '));
  return runs.map((run) => `<polyline fill="none" stroke="${color}" stroke-width="${width}" points="${run}"/>`).join('');
}

/** The chart: requests per second, latency (with the budget line) and member health lanes, on one time axis. */
export function renderChart(report: DrillReport): string {
  const width = 1000;
  const left = 90;
  const right = 20;
  const plotWidth = width - left - right;
  const seconds = Math.max(1, report.timeline.length);
  const x = (s: number): number => left + (s / seconds) * plotWidth;
  const members = report.settings.nodes.map((node) => node.member);
  // A band at the top carries the fault and restore labels, staggered over three rows.
  const eventTop = 14;
  const rpsTop = eventTop + 3 * 12 + 30;
  const rpsHeight = 150;
  const latTop = rpsTop + rpsHeight + 40;
  const latHeight = 180;
  const hostTop = latTop + latHeight + 40;
  const hostHeight = 70;
  const laneTop = hostTop + hostHeight + 40;
  const laneHeight = 18;
  const height = laneTop + members.length * (laneHeight + 6) + 40;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`);
  parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);

  // Requests per second: stacked ok / failed bars.
  const rpsMax = niceCeiling(Math.max(1, ...report.timeline.map((entry) => entry.sent)));
  const yRps = (value: number): number => rpsTop + rpsHeight - (value / rpsMax) * rpsHeight;
  parts.push(`<text x="${left}" y="${rpsTop - 10}" font-weight="bold">Requests per second (green: ok, red: failed)</text>`);
  for (const tick of [0, rpsMax / 2, rpsMax]) {
    parts.push(`<line x1="${left}" x2="${width - right}" y1="${yRps(tick)}" y2="${yRps(tick)}" stroke="#eeeeee"/><text x="${left - 6}" y="${yRps(tick) + 4}" text-anchor="end">${tick}</text>`);
  }
  const barWidth = Math.max(1, plotWidth / seconds - 1);
  for (const entry of report.timeline) {
    const x0 = x(entry.second) + 0.5;
    if (entry.ok > 0) parts.push(`<rect x="${x0.toFixed(1)}" y="${yRps(entry.ok).toFixed(1)}" width="${barWidth.toFixed(1)}" height="${(rpsTop + rpsHeight - yRps(entry.ok)).toFixed(1)}" fill="${COLORS.ok}" shape-rendering="crispEdges"><title>${entry.second} s: ${entry.ok} ok</title></rect>`);
    if (entry.failed > 0) {
      parts.push(
        `<rect x="${x0.toFixed(1)}" y="${yRps(entry.ok + entry.failed).toFixed(1)}" width="${barWidth.toFixed(1)}" height="${(yRps(entry.ok) - yRps(entry.ok + entry.failed)).toFixed(1)}" fill="${COLORS.failed}" shape-rendering="crispEdges"><title>${entry.second} s: ${entry.failed} failed ${escapeHtml(JSON.stringify(entry.failures))}</title></rect>`,
      );
    }
  }

  // Latency: p50, p99, max per second, and the 250 ms budget.
  const budget = report.totals.budgetMs;
  const latValues = report.timeline.flatMap((entry) => [entry.p99Ms ?? 0, entry.maxMs ?? 0]);
  const latMax = niceCeiling(Math.min(2500, Math.max(budget * 1.2, ...latValues)));
  const yLat = (value: number): number => latTop + latHeight - (Math.min(value, latMax) / latMax) * latHeight;
  parts.push(`<text x="${left}" y="${latTop - 10}" font-weight="bold">Latency per second, ms (blue: p50, orange: p99, grey: max; red dashes: ${budget} ms budget)</text>`);
  for (const tick of [0, latMax / 4, latMax / 2, (3 * latMax) / 4, latMax]) {
    parts.push(`<line x1="${left}" x2="${width - right}" y1="${yLat(tick)}" y2="${yLat(tick)}" stroke="#eeeeee"/><text x="${left - 6}" y="${yLat(tick) + 4}" text-anchor="end">${tick}</text>`);
  }
  parts.push(`<line x1="${left}" x2="${width - right}" y1="${yLat(budget)}" y2="${yLat(budget)}" stroke="${COLORS.budget}" stroke-dasharray="6,4"/>`);
  const mid = (entry: TimelineEntry): number => x(entry.second + 0.5);
  parts.push(polyline(report.timeline.map((entry) => (entry.maxMs === null ? null : [mid(entry), yLat(entry.maxMs)])), COLORS.max, 1));
  parts.push(polyline(report.timeline.map((entry) => (entry.p99Ms === null ? null : [mid(entry), yLat(entry.p99Ms)])), COLORS.p99, 2));
  parts.push(polyline(report.timeline.map((entry) => (entry.p50Ms === null ? null : [mid(entry), yLat(entry.p50Ms)])), COLORS.p50, 2));

  // The machine: CPU busy (bars, left axis) and the proxy's largest event-loop delay (line, right axis).
  const delays = report.timeline.map((entry) => entry.host?.proxyLoopDelayMaxMs ?? null);
  const delayMax = niceCeiling(Math.max(100, ...delays.map((value) => value ?? 0)));
  const yCpu = (pct: number): number => hostTop + hostHeight - (pct / 100) * hostHeight;
  const yDelay = (ms: number): number => hostTop + hostHeight - (Math.min(ms, delayMax) / delayMax) * hostHeight;
  parts.push(`<text x="${left}" y="${hostTop - 10}" font-weight="bold">Machine (CPU busy %, left: dark the drill's processes, light others; purple: proxy event-loop delay, max ms, right)</text>`);
  parts.push(`<rect x="${left}" y="${hostTop}" width="${plotWidth}" height="${hostHeight}" fill="none" stroke="#eeeeee"/>`);
  parts.push(`<text x="${left - 6}" y="${hostTop + 4}" text-anchor="end">100%</text><text x="${left - 6}" y="${hostTop + hostHeight + 4}" text-anchor="end">0</text>`);
  parts.push(`<text x="${width - right + 2}" y="${hostTop + 4}" font-size="9">${delayMax}</text>`);
  for (const entry of report.timeline) {
    const pct = entry.host?.cpuBusyPct;
    if (pct === null || pct === undefined) continue;
    const own = Math.min(pct, entry.host?.drillCpuPct ?? 0);
    const title = `${entry.second} s: CPU ${pct}% busy (drill ${String(entry.host?.drillCpuPct)}%, others ${String(entry.host?.otherCpuPct)}%), proxy loop delay ${String(entry.host?.proxyLoopDelayMaxMs)} ms, drill loop delay ${String(entry.host?.drillLoopDelayMaxMs)} ms`;
    const x0 = (x(entry.second) + 0.5).toFixed(1);
    parts.push(`<rect x="${x0}" y="${yCpu(pct).toFixed(1)}" width="${barWidth.toFixed(1)}" height="${(yCpu(own) - yCpu(pct)).toFixed(1)}" fill="#d8d8d8" shape-rendering="crispEdges"><title>${title}</title></rect>`);
    parts.push(`<rect x="${x0}" y="${yCpu(own).toFixed(1)}" width="${barWidth.toFixed(1)}" height="${(hostTop + hostHeight - yCpu(own)).toFixed(1)}" fill="#8c8c8c" shape-rendering="crispEdges"><title>${title}</title></rect>`);
  }
  parts.push(polyline(report.timeline.map((entry, i) => (delays[i] === null || delays[i] === undefined ? null : [mid(entry), yDelay(delays[i] as number)])), '#9467bd', 1.5));

  // Member health lanes, from the raw samples.
  parts.push(`<text x="${left}" y="${laneTop - 10}" font-weight="bold">Member health (green: ACTIVE, amber: DEGRADED, red: UNAVAILABLE)</text>`);
  members.forEach((member, row) => {
    const y0 = laneTop + row * (laneHeight + 6);
    parts.push(`<text x="${left - 6}" y="${y0 + laneHeight - 5}" text-anchor="end">${escapeHtml(member)}</text>`);
    parts.push(`<rect x="${left}" y="${y0}" width="${plotWidth}" height="${laneHeight}" fill="#f4f4f4"/>`);
    const samples = report.healthSamples;
    samples.forEach((sample, i) => {
      const health = healthAt(sample, member);
      if (health === null) return;
      const end = (samples[i + 1]?.atS ?? Math.min(seconds, sample.atS + 0.2)) as number;
      const x0 = x(Math.min(seconds, sample.atS));
      // A little overlap, so rounding never leaves a white seam between two samples.
      const w = Math.max(0.5, x(Math.min(seconds, end)) - x0) + 0.6;
      parts.push(`<rect x="${x0.toFixed(1)}" y="${y0}" width="${w.toFixed(1)}" height="${laneHeight}" fill="${HEALTH_COLORS[health]}" shape-rendering="crispEdges"><title>${sample.atS.toFixed(1)} s: ${health}</title></rect>`);
    });
  });

  // Time axis and fault / restore markers across all panels.
  const axisY = laneTop + members.length * (laneHeight + 6) + 4;
  const step = seconds <= 30 ? 5 : seconds <= 120 ? 10 : 30;
  for (let s = 0; s <= seconds; s += step) parts.push(`<text x="${x(s)}" y="${axisY + 14}" text-anchor="middle">${s} s</text>`);
  for (const event of report.events) {
    const color = event.kind === 'fault' ? COLORS.fault : COLORS.restore;
    const ex = x(event.atS).toFixed(1);
    parts.push(`<line x1="${ex}" x2="${ex}" y1="${rpsTop}" y2="${axisY}" stroke="${color}" stroke-width="1.5" stroke-dasharray="4,3"><title>${event.atS.toFixed(2)} s: ${event.action} ${escapeHtml(event.node)}</title></line>`);
    const rowY = eventTop + 10 + (report.events.indexOf(event) % 3) * 12;
    parts.push(`<line x1="${ex}" x2="${ex}" y1="${rowY + 2}" y2="${rpsTop}" stroke="${color}" stroke-width="0.5"/>`);
    parts.push(`<text x="${ex}" y="${rowY}" fill="${color}" font-size="10">${escapeHtml(`${event.action} ${event.node} (${event.atS.toFixed(1)} s)`)}</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n');
}

export function renderHtml(report: DrillReport): string {
  const row = (cells: Array<string | number | null>): string => `<tr>${cells.map((cell) => `<td>${escapeHtml(cell === null ? '–' : String(cell))}</td>`).join('')}</tr>`;
  const t = report.totals;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hyok-proxy drill: ${escapeHtml(report.scenario.name)}</title>
<style>
body{font-family:sans-serif;margin:24px;color:#222;max-width:1060px}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}
.pass{color:#2ca02c;font-weight:bold}.fail{color:#d62728;font-weight:bold}
</style></head><body>
<h1>Failover drill: ${escapeHtml(report.scenario.name)} <span class="${report.passed ? 'pass' : 'fail'}">${report.passed ? 'PASSED' : 'FAILED'}</span></h1>
<p>${escapeHtml(report.scenario.description)}. ${report.settings.rate} req/s (half encrypt, half decrypt) for ${report.settings.durationS} s from ${escapeHtml(report.startedAt)}; ${report.settings.nodes.length} HSM nodes, each a p11-kit server process exporting one SoftHSM token${report.settings.slowMs === null ? '' : `; slow node adds ${report.settings.slowMs} ms`}.${report.aborted ? ' <b>The run was aborted.</b>' : ''}</p>
${renderChart(report)}
<h2>Checks</h2>
<table><tr><th>check</th><th>result</th><th>detail</th></tr>
${report.checks.map((check) => `<tr><td>${escapeHtml(check.name)}</td><td class="${check.ok ? 'pass' : 'fail'}">${check.ok ? 'ok' : 'FAILED'}</td><td>${escapeHtml(check.detail)}</td></tr>`).join('\n')}
</table>
<h2>Totals</h2>
<table><tr><th>sent</th><th>ok</th><th>failed</th><th>over budget</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th><th>failures</th></tr>
${row([t.sent, t.ok, t.failed, t.overBudget, t.p50Ms, t.p99Ms, t.maxMs, JSON.stringify(t.failures)])}
</table>
<h2>Detection and recovery</h2>
<table><tr><th>member</th><th>fault at s</th><th>detected at s</th><th>time to detect s</th><th>health</th><th>restore at s</th><th>ACTIVE again at s</th><th>time to recover s</th></tr>
${report.detection
  .map((entry) => {
    const rec = report.recovery.find((candidate) => candidate.member === entry.member);
    return row([entry.member, entry.faultAtS, entry.detectedAtS, entry.timeToDetectS, entry.health, rec?.restoreAtS ?? null, rec?.recoveredAtS ?? null, rec?.timeToRecoverS ?? null]);
  })
  .join('\n')}
</table>
${report.scenario.expectation === 'outage' ? `<p>Service resumed ${String(report.service.serviceResumedAfterS)} s after the restore; slowest failure ${String(report.service.maxFailureLatencyMs)} ms.</p>` : ''}
<h2>Events</h2>
<table><tr><th>at s</th><th>wall clock</th><th>kind</th><th>action</th><th>node</th></tr>
${report.events.map((event) => row([event.atS, event.at, event.kind, event.action, event.node])).join('\n')}
</table>
<h2>Failed or over-budget requests</h2>
<table><tr><th>at s</th><th>latency ms</th><th>outcome</th></tr>
${report.notable.slice(0, 100).map((entry) => row([entry.atS, entry.latencyMs, entry.outcome])).join('\n')}
</table>
${report.notable.length > 100 ? `<p>${report.notable.length - 100} more in the JSON report.</p>` : ''}
</body></html>
`;
}

/** Writes the JSON report and the HTML page (creating their directories). */
export function writeReport(report: DrillReport, jsonFile: string, htmlFile: string): void {
  for (const file of [jsonFile, htmlFile]) mkdirSync(dirname(file), { recursive: true });
  writeFileSync(jsonFile, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(htmlFile, renderHtml(report));
}
