import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { readAuditRecords } from '../../helpers/test-env.js';
import { requestMetadata } from '../../helpers/xks-client.js';

describe('Encrypt and Decrypt: happy paths against three SoftHSM members', () => {
  let fixture: ProxyFixture;
  before(async () => {
    fixture = await createFixture({ name: 'xks-crypto-happy' });
  });
  after(async () => {
    await fixture.close();
  });

  it('round-trips a data key with AAD and returns the plaintext', async () => {
    const plaintext = randomBytes(32);
    const aad = Buffer.from('project=nile,department=marketing');
    const { encrypted, decrypted } = await fixture.client.roundTrip('foo', plaintext, aad);
    assert.equal(decrypted.status, 200, decrypted.text);
    assert.equal(decrypted.body['plaintext'], plaintext.toString('base64'));
    const ciphertext = Buffer.from(encrypted.body['ciphertext'] as string, 'base64');
    assert.equal(ciphertext.length, plaintext.length, 'GCM ciphertext has the plaintext length');
    assert.notDeepEqual(ciphertext, plaintext);
  });

  it('round-trips without AAD', async () => {
    const plaintext = randomBytes(48);
    const { decrypted } = await fixture.client.roundTrip('foo', plaintext);
    assert.equal(decrypted.body['plaintext'], plaintext.toString('base64'));
  });

  it('returns a 12-byte IV, a 16-byte tag and the 3-byte format/key-version metadata', async () => {
    const response = await fixture.client.encrypt('foo', { plaintext: randomBytes(32) });
    assert.equal(response.status, 200);
    assert.equal(Buffer.from(response.body['initializationVector'] as string, 'base64').length, 12);
    assert.equal(Buffer.from(response.body['authenticationTag'] as string, 'base64').length, 16);
    assert.deepEqual(Buffer.from(response.body['ciphertextMetadata'] as string, 'base64'), Buffer.from([0x01, 0x00, 0x01]));
  });

  it('uses a fresh IV for every encrypt, also of the same plaintext', async () => {
    const plaintext = randomBytes(32);
    const ivs = new Set<string>();
    const ciphertexts = new Set<string>();
    for (let round = 0; round < 10; round++) {
      const batch = await Promise.all(Array.from({ length: 20 }, () => fixture.client.encrypt('foo', { plaintext })));
      for (const response of batch) {
        assert.equal(response.status, 200);
        ivs.add(response.body['initializationVector'] as string);
        ciphertexts.add(response.body['ciphertext'] as string);
      }
    }
    assert.equal(ivs.size, 200, 'no IV repeats across 200 encrypts');
    assert.equal(ciphertexts.size, 200);
  });

  it('handles the spec maximums: 4,300 bytes of plaintext with 8,192 bytes of AAD', async () => {
    const plaintext = randomBytes(4300);
    const aad = randomBytes(8192);
    const { decrypted } = await fixture.client.roundTrip('foo', plaintext, aad);
    assert.equal(decrypted.status, 200, decrypted.text);
    assert.equal(decrypted.body['plaintext'], plaintext.toString('base64'));
  });

  it('returns a CDIV that matches Appendix C, computed over the returned fields', async () => {
    const plaintext = randomBytes(32);
    const aad = randomBytes(40);
    const response = await fixture.client.encrypt('foo', { plaintext, aad, cdiv: true });
    assert.equal(response.status, 200, response.text);
    const field = (name: string): Buffer => Buffer.from(response.body[name] as string, 'base64');
    const expected = createHash('sha256')
      .update(aad)
      .update(field('ciphertextMetadata'))
      .update(field('initializationVector'))
      .update(field('ciphertext'))
      .update(field('authenticationTag'))
      .digest('base64');
    assert.equal(response.body['ciphertextDataIntegrityValue'], expected);
  });

  it('omits the CDIV when it is not asked for', async () => {
    const response = await fixture.client.encrypt('foo', { plaintext: randomBytes(32) });
    assert.equal(response.body['ciphertextDataIntegrityValue'], undefined);
  });

  it('decrypts on any member what another member encrypted (identical key material)', async () => {
    const plaintext = randomBytes(32);
    const members = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const { decrypted } = await fixture.client.roundTrip('foo', plaintext);
      assert.equal(decrypted.body['plaintext'], plaintext.toString('base64'));
    }
    for (const snapshot of fixture.proxy?.cluster.snapshot() ?? []) if (snapshot.lastProbe?.ok === true) members.add(snapshot.id);
    assert.equal(members.size, 3, 'all three members are healthy');
  });

  it('accepts unknown kmsOperation values and unknown extra fields (spec: MUST NOT reject)', async () => {
    const plaintext = randomBytes(16);
    const response = await fixture.client.post('keys/foo/encrypt', {
      requestMetadata: requestMetadata('BulkEncryptFromTheFuture', { kmsRecipientAttestationImageSha384: 'abc', sourceIdentity: 'x' }),
      plaintext: plaintext.toString('base64'),
      encryptionAlgorithm: 'AES_GCM',
      someFutureField: { nested: true },
    });
    assert.equal(response.status, 200, response.text);
  });

  it('encrypts with the encrypt-only key and decrypts with the decrypt-only key only where their usages allow', async () => {
    const plaintext = randomBytes(32);
    const encrypted = await fixture.client.encrypt('encrypt_only_key', { plaintext });
    assert.equal(encrypted.status, 200, encrypted.text);
  });

  it('writes one audit record per request with the member that served it', async () => {
    const response = await fixture.client.encrypt('foo', { plaintext: randomBytes(32), kmsOperation: 'GenerateDataKey' });
    assert.equal(response.status, 200);
    const record = readAuditRecords(fixture.auditFile)
      .reverse().find((entry) => entry['event'] === 'xks.request' && entry['kmsOperation'] === 'GenerateDataKey');
    assert.ok(record !== undefined, 'audit record present');
    assert.equal(record['api'], 'Encrypt');
    assert.equal(record['externalKeyId'], 'foo');
    assert.equal(record['keyStore'], 'dev');
    assert.equal(record['outcome'], 'success');
    assert.equal(record['awsPrincipalArn'], 'arn:aws:iam::123456789012:user/Alice');
    assert.match(String(record['hsmMember']), /^softhsm-[123]$/);
    assert.equal(typeof record['latencyMs'], 'number');
    assert.equal(typeof record['kmsRequestId'], 'string');
  });
});
