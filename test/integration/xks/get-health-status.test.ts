import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';

describe('GetHealthStatus and load-balancer health', () => {
  let fixture: ProxyFixture;
  before(async () => {
    fixture = await createFixture({
      name: 'xks-health',
      configure: (config) => {
        config.proxy = { vendor: 'Example Corp', model: 'Example XKS 9', fleetSize: 3 };
      },
    });
  });
  after(async () => {
    await fixture.close();
  });

  it('lists every member with its deep-check status and the configured fleet size', async () => {
    const response = await fixture.client.health();
    assert.equal(response.status, 200, response.text);
    assert.equal(response.body['xksProxyFleetSize'], 3);
    assert.equal(response.body['xksProxyVendor'], 'Example Corp');
    assert.equal(response.body['xksProxyModel'], 'Example XKS 9');
    assert.equal(response.body['ekmVendor'], 'SoftHSM');
    assert.deepEqual(
      (response.body['ekmFleetDetails'] as Array<Record<string, string>>).map((member) => [member['id'], member['healthStatus']]),
      [
        ['softhsm-1', 'ACTIVE'],
        ['softhsm-2', 'ACTIVE'],
        ['softhsm-3', 'ACTIVE'],
      ],
    );
  });

  it('is deep: every member has a successful encrypt/decrypt probe on the health-check key younger than a minute', async () => {
    await fixture.client.health();
    for (const member of fixture.proxy?.cluster.snapshot() ?? []) {
      assert.equal(member.lastProbe?.ok, true, member.id);
      assert.ok(Date.now() - (member.lastProbe?.at ?? 0) <= 60_000);
    }
  });

  it('accepts any kmsOperation, such as CreateCustomKeyStore, and unknown metadata fields', async () => {
    const response = await fixture.client.post('health', {
      requestMetadata: { kmsRequestId: randomUUID(), kmsOperation: 'SomethingNew', extra: 'field' },
    });
    assert.equal(response.status, 200);
  });

  it('is exempt from authorization but not from authentication', async () => {
    const response = await fixture.client.health({ unsigned: true });
    assert.equal(response.status, 401);
  });

  it('GET /ping answers without authentication', async () => {
    const response = await fixture.client.send('/ping', undefined, { method: 'GET', unsigned: true });
    assert.equal(response.status, 200);
    assert.deepEqual(response.body, { status: 'ok' });
  });

  it('GET /ready is 200 with member states while members serve', async () => {
    const response = await fixture.client.send('/ready', undefined, { method: 'GET', unsigned: true });
    assert.equal(response.status, 200);
    assert.equal(response.body['ready'], true);
    assert.equal((response.body['members'] as unknown[]).length, 3);
  });
});
