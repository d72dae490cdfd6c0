import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { createBreaker } from '../../../src/lib/breaker.js';

describe('createBreaker', () => {
  const settings = { errorThresholdPercentage: 50, volumeThreshold: 4, resetTimeoutMs: 100, rollingWindowMs: 60_000 };

  it('only errors the filter blames count', async () => {
    const breaker = createBreaker('filtered', async (fail: string) => Promise.reject(new Error(fail)), settings, (error) => (error as Error).message === 'dependency');
    for (let i = 0; i < 10; i++) await breaker.fire('client').catch(() => undefined);
    assert.equal(breaker.opened, false, 'client errors never open it');
    // Filtered errors count as successful calls in the window: 15 failures of 25 calls pass the 50 % threshold.
    for (let i = 0; i < 15; i++) await breaker.fire('dependency').catch(() => undefined);
    assert.equal(breaker.opened, true);
    breaker.shutdown();
  });

  it('a breaker closed by a successful trial starts from a clean window: one failure does not reopen it', async () => {
    let failing = true;
    const breaker = createBreaker('recovering', async () => (failing ? Promise.reject(new Error('down')) : 'ok'), settings, () => true);
    for (let i = 0; i < 6; i++) await breaker.fire().catch(() => undefined);
    assert.equal(breaker.opened, true);
    await sleep(150);
    assert.equal(breaker.halfOpen, true);
    failing = false;
    assert.equal(await breaker.fire(), 'ok');
    assert.equal(breaker.closed, true);
    assert.equal(breaker.stats.failures, 0, 'the outage is forgotten');
    failing = true;
    await breaker.fire().catch(() => undefined);
    assert.equal(breaker.closed, true, 'a single failure after recovery keeps it closed');
    breaker.shutdown();
  });
});
