import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { readAuditRecords } from '../../helpers/test-env.js';
import { sealedFrom } from '../../helpers/xks-client.js';

const CKR_SESSION_HANDLE_INVALID = 0xb3;

/** The opossum breaker in front of each member, against real SoftHSM behind the fault shim. */
describe('per-member circuit breakers', () => {
  let fixture: ProxyFixture;
  before(async () => {
    fixture = await createFixture({
      name: 'hsm-breaker',
      faultInjection: true,
      configure: (config) => {
        // A short window so the successes of earlier tests roll off quickly.
        config.hsm.breaker = { volumeThreshold: 5, errorThresholdPercentage: 50, resetTimeoutMs: 600, rollingWindowMs: 2000 };
      },
    });
  });
  after(async () => {
    await fixture.close();
  });

  const member = (id: string) => fixture.proxy?.cluster.snapshot().find((snapshot) => snapshot.id === id);

  it('garbage ciphertext at a high rate never opens a breaker (client faults are filtered)', async () => {
    const sealed = sealedFrom(await fixture.client.encrypt('foo', { plaintext: randomBytes(32) }));
    for (let round = 0; round < 4; round++) {
      const responses = await Promise.all(
        Array.from({ length: 50 }, () =>
          fixture.client.decrypt('foo', { ...sealed, ciphertext: randomBytes(32).toString('base64'), tag: randomBytes(16).toString('base64') }),
        ),
      );
      for (const response of responses) assert.equal(response.body['errorName'], 'InvalidCiphertextException');
    }
    for (const snapshot of fixture.proxy?.cluster.snapshot() ?? []) {
      assert.equal(snapshot.breaker, 'closed', `${snapshot.id} breaker stays closed`);
      assert.equal(snapshot.health, 'ACTIVE');
    }
  });

  it('a member failing with session errors opens its breaker; clients are served by the others', async () => {
    fixture.faults.get('softhsm-1')?.error(CKR_SESSION_HANDLE_INVALID, ['encrypt']);
    const before = readAuditRecords(fixture.auditFile).length;
    for (let i = 0; i < 40 && member('softhsm-1')?.breaker !== 'open'; i++) {
      const responses = await Promise.all(Array.from({ length: 6 }, () => fixture.client.encrypt('foo', { plaintext: randomBytes(16) })));
      for (const response of responses) assert.equal(response.status, 200, response.text);
    }
    assert.equal(member('softhsm-1')?.breaker, 'open');
    assert.equal(member('softhsm-1')?.health, 'UNAVAILABLE');
    const retried = readAuditRecords(fixture.auditFile)
      .slice(before)
      .filter((record) => record['hsmAttempts'] === 2);
    assert.ok(retried.length > 0, 'failures on softhsm-1 were retried elsewhere');
    for (const record of retried) assert.notEqual(record['hsmMember'], 'softhsm-1');

    // While open, no request goes to the member.
    const openedAt = readAuditRecords(fixture.auditFile).length;
    await Promise.all(Array.from({ length: 12 }, () => fixture.client.encrypt('foo', { plaintext: randomBytes(16) })));
    const whileOpen = readAuditRecords(fixture.auditFile).slice(openedAt);
    assert.ok(whileOpen.every((record) => record['hsmAttempts'] === 1 && record['hsmMember'] !== 'softhsm-1'));
  });

  it('after the reset timeout one trial call goes through and, once it succeeds, the breaker closes', async () => {
    fixture.faults.get('softhsm-1')?.pass();
    await sleep(700);
    assert.equal(member('softhsm-1')?.breaker, 'half-open');
    assert.equal(member('softhsm-1')?.health, 'DEGRADED', 'half-open is reported as DEGRADED');
    const deadline = Date.now() + 5000;
    while (member('softhsm-1')?.breaker !== 'closed') {
      assert.ok(Date.now() < deadline, 'breaker did not close');
      await fixture.client.encrypt('foo', { plaintext: randomBytes(16) });
    }
    assert.equal(member('softhsm-1')?.health, 'ACTIVE');
  });

  it('a failed trial opens the breaker again', async () => {
    fixture.faults.get('softhsm-2')?.error(CKR_SESSION_HANDLE_INVALID, ['encrypt']);
    for (let i = 0; i < 40 && member('softhsm-2')?.breaker !== 'open'; i++) {
      await Promise.all(Array.from({ length: 6 }, () => fixture.client.encrypt('foo', { plaintext: randomBytes(16) })));
    }
    assert.equal(member('softhsm-2')?.breaker, 'open');
    await sleep(700);
    assert.equal(member('softhsm-2')?.breaker, 'half-open');
    for (let i = 0; i < 20 && member('softhsm-2')?.breaker === 'half-open'; i++) {
      const response = await fixture.client.encrypt('foo', { plaintext: randomBytes(16) });
      assert.equal(response.status, 200, 'the trial failing is retried on another member');
    }
    assert.equal(member('softhsm-2')?.breaker, 'open');
    fixture.faults.get('softhsm-2')?.pass();
  });
});
