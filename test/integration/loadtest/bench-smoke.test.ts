import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fromRoot } from '../../../src/lib/paths.js';

/** Keeps `npm run bench` working; the figures themselves are the benchmark's business, not the test's. */
describe('bench harness smoke test', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hyok-bench-smoke-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('runs the policy-tier benchmark, Redis tier included, and writes a well-formed report', () => {
    const file = join(dir, 'policy.json');
    const result = spawnSync(process.execPath, [fromRoot('dist', 'loadtest', 'policy-bench.js'), '--calls', '2000', '--principals', '50', '--json', file], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(result.status, 0, result.stderr.slice(-2000));
    const report = JSON.parse(readFileSync(file, 'utf8')) as { results: Array<{ tier: string; p50Us: number; p99Us: number; cache: Record<string, number> }> };
    assert.deepEqual(report.results.map((entry) => entry.tier), ['none', 'evaluate', 'memory-hit', 'redis-hit']);
    for (const entry of report.results) assert.ok(Number.isFinite(entry.p50Us) && entry.p99Us >= entry.p50Us, entry.tier);
    // Each tier answered from where it claims to.
    assert.equal(report.results[2]?.cache['memory-hit'], 2000);
    // A Redis lookup slower than the 5 ms command timeout (a busy box) is a miss, evaluated locally: that is the design.
    const redis = report.results[3]?.cache ?? {};
    assert.equal((redis['redis-hit'] ?? 0) + (redis['redis-miss'] ?? 0), 2000);
    assert.ok((redis['redis-hit'] ?? 0) >= 1900, JSON.stringify(redis));
  });

  it('runs scenarios and both baselines for a second each and writes a well-formed report, HTML and summary', () => {
    const file = join(dir, 'report.json');
    const result = spawnSync(
      process.execPath,
      [
        fromRoot('dist', 'loadtest', 'bench.js'),
        ...['--duration', '1', '--warmup', '0', '--connections', '4', '--scenarios', 'encrypt,mixed,fixed,ramp', '--fixed-rate', '200'],
        ...['--ramp-start', '100', '--ramp-step', '100', '--ramp-step-seconds', '1', '--json', file],
      ],
      { encoding: 'utf8', timeout: 180_000 },
    );
    assert.equal(result.status, 0, result.stderr.slice(-2000));
    const report = JSON.parse(readFileSync(file, 'utf8')) as {
      results: Array<Record<string, unknown>>;
      machine: { cpus: number };
      note: string;
      ramp: { steps: Array<Record<string, unknown>>; sustainedRate: number | null };
      baselines: { bareSaturation: Record<string, unknown>; bareFixedRate: Record<string, unknown>; pkcs11: Array<{ processes: number; opsPerSecond: number }> };
      ratios: Record<string, number | null>;
      targets: Array<{ name: string; met: boolean | null }>;
      summary: string;
    };
    assert.deepEqual(report.results.map((entry) => entry['scenario']), ['encrypt', 'mixed', 'fixed']);
    for (const entry of [...report.results, report.baselines.bareSaturation, report.baselines.bareFixedRate]) {
      for (const field of ['tps', 'p50Ms', 'p99Ms', 'maxMs', 'requests', 'errors']) assert.ok(Number.isFinite(entry[field]), `${String(entry['scenario'])}.${field}`);
      assert.ok((entry['requests'] as number) > 0);
    }
    for (const entry of report.results) {
      // The proxy's CPU per request, from its process_cpu_seconds_total (microsecond precision): positive and under a second.
      const cpu = entry['serverCpuUsPerRequest'] as number;
      assert.ok(Number.isFinite(cpu) && cpu > 0 && cpu < 1_000_000, `${String(entry['scenario'])}.serverCpuUsPerRequest ${cpu}`);
    }
    for (const entry of [report.baselines.bareSaturation, report.baselines.bareFixedRate]) {
      // The bare server's, from /proc in 10 ms clock ticks: a one-second run may round to 0.
      const cpu = entry['serverCpuUsPerRequest'] as number;
      assert.ok(Number.isFinite(cpu) && cpu >= 0 && cpu < 1_000_000, `bare ${String(entry['offeredRate'] ?? 'saturation')}.serverCpuUsPerRequest ${cpu}`);
    }
    assert.equal(report.results[2]?.['offeredRate'], 200);
    assert.equal(report.baselines.bareFixedRate['offeredRate'], 200, 'the bare baseline runs at the same fixed rate');
    assert.deepEqual(report.baselines.pkcs11.map((entry) => entry.processes), [1, 2]);
    for (const entry of report.baselines.pkcs11) assert.ok(entry.opsPerSecond > 0);
    assert.ok(report.ramp.steps.length >= 1 && typeof report.ramp.steps[0]?.['p99Ms'] === 'number');
    for (const ratio of ['encryptVsBare', 'fixedP99VsBare', 'encryptVsPkcs11']) assert.ok(Number.isFinite(report.ratios[ratio]), ratio);
    assert.equal(report.targets.length, 5);
    for (const target of report.targets) assert.equal(typeof target.met, 'boolean', `${target.name} is evaluated`);
    assert.ok(report.machine.cpus > 0);
    assert.match(report.note, /pre-signed/);
    assert.match(result.stdout, /encrypt \(saturation\): .*req\/s, p50 .* ms, p99 .* ms/);
    assert.match(result.stdout, /^bench: encrypt \d+ req\/s = [\d.]+x bare .*HSM ceiling \d+ ops\/s$/m);
    const html = readFileSync(file.replace(/\.json$/, '.html'), 'utf8');
    assert.match(html, /^<!doctype html>/);
    assert.match(html, /<svg [^>]*>[^]*raw PKCS#11[^]*<\/svg>/);
    assert.doesNotMatch(html, /<script/);
  });

  it('runs a short soak and writes a well-formed soak report', () => {
    const file = join(dir, 'soak.json');
    const result = spawnSync(process.execPath, [fromRoot('dist', 'loadtest', 'soak.js'), '--minutes', '0.25', '--sample-seconds', '5', '--rate', '100', '--json', file], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.ok(result.status === 0 || result.status === 1, result.stderr.slice(-2000));
    const report = JSON.parse(readFileSync(file, 'utf8')) as {
      samples: Array<Record<string, number | null>>;
      verdict: { rssGrowthAfterWarmup: { proxy: number; agents: number; limit: number }; errors: number; requests: number; passed: boolean };
    };
    assert.equal(report.samples.length, 3);
    for (const sample of report.samples) {
      for (const field of ['atS', 'proxyRssMb', 'agentsRssMb', 'requests', 'p99Ms', 'errors']) assert.ok(Number.isFinite(sample[field]), field);
      assert.ok((sample['proxyRssMb'] as number) > 10 && (sample['agentsRssMb'] as number) > 10, 'RSS of the proxy and of its agents is read');
    }
    assert.equal(report.verdict.requests, 1500);
    assert.equal(report.verdict.rssGrowthAfterWarmup.limit, 0.1);
    assert.equal(result.status, report.verdict.passed ? 0 : 1, 'the exit status follows the verdict');
    assert.match(result.stdout, /^soak: (passed|FAILED) \| proxy RSS /m);
    assert.match(readFileSync(file.replace(/\.json$/, '.html'), 'utf8'), /<svg [^>]*>[^]*event-loop delay p99/);
  });
});
