import assert from 'node:assert/strict';
import { REPORT_SCHEMA, type DrillReport, type Health } from '../../loadtest/drill/report.js';
import { SCENARIOS, type ScenarioName } from '../../loadtest/drill/scenarios.js';

/**
 * Checks on failover-drill reports (loadtest/drill/report.ts) shared by the drill tests.
 */

const HEALTH: ReadonlySet<Health | null> = new Set<Health | null>(['ACTIVE', 'DEGRADED', 'UNAVAILABLE', null]);

function isIso(value: unknown): boolean {
  return typeof value === 'string' && !Number.isNaN(Date.parse(value)) && new Date(value).toISOString() === value;
}

function finiteOrNull(value: unknown): boolean {
  return value === null || (typeof value === 'number' && Number.isFinite(value));
}

/** The report as read back from its JSON file is complete and self-consistent. */
export function assertWellFormedReport(report: DrillReport, scenario: ScenarioName, durationS: number, rate: number): void {
  assert.equal(report.schema, REPORT_SCHEMA);
  assert.equal(report.scenario.name, scenario);
  assert.equal(report.scenario.expectation, SCENARIOS[scenario].expectation);
  assert.ok(isIso(report.startedAt) && isIso(report.finishedAt), 'startedAt/finishedAt are ISO timestamps');
  assert.ok(Date.parse(report.finishedAt) >= Date.parse(report.startedAt) + durationS * 1000, 'finished after the traffic ended');
  assert.equal(report.aborted, false, 'the drill ran to its end');
  assert.equal(report.settings.durationS, durationS);
  assert.equal(report.settings.rate, rate);
  const members = report.settings.nodes.map((node) => node.member);
  assert.equal(members.length, 3);

  // Timeline: one entry per second, counts that add up, ordered percentiles, a health per member.
  assert.equal(report.timeline.length, Math.ceil(durationS));
  report.timeline.forEach((entry, index) => {
    assert.equal(entry.second, index);
    assert.equal(entry.ok + entry.failed, entry.sent, `second ${index}: ok + failed = sent`);
    assert.equal(Object.values(entry.failures).reduce((sum, count) => sum + count, 0), entry.failed, `second ${index}: failures by kind add up`);
    assert.ok(entry.overBudget <= entry.sent);
    for (const value of [entry.p50Ms, entry.p99Ms, entry.maxMs]) assert.ok(finiteOrNull(value));
    if (entry.sent > 0) assert.ok((entry.p50Ms as number) <= (entry.p99Ms as number) && (entry.p99Ms as number) <= (entry.maxMs as number), `second ${index}: p50 <= p99 <= max`);
    assert.deepEqual(Object.keys(entry.members).sort(), [...members].sort());
    for (const health of Object.values(entry.members)) assert.ok(HEALTH.has(health), `second ${index}: health ${String(health)}`);
  });
  assert.ok(report.timeline.filter((entry) => entry.host !== null).length >= durationS - 2, 'the machine was measured nearly every second');
  assert.ok(report.timeline.every((entry) => Object.values(entry.members).some((health) => health !== null)), 'member health sampled every second');

  // Totals match the timeline and the offered load.
  const t = report.totals;
  assert.equal(t.sent, Math.floor(rate * durationS));
  assert.equal(t.sent, report.timeline.reduce((sum, entry) => sum + entry.sent, 0));
  assert.equal(t.ok + t.failed, t.sent);
  assert.equal(t.failed, report.timeline.reduce((sum, entry) => sum + entry.failed, 0));
  assert.equal(t.overBudget, report.timeline.reduce((sum, entry) => sum + entry.overBudget, 0));
  assert.equal(t.budgetMs, 250);
  assert.ok((t.p50Ms as number) <= (t.p99Ms as number) && (t.p99Ms as number) <= (t.maxMs as number));
  // The headline fields the drill contract names agree with the totals.
  assert.deepEqual(
    { requests: report.requests, failed: report.failed, errorsByName: report.errorsByName, p50Ms: report.p50Ms, p99Ms: report.p99Ms, maxMs: report.maxMs },
    { requests: t.sent, failed: t.failed, errorsByName: t.failures, p50Ms: t.p50Ms, p99Ms: t.p99Ms, maxMs: t.maxMs },
  );

  // Events: the scenario's faults and restores, in order, inside the run.
  assert.ok(report.events.some((event) => event.kind === 'fault') && report.events.some((event) => event.kind === 'restore'));
  report.events.forEach((event, index) => {
    assert.ok(event.atS >= 0 && event.atS <= durationS, `event ${index} inside the run`);
    assert.ok(isIso(event.at));
    assert.ok(members.includes(event.node));
    if (index > 0) assert.ok(event.atS >= (report.events[index - 1] as { atS: number }).atS, 'events in order');
  });

  // Health samples every 100 ms (at least 5 a second on a loaded machine), in order.
  assert.ok(report.healthSamples.length >= durationS * 5, `${report.healthSamples.length} health samples`);
  report.healthSamples.forEach((sample, index) => {
    if (index > 0) assert.ok(sample.atS >= (report.healthSamples[index - 1] as { atS: number }).atS);
    if (sample.members !== null) for (const member of members) assert.ok(HEALTH.has(sample.members[member]?.health ?? null));
  });

  // Detection and recovery for the scenario's members; checks and verdict agree.
  const scenarioDef = SCENARIOS[scenario];
  assert.deepEqual(report.detection.map((entry) => entry.member), scenarioDef.faulted.map((index) => members[index]));
  assert.deepEqual(report.recovery.map((entry) => entry.member), scenarioDef.recovers.map((index) => members[index]));
  const detected = report.detection.map((entry) => entry.timeToDetectS);
  assert.equal(report.failoverMs, detected.includes(null) ? null : Math.round(Math.max(...(detected as number[])) * 1000));
  assert.ok(finiteOrNull(report.recoveryMs));
  assert.ok(report.checks.length >= 3);
  assert.equal(report.passed, report.checks.every((check) => check.ok));
}

/** Seconds holding a request that broke the promise: a failure (failover drills) or any request over budget. */
export function violatingSeconds(report: DrillReport): number[] {
  const failover = report.scenario.expectation === 'failover';
  return report.timeline.filter((entry) => entry.overBudget > 0 || (failover && entry.failed > 0)).map((entry) => entry.second);
}

/** An event-loop delay of the drill process at least this long means the traffic generator itself was not scheduled. */
export const STALL_MS = 100;
/**
 * Other processes using at least this share of the machine (one of the two cores) compete with the drill,
 * which itself uses about a quarter of it (proxy, agents, three nodes, traffic at 200 req/s).
 */
export const OTHER_CPU_PCT = 50;

/**
 * True when, in the second of the violation or the one before, processes that are not the drill's used at
 * least OTHER_CPU_PCT of the machine, or the drill process (which only paces requests) was not scheduled for
 * STALL_MS. A request crosses four processes (proxy, agent, p11-kit server, SoftHSM); on a saturated 2-core
 * box every member then misses hsm.callTimeoutMs at once, whatever the HSMs do. The drill's own CPU (agent
 * restarts included) never counts as someone else's.
 */
export function hostStalled(report: DrillReport, second: number): boolean {
  return report.timeline
    .filter((entry) => entry.second === second || entry.second === second - 1)
    .some((entry) => entry.host !== null && ((entry.host.otherCpuPct ?? 0) >= OTHER_CPU_PCT || entry.host.drillLoopDelayMaxMs >= STALL_MS));
}

/** One line for a test diagnostic: the figures an SRE asks for first. */
export function summary(report: DrillReport): string {
  const t = report.totals;
  const detect = report.detection.map((entry) => `${entry.member} ${String(entry.health)} after ${String(entry.timeToDetectS)} s`).join(', ');
  const recover = report.recovery.map((entry) => `${entry.member} ACTIVE ${String(entry.timeToRecoverS)} s after restore`).join(', ');
  return `${report.scenario.name}: ${t.sent} sent, ${t.failed} failed ${JSON.stringify(t.failures)}, ${t.overBudget} over ${t.budgetMs} ms, p50 ${String(t.p50Ms)} ms, p99 ${String(t.p99Ms)} ms, max ${String(t.maxMs)} ms; detected: ${detect}; recovered: ${recover}`;
}
