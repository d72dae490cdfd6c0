import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { connect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { createFixture, newCredential, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { type Credential, expectXksError, requestMetadata, type SendOptions, type XksResponse } from '../../helpers/xks-client.js';

/**
 * The shared security suite: every XKS API gets the same unauthenticated,
 * wrongly authenticated, wrong-tenant and hostile-input cases.
 */

interface ApiCase {
  readonly name: string;
  readonly suffix: string;
  readonly body: () => Record<string, unknown>;
}

const APIS: readonly ApiCase[] = [
  {
    name: 'Encrypt',
    suffix: 'keys/foo/encrypt',
    body: () => ({ requestMetadata: requestMetadata('Encrypt'), plaintext: randomBytes(16).toString('base64'), encryptionAlgorithm: 'AES_GCM' }),
  },
  {
    name: 'Decrypt',
    suffix: 'keys/foo/decrypt',
    body: () => ({
      requestMetadata: requestMetadata('Decrypt'),
      ciphertext: randomBytes(16).toString('base64'),
      initializationVector: randomBytes(12).toString('base64'),
      authenticationTag: randomBytes(16).toString('base64'),
      ciphertextMetadata: Buffer.from([1, 0, 1]).toString('base64'),
      encryptionAlgorithm: 'AES_GCM',
    }),
  },
  { name: 'GetKeyMetadata', suffix: 'keys/foo/metadata', body: () => ({ requestMetadata: requestMetadata('DescribeKey') }) },
  { name: 'GetHealthStatus', suffix: 'health', body: () => ({ requestMetadata: { kmsRequestId: randomUUID(), kmsOperation: 'KmsHealthCheck' } }) },
];

/** Decrypt of random bytes authenticates fine and then fails GCM: that is the "authenticated" outcome for it. */
function authenticatedStatus(api: ApiCase): number {
  return api.name === 'Decrypt' ? 400 : 200;
}

describe('shared security suite, for every XKS API', () => {
  let fixture: ProxyFixture;
  let otherStoreCredential: Credential;

  before(async () => {
    otherStoreCredential = newCredential();
    fixture = await createFixture({
      name: 'xks-security',
      configure: (config, dev) => {
        config.keyStores.push({
          name: 'other',
          uriPrefix: '/keystores/other',
          credentials: [{ accessKeyId: otherStoreCredential.accessKeyId, secretAccessKey: { env: 'HYOK_TEST_OTHER_SECRET' } }],
          regions: ['eu-west-1'],
          keys: [{ id: 'other_key', label: 'foo' }],
        });
        void dev;
      },
      start: false,
    });
    process.env['HYOK_TEST_OTHER_SECRET'] = otherStoreCredential.secretAccessKey;
    await fixture.startProxy();
  });
  after(async () => {
    await fixture.close();
    delete process.env['HYOK_TEST_OTHER_SECRET'];
  });

  for (const api of APIS) {
    describe(api.name, () => {
      const send = (options: SendOptions = {}, body: unknown = api.body()): Promise<XksResponse> => fixture.client.post(api.suffix, body, options);

      it('accepts a correctly signed request', async () => {
        const response = await send();
        assert.equal(response.status, authenticatedStatus(api), response.text);
      });
      it('rejects a request without Authorization: 401', async () => {
        expectXksError(await send({ unsigned: true }), 401, 'AuthenticationFailedException');
      });
      it('rejects a wrong secret: 401', async () => {
        expectXksError(await send({ credential: { ...fixture.credential, secretAccessKey: randomBytes(32).toString('base64') } }), 401, 'AuthenticationFailedException');
      });
      it('rejects an unknown access key id: 401', async () => {
        expectXksError(await send({ credential: { ...fixture.credential, accessKeyId: 'ABCDEFGHIJKLMNOPQRSTUVWXYZ' } }), 401, 'AuthenticationFailedException');
      });
      it("rejects another key store's valid credential: 401", async () => {
        expectXksError(await send({ credential: otherStoreCredential, region: 'eu-west-1' }), 401, 'AuthenticationFailedException');
      });
      it('rejects a request signed 5 min 30 s ago or ahead: 401', async () => {
        expectXksError(await send({ signingDate: new Date(Date.now() - 330_000) }), 401, 'AuthenticationFailedException');
        expectXksError(await send({ signingDate: new Date(Date.now() + 330_000) }), 401, 'AuthenticationFailedException');
      });
      it('accepts a request signed 4 minutes ago (clock skew window)', async () => {
        assert.equal((await send({ signingDate: new Date(Date.now() - 240_000) })).status, authenticatedStatus(api));
      });
      it('rejects a body changed after signing: 401', async () => {
        const response = await send({
          tamper: (parts) => {
            parts.body = Buffer.from(parts.body.toString('utf8').replace('"requestMetadata"', '"requestMetadata" '));
          },
        });
        expectXksError(response, 401, 'AuthenticationFailedException');
      });
      it('accepts curl-style signatures that also sign content-type', async () => {
        // The client signs content-type by default (it is in the signed headers set); check it is in the Authorization header.
        let authorization = '';
        const response = await send({ tamper: (parts) => void (authorization = parts.headers['authorization'] ?? '') });
        assert.match(authorization, /SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date/);
        assert.equal(response.status, authenticatedStatus(api));
      });
      it('rejects GET, PUT and DELETE with 405 and Allow: POST', async () => {
        for (const method of ['GET', 'PUT', 'DELETE']) {
          const response = await fixture.client.post(api.suffix, undefined, { method, unsigned: true });
          assert.equal(response.status, 405, `${method}: ${response.text}`);
          assert.equal(response.headers['allow'], 'POST');
        }
      });
      it('rejects an unknown URI prefix, even with valid credentials: 404 InvalidUriPathException', async () => {
        expectXksError(await fixture.client.send(fixture.client.apiPath(api.suffix, '/keystores/nope'), api.body()), 404, 'InvalidUriPathException');
      });
      it('rejects a __proto__ key with ValidationException', async () => {
        const text = JSON.stringify(api.body()).replace(/^\{/, '{"__proto__":{"polluted":true},');
        expectXksError(await send({}, text), 400, 'ValidationException');
        assert.equal(({} as Record<string, unknown>)['polluted'], undefined, 'no prototype pollution');
      });
      it('rejects constructor.prototype with ValidationException', async () => {
        const text = JSON.stringify(api.body()).replace(/^\{/, '{"constructor":{"prototype":{"polluted":true}},');
        expectXksError(await send({}, text), 400, 'ValidationException');
      });
      it('rejects malformed JSON with ValidationException', async () => {
        expectXksError(await send({}, '{"requestMetadata": {'), 400, 'ValidationException');
      });
      it('rejects bytes that are not UTF-8 JSON with ValidationException', async () => {
        expectXksError(await send({}, Buffer.from([0xff, 0xfe, 0x00, 0x7b, 0x80])), 400, 'ValidationException');
      });
      it('rejects a non-JSON content type with ValidationException', async () => {
        expectXksError(await send({ contentType: 'text/plain' }), 400, 'ValidationException');
      });
      it('rejects an oversized body before reading it: 400 ValidationException', async () => {
        const huge = Buffer.alloc(70_000, 0x61);
        expectXksError(await send({ unsigned: true }, huge), 400, 'ValidationException');
      });
    });
  }

  describe('URI paths', () => {
    it('an unknown operation is 404 InvalidUriPathException', async () => {
      expectXksError(await fixture.client.post('keys/foo/sign', APIS[0]?.body()), 404, 'InvalidUriPathException');
    });
    it('a key id with characters outside the spec alphabet is 404 InvalidUriPathException', async () => {
      expectXksError(await fixture.client.post('keys/f%20oo/encrypt', APIS[0]?.body()), 404, 'InvalidUriPathException');
      expectXksError(await fixture.client.post(`keys/${'k'.repeat(129)}/encrypt`, APIS[0]?.body()), 404, 'InvalidUriPathException');
    });
    it('a path outside the API is 404 InvalidUriPathException', async () => {
      expectXksError(await fixture.client.send('/admin', {}, { unsigned: true }), 404, 'InvalidUriPathException');
      expectXksError(await fixture.client.send('/keystores/dev/kms/xks/v2/health', {}), 404, 'InvalidUriPathException');
    });
    it("a key of another key store is not found through this store's prefix", async () => {
      expectXksError(await fixture.client.post('keys/other_key/metadata', { requestMetadata: requestMetadata('DescribeKey') }), 404, 'KeyNotFoundException');
    });
    it('the other key store serves its own key with its own credential and region', async () => {
      const response = await fixture.client.send(fixture.client.apiPath('keys/other_key/metadata', '/keystores/other'), { requestMetadata: requestMetadata('DescribeKey') }, {
        credential: otherStoreCredential,
        region: 'eu-west-1',
      });
      assert.equal(response.status, 200, response.text);
    });
    it("a key store's region allow-list rejects other SigV4 regions: 401", async () => {
      const response = await fixture.client.send(fixture.client.apiPath('keys/other_key/metadata', '/keystores/other'), { requestMetadata: requestMetadata('DescribeKey') }, {
        credential: otherStoreCredential,
        region: 'us-east-1',
      });
      expectXksError(response, 401, 'AuthenticationFailedException');
    });
  });

  it('answers a malformed HTTP request with a JSON ValidationException and closes', async () => {
    const port = fixture.proxy?.port ?? 0;
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: fixture.ca }, () => {
        socket.write('POST /keystores/dev/kms/xks/v1/health HTTP/1.1\r\nHost: localhost\r\nContent-Length: nope\r\n\r\n');
      });
      let data = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (data += chunk));
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
      socket.setTimeout(3000, () => reject(new Error('no reply')));
    });
    assert.match(reply, /^HTTP\/1\.1 400 /);
    assert.match(reply, /"errorName":"ValidationException"/);
  });

  it('the proxy is still healthy after the whole hostile suite', async () => {
    const response = await fixture.client.health();
    assert.equal(response.status, 200);
  });
});
