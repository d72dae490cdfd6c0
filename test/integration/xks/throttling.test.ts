import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';

describe('ThrottlingException', () => {
  let fixture: ProxyFixture;
  before(async () => {
    fixture = await createFixture({
      name: 'xks-throttling',
      configure: (config) => {
        const store = config.keyStores[0];
        if (store !== undefined) store.rateLimit = { requestsPerSecond: 2, burst: 5 };
      },
    });
  });
  after(async () => {
    await fixture.close();
  });

  it('a key store over its quota gets 429 ThrottlingException, and recovers', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      const response = await fixture.client.encrypt('foo', { plaintext: randomBytes(16) });
      statuses.push(response.status);
      if (response.status === 429) assert.equal(response.body['errorName'], 'ThrottlingException');
    }
    assert.ok(statuses.slice(0, 5).every((status) => status === 200), `the burst is served: ${statuses.join(',')}`);
    assert.ok(statuses.includes(429), `some requests are throttled: ${statuses.join(',')}`);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    assert.equal((await fixture.client.encrypt('foo', { plaintext: randomBytes(16) })).status, 200);
  });

  it('unauthenticated requests do not spend the key store quota', async () => {
    await new Promise((resolve) => setTimeout(resolve, 2600));
    for (let i = 0; i < 20; i++) assert.equal((await fixture.client.health({ unsigned: true })).status, 401);
    assert.equal((await fixture.client.encrypt('foo', { plaintext: randomBytes(16) })).status, 200);
  });

  it('more requests in flight than allowed get 429 ThrottlingException', async () => {
    const config = fixture.readConfig();
    const store = config.keyStores[0];
    if (store !== undefined) store.rateLimit = { requestsPerSecond: 0, burst: 1 };
    config.server.limits = { ...config.server.limits, maxInFlightRequests: 1 };
    fixture.writeConfig(config);
    await fixture.startProxy();
    const responses = await Promise.all(Array.from({ length: 40 }, () => fixture.client.encrypt('foo', { plaintext: randomBytes(16) })));
    const statuses = responses.map((response) => response.status);
    assert.ok(statuses.includes(200), statuses.join(','));
    assert.ok(statuses.includes(429), statuses.join(','));
    assert.ok(statuses.every((status) => status === 200 || status === 429), statuses.join(','));
  });
});
