import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { expectXksError, requestMetadata, type Sealed, sealedFrom } from '../../helpers/xks-client.js';

function flipFirstBit(base64: string): string {
  const bytes = Buffer.from(base64, 'base64');
  bytes[0] = (bytes[0] as number) ^ 0x01;
  return bytes.toString('base64');
}

describe('Encrypt and Decrypt: error paths', () => {
  let fixture: ProxyFixture;
  const plaintext = randomBytes(32);
  const aad = Buffer.from('context=unit-test,department=security');
  let sealed: Sealed;

  before(async () => {
    fixture = await createFixture({ name: 'xks-crypto-error' });
    sealed = sealedFrom(await fixture.client.encrypt('foo', { plaintext, aad }));
  });
  after(async () => {
    await fixture.close();
  });

  describe('tampering is always InvalidCiphertextException', () => {
    it('a flipped ciphertext bit', async () => {
      expectXksError(await fixture.client.decrypt('foo', { ...sealed, ciphertext: flipFirstBit(sealed.ciphertext), aad }), 400, 'InvalidCiphertextException');
    });
    it('a flipped tag bit', async () => {
      expectXksError(await fixture.client.decrypt('foo', { ...sealed, tag: flipFirstBit(sealed.tag), aad }), 400, 'InvalidCiphertextException');
    });
    it('a flipped IV bit', async () => {
      expectXksError(await fixture.client.decrypt('foo', { ...sealed, iv: flipFirstBit(sealed.iv), aad }), 400, 'InvalidCiphertextException');
    });
    it('a different AAD', async () => {
      expectXksError(await fixture.client.decrypt('foo', { ...sealed, aad: Buffer.from('context=unit-test,department=sales') }), 400, 'InvalidCiphertextException');
    });
    it('a missing AAD', async () => {
      expectXksError(await fixture.client.decrypt('foo', { ...sealed }), 400, 'InvalidCiphertextException');
    });
    it('missing ciphertextMetadata', async () => {
      expectXksError(await fixture.client.decrypt('foo', { ...sealed, metadata: undefined, aad }), 400, 'InvalidCiphertextException');
    });
    it('ciphertextMetadata with an unknown format byte', async () => {
      expectXksError(await fixture.client.decrypt('foo', { ...sealed, metadata: Buffer.from([0x02, 0x00, 0x01]).toString('base64'), aad }), 400, 'InvalidCiphertextException');
    });
    it('a ciphertext decrypted under a different key', async () => {
      expectXksError(await fixture.client.decrypt('canary', { ...sealed, aad }), 400, 'InvalidCiphertextException');
    });
    it('a 16-byte IV that was never used', async () => {
      expectXksError(await fixture.client.decrypt('foo', { ...sealed, iv: randomBytes(16).toString('base64'), aad }), 400, 'InvalidCiphertextException');
    });
  });

  it('binds the metadata: metadata passed as AAD (and no metadata) does not decrypt (spec, length-prefixed AAD)', async () => {
    const noAad = sealedFrom(await fixture.client.encrypt('foo', { plaintext }));
    const response = await fixture.client.decrypt('foo', { ...noAad, metadata: undefined, aad: Buffer.from(noAad.metadata ?? '', 'base64') });
    expectXksError(response, 400, 'InvalidCiphertextException');
  });

  it('garbage ciphertext at a high rate only ever yields InvalidCiphertextException and leaves every member healthy', async () => {
    const responses = await Promise.all(
      Array.from({ length: 60 }, () =>
        fixture.client.decrypt('foo', { ciphertext: randomBytes(32).toString('base64'), iv: randomBytes(12).toString('base64'), tag: randomBytes(16).toString('base64'), metadata: sealed.metadata }),
      ),
    );
    for (const response of responses) expectXksError(response, 400, 'InvalidCiphertextException');
    for (const member of fixture.proxy?.cluster.snapshot() ?? []) assert.notEqual(member.health, 'UNAVAILABLE', `${member.id} stays available`);
  });

  describe('key usage', () => {
    it('decrypt with the encrypt-only key is InvalidKeyUsageException', async () => {
      const encrypted = sealedFrom(await fixture.client.encrypt('encrypt_only_key', { plaintext }));
      const response = await fixture.client.decrypt('encrypt_only_key', encrypted);
      expectXksError(response, 400, 'InvalidKeyUsageException');
    });
    it('encrypt with the decrypt-only key is InvalidKeyUsageException', async () => {
      expectXksError(await fixture.client.encrypt('decrypt_only_key', { plaintext }), 400, 'InvalidKeyUsageException');
    });
    it('encrypt and decrypt with the impotent key are InvalidKeyUsageException', async () => {
      expectXksError(await fixture.client.encrypt('impotent_key', { plaintext }), 400, 'InvalidKeyUsageException');
      expectXksError(await fixture.client.decrypt('impotent_key', { ...sealed, aad }), 400, 'InvalidKeyUsageException');
    });
    it('a CDIV request on the encrypt-only key is InvalidKeyUsageException (the verifying decrypt is not allowed)', async () => {
      expectXksError(await fixture.client.encrypt('encrypt_only_key', { plaintext, cdiv: true }), 400, 'InvalidKeyUsageException');
    });
  });

  describe('key state and existence', () => {
    it('a disabled key refuses encrypt and decrypt with InvalidStateException', async () => {
      expectXksError(await fixture.client.encrypt('disabled_key', { plaintext }), 400, 'InvalidStateException');
      expectXksError(await fixture.client.decrypt('disabled_key', { ...sealed, aad }), 400, 'InvalidStateException');
    });
    it('an unknown key is KeyNotFoundException', async () => {
      expectXksError(await fixture.client.encrypt('no_such_key', { plaintext }), 404, 'KeyNotFoundException');
      expectXksError(await fixture.client.decrypt('no_such_key', { ...sealed, aad }), 404, 'KeyNotFoundException');
    });
    it('a key listed in the config but absent from the HSMs is KeyNotFoundException', async () => {
      const config = fixture.readConfig();
      const store = config.keyStores[0];
      assert.ok(store !== undefined);
      store.keys = [...store.keys, { id: 'listed_but_missing', enabled: true }];
      fixture.writeConfig(config);
      const reloaded = await fixture.proxy?.reload();
      assert.equal(reloaded?.ok, true, JSON.stringify(reloaded?.issues));
      expectXksError(await fixture.client.encrypt('listed_but_missing', { plaintext }), 404, 'KeyNotFoundException');
    });
  });

  describe('input validation is ValidationException', () => {
    const valid = (): Record<string, unknown> => ({ requestMetadata: requestMetadata('Encrypt'), plaintext: plaintext.toString('base64'), encryptionAlgorithm: 'AES_GCM' });
    const cases: Array<[string, (body: Record<string, unknown>) => unknown]> = [
      ['missing plaintext', (body) => ({ ...body, plaintext: undefined })],
      ['missing requestMetadata', (body) => ({ ...body, requestMetadata: undefined })],
      ['empty requestMetadata', (body) => ({ ...body, requestMetadata: {} })],
      ['missing kmsKeyArn', (body) => ({ ...body, requestMetadata: { ...(body['requestMetadata'] as object), kmsKeyArn: undefined } })],
      ['plaintext not Base64', (body) => ({ ...body, plaintext: 'not base64!' })],
      ['plaintext with bad padding', (body) => ({ ...body, plaintext: 'QQ=' })],
      ['plaintext a number', (body) => ({ ...body, plaintext: 42 })],
      ['plaintext an array', (body) => ({ ...body, plaintext: ['QQ=='] })],
      ['AAD not Base64', (body) => ({ ...body, additionalAuthenticatedData: '$$$$' })],
      ['kmsRequestId an object', (body) => ({ ...body, requestMetadata: { ...(body['requestMetadata'] as object), kmsRequestId: {} } })],
      ['an ARN longer than 2048', (body) => ({ ...body, requestMetadata: { ...(body['requestMetadata'] as object), awsPrincipalArn: `arn:${'a'.repeat(2050)}` } })],
      ['an unknown CDIV algorithm', (body) => ({ ...body, ciphertextDataIntegrityValueAlgorithm: 'MD5' })],
      ['a body that is a JSON array', () => [1, 2, 3]],
      ['a body that is a JSON string', () => 'hello'],
      ['a body that is null', () => null],
      ['plaintext above the configured maximum', (body) => ({ ...body, plaintext: randomBytes(8193).toString('base64') })],
      ['AAD above the configured maximum', (body) => ({ ...body, additionalAuthenticatedData: randomBytes(16_385).toString('base64') })],
    ];
    for (const [name, mutate] of cases) {
      it(name, async () => {
        const body = mutate(valid());
        expectXksError(await fixture.client.post('keys/foo/encrypt', JSON.stringify(body)), 400, 'ValidationException');
      });
    }

    const decryptCases: Array<[string, Partial<Sealed>]> = [
      ['an 8-byte IV', { iv: randomBytes(8).toString('base64').padEnd(16, 'A') }],
      ['a 15-byte tag', { tag: `${randomBytes(15).toString('base64')}AAAA`.slice(0, 24) }],
      ['ciphertextMetadata longer than 20 bytes', { metadata: randomBytes(21).toString('base64') }],
    ];
    for (const [name, change] of decryptCases) {
      it(`decrypt with ${name}`, async () => {
        expectXksError(await fixture.client.decrypt('foo', { ...sealed, ...change, aad }), 400, 'ValidationException');
      });
    }

    it('decrypt without an authenticationTag', async () => {
      const body = {
        requestMetadata: requestMetadata('Decrypt'),
        ciphertext: sealed.ciphertext,
        initializationVector: sealed.iv,
        encryptionAlgorithm: 'AES_GCM',
      };
      expectXksError(await fixture.client.post('keys/foo/decrypt', body), 400, 'ValidationException');
    });
  });

  it('an encryptionAlgorithm other than AES_GCM is UnsupportedOperationException (501)', async () => {
    const response = await fixture.client.post('keys/foo/encrypt', {
      requestMetadata: requestMetadata('Encrypt'),
      plaintext: plaintext.toString('base64'),
      encryptionAlgorithm: 'RSAES_OAEP_SHA_256',
    });
    expectXksError(response, 501, 'UnsupportedOperationException');
  });
});
