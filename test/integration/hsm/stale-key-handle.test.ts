import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { runTokenAdmin } from '../../../src/hsm/token-admin.js';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { sealedFrom } from '../../helpers/xks-client.js';

/**
 * Agents cache key object handles. When the key object is replaced on the token
 * (re-provisioned with the same material and label), the cached handle goes
 * stale; the agent must find the key again instead of failing requests.
 */
describe('stale key handles are re-found', () => {
  let fixture: ProxyFixture;
  before(async () => {
    fixture = await createFixture({ name: 'hsm-stale-handle' });
  });
  after(async () => {
    await fixture.close();
  });

  it('keeps encrypting and decrypting after the key object is destroyed and re-imported on every token', async () => {
    const plaintext = randomBytes(32);
    // Warm every member's handle cache.
    const before = await Promise.all(Array.from({ length: 9 }, () => fixture.client.encrypt('canary', { plaintext })));
    const sealed = before.map(sealedFrom);

    const pin = readFileSync(fixture.dev.pinFile, 'utf8').trim();
    for (const tokenLabel of ['hyok-dev-1', 'hyok-dev-2', 'hyok-dev-3']) {
      const target = { module: fixture.dev.modulePath, tokenLabel, pin, environment: { SOFTHSM2_CONF: fixture.dev.softhsmConf } };
      const [destroyed] = (await runTokenAdmin(target, [{ op: 'destroy', label: 'canary' }])) as Array<{ destroyed: number }>;
      assert.equal(destroyed?.destroyed, 1);
      await runTokenAdmin(target, [{ op: 'import', label: 'canary', usage: { encrypt: true, decrypt: true }, material: fixture.canaryMaterial.toString('base64') }]);
    }

    for (const ciphertext of sealed) {
      const response = await fixture.client.decrypt('canary', ciphertext);
      assert.equal(response.status, 200, response.text);
      assert.equal(response.body['plaintext'], plaintext.toString('base64'));
    }
    const after = await Promise.all(Array.from({ length: 9 }, () => fixture.client.encrypt('canary', { plaintext })));
    for (const response of after) assert.equal(response.status, 200, response.text);
  });

  it('a key destroyed everywhere is KeyNotFoundException, not a server error', async () => {
    const pin = readFileSync(fixture.dev.pinFile, 'utf8').trim();
    for (const tokenLabel of ['hyok-dev-1', 'hyok-dev-2', 'hyok-dev-3']) {
      await runTokenAdmin({ module: fixture.dev.modulePath, tokenLabel, pin, environment: { SOFTHSM2_CONF: fixture.dev.softhsmConf } }, [
        { op: 'destroy', label: 'canary' },
      ]);
    }
    const response = await fixture.client.encrypt('canary', { plaintext: randomBytes(32) });
    assert.equal(response.status, 404, response.text);
    assert.equal(response.body['errorName'], 'KeyNotFoundException');
  });
});
