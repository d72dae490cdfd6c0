/**
 * `npm run drill -- --scenario NAME [--duration S] [--rate N] [--json FILE] [--html FILE]`
 *
 * Failover drill against real, separate HSM processes (p11-kit 0.25 servers in
 * front of SoftHSM tokens) with the proxy running as its own process. Writes a
 * JSON report and an HTML page with a chart (default loadtest/results/drill-<scenario>-<time>.{json,html}),
 * prints the checks, and exits 1 when a check of the product promise failed.
 * Ctrl-C stops the drill and still tears everything down (twice: at once).
 */
import { join, resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { fromRoot } from '../../src/lib/paths.js';
import { runDrill } from './drill.js';
import { writeReport } from './report.js';
import { isScenarioName, SCENARIO_NAMES, SCENARIOS, type ScenarioName } from './scenarios.js';

function positive(value: string): number {
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0) throw new InvalidArgumentError('must be a positive number');
  return number;
}

function scenarioName(value: string): ScenarioName {
  if (!isScenarioName(value)) throw new InvalidArgumentError(`one of ${SCENARIO_NAMES.join(', ')}`);
  return value;
}

const err = (line: string): void => void process.stderr.write(`${line}\n`);

async function main(): Promise<void> {
  const options = new Command('drill')
    .description(`failover drills against real HSM processes: ${SCENARIO_NAMES.map((name) => `\n  ${name}: ${SCENARIOS[name].description}`).join('')}`)
    .requiredOption('-s, --scenario <name>', SCENARIO_NAMES.join(', '), scenarioName)
    .option('-d, --duration <seconds>', 'seconds of traffic (faults at 20%, restore at 50%)', positive, 30)
    .option('-r, --rate <n>', 'signed requests per second, half encrypt and half decrypt', positive, 200)
    .option('--slow-ms <ms>', 'latency the slow node adds in slow-one', positive, 75)
    .option('--json <file>', 'JSON report (default loadtest/results/drill-<scenario>-<time>.json)')
    .option('--html <file>', 'HTML report with the chart (default: the JSON file name with .html)')
    .option('--work-dir <dir>', 'keep the dev environment, sockets and logs here instead of a temp dir')
    .option('--keep', 'do not delete the work directory (logs, configs) afterwards', false)
    .parse()
    .opts<{ scenario: ScenarioName; duration: number; rate: number; slowMs: number; json?: string; html?: string; workDir?: string; keep: boolean }>();

  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const json = resolve(options.json ?? join(fromRoot('loadtest', 'results'), `drill-${options.scenario}-${stamp}.json`));
  const html = resolve(options.html ?? json.replace(/\.json$/, '') + '.html');

  const abort = new AbortController();
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupts += 1;
    if (interrupts === 1) {
      err(`drill: ${signal}: stopping traffic and tearing everything down (again to quit at once)`);
      abort.abort();
    } else {
      // The 'exit' handler registered by runDrill SIGKILLs every process group it started.
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const report = await runDrill({
    scenario: options.scenario,
    durationS: options.duration,
    rate: options.rate,
    slowMs: options.slowMs,
    keep: options.keep,
    signal: abort.signal,
    progress: (line) => err(`drill: ${line}`),
    ...(options.workDir === undefined ? {} : { workDir: resolve(options.workDir) }),
  });
  writeReport(report, json, html);
  const t = report.totals;
  process.stdout.write(
    `${report.scenario.name}: ${t.sent} requests, ${t.failed} failed, ${t.overBudget} over ${t.budgetMs} ms, p50 ${String(t.p50Ms)} ms, p99 ${String(t.p99Ms)} ms, max ${String(t.maxMs)} ms\n`,
  );
  for (const entry of report.detection) {
    process.stdout.write(`  ${entry.member}: left ACTIVE ${String(entry.timeToDetectS)} s after the fault (${String(entry.health)}); showed ${entry.healthSeen.join(', ') || 'nothing else'}\n`);
  }
  for (const entry of report.recovery) process.stdout.write(`  ${entry.member}: ACTIVE again ${String(entry.timeToRecoverS)} s after restore\n`);
  if (report.scenario.expectation === 'outage') {
    process.stdout.write(`  service resumed ${String(report.service.serviceResumedAfterS)} s after restore; slowest failure ${String(report.service.maxFailureLatencyMs)} ms, p99 of failures ${String(report.service.p99FailureLatencyMs)} ms\n`);
  }
  const hostSeconds = report.timeline.flatMap((entry) => (entry.host === null ? [] : [entry.host]));
  if (hostSeconds.length > 0) {
    const max = (values: Array<number | null>): number => Math.max(...values.map((value) => value ?? 0));
    process.stdout.write(
      `  machine: CPU busy up to ${max(hostSeconds.map((h) => h.cpuBusyPct))}%, event-loop delay up to ${max(hostSeconds.map((h) => h.proxyLoopDelayMaxMs))} ms (proxy), ${max(hostSeconds.map((h) => h.drillLoopDelayMaxMs))} ms (drill)\n`,
    );
  }
  for (const check of report.checks) process.stdout.write(`  [${check.ok ? 'ok' : 'FAILED'}] ${check.name}: ${check.detail}\n`);
  const verdict = report.aborted ? 'ABORTED' : report.passed ? 'PASSED' : 'FAILED';
  process.stdout.write(`${verdict}; wrote ${json} and ${html}\n`);
  process.exitCode = report.aborted ? 130 : report.passed ? 0 : 1;
}

main().catch((error: unknown) => {
  err(`drill: ${(error as Error).stack ?? String(error)}`);
  process.exitCode = 2;
});
