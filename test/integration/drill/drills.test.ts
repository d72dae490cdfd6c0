import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { locateP11Kit, runDrill } from '../../../loadtest/drill/drill.js';
import { writeReport, type DrillReport } from '../../../loadtest/drill/report.js';
import type { ScenarioName } from '../../../loadtest/drill/scenarios.js';
import { fromRoot } from '../../../src/lib/paths.js';
import { assertWellFormedReport, hostStalled, summary, violatingSeconds } from '../../helpers/drill-report.js';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { testOutputDir } from '../../helpers/test-env.js';

/**
 * Failover drills with real, separate HSM processes (loadtest/drill/): three
 * p11-kit 0.25 servers, each exporting one SoftHSM token over a unix socket,
 * the proxy as its own process, 200 signed encrypt+decrypt requests a second.
 * Each drill is short; the fault comes at 20% of the run and the restore at 50%.
 *
 * The promise asserted:
 * - kill-one, freeze-one, flapping, slow-one: not one request fails and every
 *   request is answered within 250 ms. No allowance for the requests in flight
 *   at the fault: after a SIGKILL they get CKR_DEVICE_ERROR and after a SIGSTOP
 *   they time out at hsm.callTimeoutMs (100 ms); both are retried on another
 *   member inside the same request, within its budget.
 * - kill-all-restore-one: while no node is up every request fails, with an XKS
 *   error and within the budget; once one node is back, service resumes and no
 *   request fails any more.
 * - the faulted member is reported UNAVAILABLE (DEGRADED when only slow) and is
 *   ACTIVE again after the restore, within the restart backoff (slow-one: within
 *   one health-check interval, since a probe taken while slow keeps it DEGRADED
 *   until the next).
 *
 * The one allowance, for a shared 2-core machine: when every request that broke
 * the promise falls in a second (or just after one) in which other processes used
 * at least half the machine (the drill's own processes, agent restarts included,
 * are measured apart and need about a quarter) or the traffic generator itself was
 * not scheduled for 100 ms, the drill runs again (at most twice) and the last run
 * is asserted strictly: a fault in the product breaks the promise in every run, a
 * busy neighbour only some of the time.
 */

const RATE = 200;
const DURATIONS: Record<ScenarioName, number> = {
  'kill-one': 16,
  'freeze-one': 16,
  'kill-all-restore-one': 16,
  flapping: 18,
  // Long enough for a health probe to fall inside the slow window and for the next one after the restore.
  'slow-one': 26,
};
const DETECT_WITHIN_S = 2;
/** Runs again when every broken promise coincides with a saturated machine (see the file comment). */
const MAX_RERUNS = 2;

describe('failover drills against separate HSM processes', { timeout: 600_000 }, () => {
  let fixture: ProxyFixture | undefined;
  const reportDir = join(testOutputDir(), 'drill');

  before(async () => {
    // Builds p11-kit 0.25 the first time (about a minute); later runs find it in ~/.cache/hyok-proxy.
    locateP11Kit();
    // Only the environment: the dev tokens (plus a canary key) and PKI, with every secret registered for the
    // secrets-in-logs check. The drills start their own nodes and proxies on it, logging under test-output/logs.
    fixture = await createFixture({ name: 'drill', start: false });
    mkdirSync(reportDir, { recursive: true });
  });

  after(async () => {
    await fixture?.close();
  });

  async function drillOnce(scenario: ScenarioName): Promise<DrillReport> {
    const { dev, dir } = fixture as ProxyFixture;
    const report = await runDrill({ scenario, durationS: DURATIONS[scenario], rate: RATE, devDir: dev.dir, workDir: dir, logDir: join(testOutputDir(), 'logs') });
    const json = join(reportDir, `${scenario}.json`);
    writeReport(report, json, join(reportDir, `${scenario}.html`));
    // What the test asserts on is the file an SRE would open.
    const written = JSON.parse(readFileSync(json, 'utf8')) as DrillReport;
    assertWellFormedReport(written, scenario, DURATIONS[scenario], RATE);
    assert.match(readFileSync(join(reportDir, `${scenario}.html`), 'utf8'), /<svg[^>]*>[\s\S]*<\/svg>/);
    return written;
  }

  async function drill(t: TestContext, scenario: ScenarioName): Promise<DrillReport> {
    let report = await drillOnce(scenario);
    t.diagnostic(summary(report));
    for (let rerun = 1; rerun <= MAX_RERUNS; rerun++) {
      const seconds = violatingSeconds(report);
      if (seconds.length === 0 || !seconds.every((second) => hostStalled(report, second))) break;
      const host = seconds.map((second) => `${second}: ${JSON.stringify(report.timeline[second]?.host)} ${JSON.stringify(report.timeline[second]?.failures)}`);
      t.diagnostic(`other processes saturated the machine where requests broke the promise (second: host, failures) ${host.join('; ')}; running ${scenario} again`);
      report = await drillOnce(scenario);
      t.diagnostic(summary(report));
    }
    return report;
  }

  function assertNoImpact(report: DrillReport): void {
    const t = report.totals;
    assert.equal(t.failed, 0, `failed requests: ${JSON.stringify(t.failures)}; first: ${JSON.stringify(report.notable.slice(0, 5))}`);
    assert.equal(t.overBudget, 0, `over ${t.budgetMs} ms: ${JSON.stringify(report.notable.filter((entry) => entry.latencyMs > t.budgetMs).slice(0, 10))}`);
  }

  /** The member left ACTIVE within DETECT_WITHIN_S of the fault and showed `health` while faulted. */
  function assertDetected(report: DrillReport, health: 'UNAVAILABLE' | 'DEGRADED'): void {
    for (const entry of report.detection) {
      assert.ok(entry.healthSeen.includes(health), `${entry.member} showed ${entry.healthSeen.join(', ') || 'only ACTIVE'} while faulted`);
      assert.notEqual(entry.timeToDetectS, null);
      assert.ok((entry.timeToDetectS as number) <= DETECT_WITHIN_S, `${entry.member} detected after ${String(entry.timeToDetectS)} s`);
    }
  }

  function assertRecovered(report: DrillReport, withinS: number): void {
    assert.ok(report.recovery.length > 0);
    for (const entry of report.recovery) {
      assert.notEqual(entry.recoveredAtS, null, `${entry.member} not ACTIVE again by the end of the run`);
      assert.ok((entry.timeToRecoverS as number) <= withinS, `${entry.member} ACTIVE ${String(entry.timeToRecoverS)} s after the restore (bound ${withinS} s)`);
    }
  }

  /** Restarts back off up to hsm.maxRestartBackoffMs; then the agent starts and passes its deep check and key check. */
  const restartBound = (report: DrillReport): number => (report.settings.hsm['maxRestartBackoffMs'] as number) / 1000 + 2;

  it('kill-one: SIGKILL of one node costs no request, its member goes UNAVAILABLE and comes back', async (t) => {
    const report = await drill(t, 'kill-one');
    assertNoImpact(report);
    // The target for kill-one is p99 <= 100 ms (the drill reports it); CI holds twice that.
    assert.ok((report.p99Ms as number) <= 200, `p99 ${String(report.p99Ms)} ms`);
    assertDetected(report, 'UNAVAILABLE');
    assertRecovered(report, restartBound(report));
  });

  it('freeze-one: a SIGSTOPped node stalls no request, its member goes UNAVAILABLE and comes back after SIGCONT', async (t) => {
    const report = await drill(t, 'freeze-one');
    assertNoImpact(report);
    assertDetected(report, 'UNAVAILABLE');
    assertRecovered(report, restartBound(report));
  });

  it('flapping: a node going down and up every few seconds costs no request and ends ACTIVE', async (t) => {
    const report = await drill(t, 'flapping');
    assert.ok(report.events.filter((event) => event.action === 'kill').length >= 2, 'the node flapped at least twice');
    assertNoImpact(report);
    assertDetected(report, 'UNAVAILABLE');
    assertRecovered(report, restartBound(report));
  });

  describe('slow-one', () => {
    let report: DrillReport;

    it('a slow node costs no request; its member is DEGRADED, then ACTIVE again', async (t) => {
      report = await drill(t, 'slow-one');
      assertNoImpact(report);
      assertDetected(report, 'DEGRADED');
      // A probe taken while the node was slow keeps the member DEGRADED until the next probe.
      assertRecovered(report, (report.settings.hsm['healthCheckIntervalMs'] as number) / 1000 + 2);
    });

    // Before the probe got its own deadline, a member at 75 ms per call failed every deep check and went UNAVAILABLE.
    it('a slow node that answers within hsm.callTimeoutMs is never reported UNAVAILABLE', () => {
      assert.ok(report !== undefined, 'the slow-one drill ran');
      const member = report.detection[0]?.member as string;
      const fault = report.events.find((event) => event.kind === 'fault');
      const restore = report.events.find((event) => event.kind === 'restore');
      assert.ok(fault !== undefined && restore !== undefined);
      // On a saturated machine every member can look stalled for a moment; those seconds are not the slow node's doing.
      const unavailable = report.healthSamples.filter(
        (sample) =>
          sample.atS >= fault.atS &&
          sample.atS <= restore.atS &&
          sample.members?.[member]?.health === 'UNAVAILABLE' &&
          !hostStalled(report, Math.floor(sample.atS)),
      );
      assert.deepEqual(
        unavailable.map((sample) => sample.atS),
        [],
        `${member} UNAVAILABLE while only slow: ${JSON.stringify(unavailable.slice(0, 5).map((sample) => ({ atS: sample.atS, ...sample.members?.[member] })))}`,
      );
    });
  });

  it('kill-all-restore-one: with every node down requests fail fast with an XKS error; one node back restores service', async (t) => {
    const report = await drill(t, 'kill-all-restore-one');
    const t0 = report.totals;
    assert.ok(t0.failed > 0, 'requests failed while every node was down');
    for (const kind of Object.keys(t0.failures)) assert.match(kind, /^5\d\d [A-Za-z]+Exception$/, `a failure is an XKS error response, not ${kind}`);
    assert.equal(t0.overBudget, 0, `over ${t0.budgetMs} ms: ${JSON.stringify(report.notable.filter((entry) => entry.latencyMs > t0.budgetMs).slice(0, 10))}`);
    assert.ok((report.service.maxFailureLatencyMs as number) <= t0.budgetMs);
    // The target is p99 <= 50 ms (the drill reports it). CI, on a shared 2-core box, holds three times
    // that, still well inside the 250 ms budget: Node 24 measured 109 ms there once while agents restarted.
    assert.ok((report.service.p99FailureLatencyMs as number) <= 150, `p99 of failed requests ${String(report.service.p99FailureLatencyMs)} ms`);
    assert.notEqual(report.service.serviceResumedAfterS, null, 'service resumed after one node returned');
    assert.ok((report.service.serviceResumedAfterS as number) <= restartBound(report), `service resumed ${String(report.service.serviceResumedAfterS)} s after the restore`);
    assert.equal(report.service.failedAfterResume, 0, 'no request failed once service resumed');
    assertDetected(report, 'UNAVAILABLE');
    assertRecovered(report, restartBound(report));
  });

  it('the drill CLI lists the scenarios and rejects an unknown one', () => {
    const help = spawnSync(process.execPath, [fromRoot('dist', 'loadtest', 'drill', 'run.js'), '--help'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(help.status, 0, help.stderr);
    for (const name of Object.keys(DURATIONS)) assert.match(help.stdout, new RegExp(name));
    const bad = spawnSync(process.execPath, [fromRoot('dist', 'loadtest', 'drill', 'run.js'), '--scenario', 'nope'], { encoding: 'utf8', timeout: 30_000 });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /one of kill-one/);
  });
});
