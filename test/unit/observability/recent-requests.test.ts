import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RecentRequests } from '../../../src/observability/recent-requests.js';

function clock(startMs: number): { now: () => number; advance: (ms: number) => void } {
  let current = startMs;
  return { now: () => current, advance: (ms) => (current += ms) };
}

describe('RecentRequests: the console rolling window', () => {
  it('reports rate, errors and percentiles per API over the completed seconds of the window', () => {
    const time = clock(1_000_000);
    const recent = new RecentRequests(10, time.now);
    for (let second = 0; second < 10; second++) {
      for (let i = 0; i < 99; i++) recent.record('aws-xks', 'Encrypt', 2, false);
      recent.record('aws-xks', 'Encrypt', 200, true);
      time.advance(1000);
    }
    const [encrypt] = recent.summaries();
    assert.ok(encrypt !== undefined);
    assert.equal(encrypt.requests, 1000);
    assert.equal(encrypt.errors, 10);
    assert.equal(encrypt.ratePerSecond, 100);
    assert.equal(encrypt.errorsPerSecond, 1);
    // Buckets are 10 % wide: a percentile is the upper bound of its bucket.
    assert.ok(encrypt.p50Ms !== null && encrypt.p50Ms >= 2 && encrypt.p50Ms <= 2.2, String(encrypt.p50Ms));
    assert.ok(encrypt.p99Ms !== null && encrypt.p99Ms >= 2 && encrypt.p99Ms <= 2.2, 'p99 is the 990th of 1000 values');
  });

  it('moves the p99 to the slow requests once they are over 1 %', () => {
    const time = clock(5_000_000);
    const recent = new RecentRequests(60, time.now);
    for (let i = 0; i < 95; i++) recent.record('aws-xks', 'Decrypt', 1, false);
    for (let i = 0; i < 5; i++) recent.record('aws-xks', 'Decrypt', 120, false);
    time.advance(1000);
    const [decrypt] = recent.summaries();
    assert.ok(decrypt?.p99Ms !== null && decrypt !== undefined && decrypt.p99Ms >= 120 && decrypt.p99Ms <= 132, String(decrypt?.p99Ms));
    assert.ok(decrypt.p50Ms !== null && decrypt.p50Ms <= 1.1);
  });

  it('forgets requests older than the window and leaves the current partial second out', () => {
    const time = clock(9_000_000);
    const recent = new RecentRequests(5, time.now);
    recent.record('aws-xks', 'GetKeyMetadata', 3, false);
    assert.equal(recent.summaries()[0]?.requests, 0, 'the current second is not counted yet');
    time.advance(1000);
    assert.equal(recent.summaries()[0]?.requests, 1);
    time.advance(4000);
    assert.equal(recent.summaries()[0]?.requests, 1, 'the fifth completed second is still inside the 5 s window');
    time.advance(1000);
    const [stale] = recent.summaries();
    assert.equal(stale?.requests, 0);
    assert.equal(stale?.p99Ms, null);
  });

  it('reuses a slot after a full turn of the ring without mixing old counts in', () => {
    const time = clock(0);
    const recent = new RecentRequests(3, time.now);
    for (let i = 0; i < 50; i++) recent.record('aws-xks', 'Encrypt', 1, true);
    time.advance(4000); // the same slot index again (ring of 4)
    recent.record('aws-xks', 'Encrypt', 1, false);
    time.advance(1000);
    const [encrypt] = recent.summaries();
    assert.equal(encrypt?.requests, 1);
    assert.equal(encrypt?.errors, 0);
  });

  it('keeps one entry per contract and API, sorted, and handles extreme latencies', () => {
    const time = clock(42_000);
    const recent = new RecentRequests(60, time.now);
    recent.record('aws-xks', 'Encrypt', 0, false);
    recent.record('aws-xks', 'Decrypt', 10 * 60_000, false);
    recent.record('aws-xks', 'Encrypt', Number.NaN, false);
    time.advance(1000);
    const summaries = recent.summaries();
    assert.deepEqual(
      summaries.map((summary) => summary.api),
      ['Decrypt', 'Encrypt'],
    );
    assert.ok(summaries[0]!.p99Ms !== null && summaries[0]!.p99Ms >= 50_000 && Number.isFinite(summaries[0]!.p99Ms), 'very slow requests land in the last finite bucket');
    assert.equal(summaries[1]!.p99Ms, 0.05, 'zero and NaN land in the first bucket');
  });
});

describe('RecentRequests: shorter windows and totals', () => {
  it('answers over a shorter window (the console\'s "now") and never past the built one', () => {
    const time = clock(2_000_000);
    const recent = new RecentRequests(60, time.now);
    for (let second = 0; second < 60; second++) {
      const perSecond = second < 50 ? 10 : 100;
      for (let i = 0; i < perSecond; i++) recent.record('aws-xks', 'Decrypt', 1, second >= 50 && i === 0);
      time.advance(1000);
    }
    assert.equal(recent.summaries(10)[0]?.ratePerSecond, 100);
    assert.equal(recent.summaries(10)[0]?.errorsPerSecond, 1);
    assert.equal(recent.summaries()[0]?.requests, 50 * 10 + 10 * 100);
    assert.equal(recent.summaries(600)[0]?.windowSeconds, 60);
    assert.equal(recent.summaries(0)[0]?.windowSeconds, 1);
  });

  it('counts every request and failure since start, whatever the window forgot', () => {
    const time = clock(3_000_000);
    const recent = new RecentRequests(5, time.now);
    for (let i = 0; i < 30; i++) {
      recent.record('aws-xks', 'Encrypt', 1, i % 10 === 0);
      time.advance(1000);
    }
    assert.deepEqual(recent.totals(), { requests: 30, errors: 3 });
    assert.equal(recent.summaries()[0]?.requests, 5);
  });
});
