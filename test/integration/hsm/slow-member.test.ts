import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';

/**
 * A member that answers slowly but within the call deadline is DEGRADED, not
 * UNAVAILABLE: its deep check has its own deadline (two HSM calls) rather than
 * one data call's, and a single probe timeout on a busy member degrades it
 * instead of taking it out. Found by the slow-one failover drill.
 */
describe('a slow HSM member', () => {
  let fixture: ProxyFixture;
  before(async () => {
    fixture = await createFixture({
      name: 'slow-member',
      faultInjection: true,
      configure: (config) => {
        config.hsm.healthCheck = { ...config.hsm.healthCheck, intervalMs: 1000 };
      },
    });
  });
  after(async () => {
    await fixture.close();
  });

  it('is reported DEGRADED, never UNAVAILABLE, while its calls still succeed', async () => {
    // 60 ms per encrypt or decrypt: one call fits the 100 ms call deadline, a probe (two calls) does not.
    fixture.faults.get('softhsm-2')?.delay(60, ['encrypt', 'decrypt']);
    const seen = new Set<string>();
    const until = Date.now() + 4000;
    while (Date.now() < until) {
      const response = await fixture.client.encrypt('foo', { plaintext: randomBytes(16) });
      assert.equal(response.status, 200, response.text);
      const member = fixture.proxy?.cluster.snapshot().find((snapshot) => snapshot.id === 'softhsm-2');
      if (member?.lastProbe !== undefined && Date.now() - member.lastProbe.at < 1500) seen.add(member.health);
      await sleep(100);
    }
    assert.ok(seen.has('DEGRADED'), `health seen: ${[...seen].join(', ')}`);
    assert.ok(!seen.has('UNAVAILABLE'), `health seen: ${[...seen].join(', ')}`);
    const health = await fixture.client.health();
    const fleet = Object.fromEntries((health.body['ekmFleetDetails'] as Array<Record<string, string>>).map((member) => [member['id'], member['healthStatus']]));
    assert.equal(fleet['softhsm-2'], 'DEGRADED');
    assert.equal(fleet['softhsm-1'], 'ACTIVE');
  });

  it('is ACTIVE again once it is fast', async () => {
    fixture.faults.get('softhsm-2')?.pass();
    const until = Date.now() + 5000;
    let health: string | undefined;
    while (Date.now() < until) {
      await fixture.client.encrypt('foo', { plaintext: randomBytes(16) });
      health = fixture.proxy?.cluster.snapshot().find((snapshot) => snapshot.id === 'softhsm-2')?.health;
      if (health === 'ACTIVE') break;
      await sleep(200);
    }
    assert.equal(health, 'ACTIVE');
  });
});
