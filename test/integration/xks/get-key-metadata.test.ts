import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import pkcs11js from 'pkcs11js';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { requestMetadata } from '../../helpers/xks-client.js';

describe('GetKeyMetadata', () => {
  let fixture: ProxyFixture;
  before(async () => {
    fixture = await createFixture({
      name: 'xks-metadata',
      configure: (config) => {
        config.keyStores[0]?.keys.push({ id: 'aes128_key', enabled: true });
      },
      start: false,
    });
    // A 128-bit AES key on every token: XKS v1 only supports AES_256, so metadata must refuse it.
    const previous = process.env['SOFTHSM2_CONF'];
    process.env['SOFTHSM2_CONF'] = fixture.dev.softhsmConf;
    const p11 = new pkcs11js.PKCS11();
    p11.load(fixture.dev.modulePath);
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    try {
      const pin = readFileSync(fixture.dev.pinFile, 'utf8').trim();
      const material = randomBytes(16);
      const slots = p11.C_GetSlotList(true).filter((slot) => p11.C_GetTokenInfo(slot).label.trim().startsWith('hyok-dev-'));
      assert.equal(slots.length, 3);
      for (const slot of slots) {
        const session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
        p11.C_Login(session, pkcs11js.CKU_USER, pin);
        // Identical material on every member, or the key consistency check would quarantine it.
        p11.C_CreateObject(session, [
          { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
          { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
          { type: pkcs11js.CKA_TOKEN, value: true },
          { type: pkcs11js.CKA_PRIVATE, value: true },
          { type: pkcs11js.CKA_LABEL, value: 'aes128_key' },
          { type: pkcs11js.CKA_VALUE, value: material },
          { type: pkcs11js.CKA_ENCRYPT, value: true },
          { type: pkcs11js.CKA_DECRYPT, value: true },
        ]);
        p11.C_Logout(session);
        p11.C_CloseSession(session);
      }
    } finally {
      p11.C_Finalize();
      if (previous === undefined) delete process.env['SOFTHSM2_CONF'];
      else process.env['SOFTHSM2_CONF'] = previous;
    }
    await fixture.startProxy();
  });
  after(async () => {
    await fixture.close();
  });

  const expectations: Array<[string, string[], string]> = [
    ['foo', ['ENCRYPT', 'DECRYPT'], 'ENABLED'],
    ['encrypt_only_key', ['ENCRYPT'], 'ENABLED'],
    ['decrypt_only_key', ['DECRYPT'], 'ENABLED'],
    ['impotent_key', [], 'ENABLED'],
    ['disabled_key', ['ENCRYPT', 'DECRYPT'], 'DISABLED'],
  ];
  for (const [keyId, usage, status] of expectations) {
    it(`reports ${keyId} as AES_256 with usage [${usage.join(',')}] and status ${status}`, async () => {
      const response = await fixture.client.metadata(keyId);
      assert.equal(response.status, 200, response.text);
      assert.deepEqual(response.body, { keySpec: 'AES_256', keyUsage: usage, keyStatus: status });
    });
  }

  it('answers for CreateKey without kmsKeyArn (spec: optional for GetKeyMetadata)', async () => {
    const metadata = requestMetadata('CreateKey');
    delete metadata['kmsKeyArn'];
    const response = await fixture.client.post('keys/foo/metadata', { requestMetadata: metadata });
    assert.equal(response.status, 200, response.text);
  });

  it('refuses a key that is not AES-256 with UnsupportedOperationException', async () => {
    const response = await fixture.client.metadata('aes128_key');
    assert.equal(response.status, 501, response.text);
    assert.equal(response.body['errorName'], 'UnsupportedOperationException');
  });

  it('an unknown key is KeyNotFoundException', async () => {
    const response = await fixture.client.metadata('nope');
    assert.equal(response.status, 404);
    assert.equal(response.body['errorName'], 'KeyNotFoundException');
  });

  it('missing awsPrincipalArn is ValidationException', async () => {
    const metadata = requestMetadata('DescribeKey');
    delete metadata['awsPrincipalArn'];
    const response = await fixture.client.post('keys/foo/metadata', { requestMetadata: metadata });
    assert.equal(response.status, 400);
    assert.equal(response.body['errorName'], 'ValidationException');
  });
});
