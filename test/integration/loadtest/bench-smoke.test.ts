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

  for (const mode of [[], ['--rate', '200']]) {
    it(`runs ${mode.length === 0 ? 'closed loop' : 'open loop'} for a second per scenario and writes a well-formed report`, () => {
      const file = join(dir, `report-${mode.length}.json`);
      const result = spawnSync(
        process.execPath,
        [fromRoot('dist', 'loadtest', 'bench.js'), '--duration', '1', '--warmup', '0', '--connections', '4', '--json', file, ...mode],
        { encoding: 'utf8', timeout: 120_000 },
      );
      assert.equal(result.status, 0, result.stderr.slice(-2000));
      const report = JSON.parse(readFileSync(file, 'utf8')) as { results: Array<Record<string, unknown>>; machine: { cpus: number }; note: string };
      assert.deepEqual(report.results.map((entry) => entry['scenario']), ['encrypt', 'decrypt']);
      for (const entry of report.results) {
        for (const field of ['tps', 'p50Ms', 'p99Ms', 'maxMs', 'requests', 'errors']) assert.equal(typeof entry[field], 'number', field);
        assert.ok((entry['requests'] as number) > 0);
      }
      assert.ok(report.machine.cpus > 0);
      assert.match(report.note, /pre-signed/);
      assert.match(result.stdout, /encrypt .*req\/s, p50 .* ms, p99 .* ms/);
    });
  }
});
