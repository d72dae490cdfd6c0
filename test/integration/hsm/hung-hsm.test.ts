import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';

/** Polls until `check` is true or `timeoutMs` passes. */
async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * A hung HSM, simulated behind the PKCS#11 boundary by the fault shim: the
 * token's C_Encrypt/C_Decrypt never return until released.
 */
describe('a hung HSM costs a fast error or a retry, never a stuck request', () => {
  let fixture: ProxyFixture;
  before(async () => {
    fixture = await createFixture({
      name: 'hsm-hung',
      faultInjection: true,
      configure: (config) => {
        config.hsm.agentStartTimeoutMs = 1500;
        // Generous here so scheduling noise on a 2-core CI box cannot eat the retry; the all-hung test restores 200 ms.
        config.server.limits = { ...config.server.limits, requestBudgetMs: 1000 };
      },
    });
  });
  after(async () => {
    for (const control of fixture.faults.values()) control.pass();
    await fixture.close();
  });

  const members = (): string[] => [...fixture.faults.keys()];
  const health = (id: string): string | undefined => fixture.proxy?.cluster.snapshot().find((member) => member.id === id)?.health;

  it('one hung member: every request still succeeds, served by the others', async () => {
    const [hung] = members() as [string];
    fixture.faults.get(hung)?.hang(['encrypt', 'decrypt']);
    const plaintext = randomBytes(32);
    const started = performance.now();
    const results = await Promise.all(Array.from({ length: 30 }, () => fixture.client.roundTrip('foo', plaintext)));
    const elapsed = performance.now() - started;
    for (const { decrypted } of results) assert.equal(decrypted.status, 200, decrypted.text);
    assert.ok(elapsed < 10_000, `took ${elapsed} ms`);
    // The watchdog kills the hung agent and the member stays out while its token hangs.
    await waitFor(() => health(hung) === 'UNAVAILABLE', 3000, `${hung} to be UNAVAILABLE`);
  });

  it('the event loop keeps serving while an HSM call hangs', async () => {
    const started = performance.now();
    const response = await fixture.client.send('/ping', undefined, { method: 'GET', unsigned: true });
    assert.equal(response.status, 200);
    assert.ok(performance.now() - started < 1000);
  });

  it('the member recovers on its own once the token answers again', async () => {
    const [hung] = members() as [string];
    fixture.faults.get(hung)?.pass();
    await waitFor(() => health(hung) === 'ACTIVE', 15_000, `${hung} to be ACTIVE again`);
  });

  it('all members hung: 503 DependencyTimeoutException inside the request budget, then fast failures', async () => {
    const config = fixture.readConfig();
    config.server.limits = { ...config.server.limits, requestBudgetMs: 200 };
    fixture.writeConfig(config);
    await fixture.startProxy();
    for (const control of fixture.faults.values()) control.hang(['encrypt', 'decrypt']);
    const started = performance.now();
    const response = await fixture.client.encrypt('foo', { plaintext: randomBytes(32) });
    const elapsed = performance.now() - started;
    assert.equal(response.status, 503, response.text);
    assert.equal(response.body['errorName'], 'DependencyTimeoutException');
    // 200 ms budget plus TLS setup on a loaded test machine; KMS gives 250 ms.
    assert.ok(elapsed < 450, `answered after ${Math.round(elapsed)} ms`);

    // Each member that hangs on a request is fenced within hungAfterMs; the idle one is found by the next request.
    // Once every member is out, requests fail fast instead of waiting for the budget.
    let fast = response;
    let fastElapsed = Number.POSITIVE_INFINITY;
    for (let attempt = 0; attempt < 10 && fast.status !== 500; attempt++) {
      await sleep(600);
      const fastStart = performance.now();
      fast = await fixture.client.encrypt('foo', { plaintext: randomBytes(32) });
      fastElapsed = performance.now() - fastStart;
    }
    assert.equal(fixture.proxy?.cluster.canServe(), false, 'every member is out');
    assert.equal(fast.status, 500, fast.text);
    assert.equal(fast.body['errorName'], 'InternalException');
    assert.ok(fastElapsed < 250, `fast failure took ${Math.round(fastElapsed)} ms`);

    const ready = await fixture.client.send('/ready', undefined, { method: 'GET', unsigned: true });
    assert.equal(ready.status, 503);
    assert.equal(ready.body['ready'], false);
  });

  it('no request is left in flight, and service returns after release', async () => {
    for (const control of fixture.faults.values()) control.pass();
    await waitFor(() => fixture.proxy?.cluster.canServe() === true, 15_000, 'a member to serve again');
    const response = await fixture.client.encrypt('foo', { plaintext: randomBytes(32) });
    assert.equal(response.status, 200, response.text);
    await waitFor(() => (fixture.proxy?.cluster.snapshot() ?? []).every((member) => member.inFlight === 0), 3000, 'no work in flight');
  });
});

describe('device errors', () => {
  let fixture: ProxyFixture;
  before(async () => {
    fixture = await createFixture({ name: 'hsm-device-error', faultInjection: true });
  });
  after(async () => {
    await fixture.close();
  });

  it('a member returning CKR_DEVICE_ERROR is retried on another member: no client error', async () => {
    const [first] = [...fixture.faults.keys()] as [string];
    fixture.faults.get(first)?.error(0x30, ['encrypt']);
    const results = await Promise.all(Array.from({ length: 20 }, () => fixture.client.encrypt('foo', { plaintext: randomBytes(32) })));
    for (const response of results) assert.equal(response.status, 200, response.text);
    fixture.faults.get(first)?.pass();
  });

  it('every member failing is a fast 500 InternalException', async () => {
    for (const control of fixture.faults.values()) control.error(0x30, ['encrypt']);
    const started = performance.now();
    const response = await fixture.client.encrypt('foo', { plaintext: randomBytes(32) });
    assert.equal(response.status, 500, response.text);
    assert.equal(response.body['errorName'], 'InternalException');
    assert.ok(performance.now() - started < 250);
    for (const control of fixture.faults.values()) control.pass();
  });
});
