import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { matchXksPath } from '../../../src/contract/aws-xks/router.js';

describe('matchXksPath: key operations', () => {
  it('recognises <prefix>/kms/xks/v1/keys/<id>/encrypt', () => {
    assert.deepEqual(matchXksPath('/p/kms/xks/v1/keys/foo/encrypt'), { uriPrefix: '/p', api: 'Encrypt', externalKeyId: 'foo' });
  });

  it('recognises decrypt and metadata', () => {
    assert.deepEqual(matchXksPath('/p/kms/xks/v1/keys/foo/decrypt'), { uriPrefix: '/p', api: 'Decrypt', externalKeyId: 'foo' });
    assert.deepEqual(matchXksPath('/p/kms/xks/v1/keys/foo/metadata'), { uriPrefix: '/p', api: 'GetKeyMetadata', externalKeyId: 'foo' });
  });

  it('keeps a multi-segment prefix whole', () => {
    assert.deepEqual(matchXksPath('/key-stores/sales/eu_1/kms/xks/v1/keys/key-1/encrypt'), {
      uriPrefix: '/key-stores/sales/eu_1',
      api: 'Encrypt',
      externalKeyId: 'key-1',
    });
  });

  it('accepts an empty prefix', () => {
    assert.deepEqual(matchXksPath('/kms/xks/v1/keys/k/decrypt'), { uriPrefix: '', api: 'Decrypt', externalKeyId: 'k' });
  });

  it('accepts key ids with letters, digits, "-", "." and "_", up to 128 characters', () => {
    const longest = 'a'.repeat(128);
    assert.deepEqual(matchXksPath(`/p/kms/xks/v1/keys/${longest}/encrypt`), { uriPrefix: '/p', api: 'Encrypt', externalKeyId: longest });
    assert.deepEqual(matchXksPath('/p/kms/xks/v1/keys/Key_1.v-2/encrypt'), { uriPrefix: '/p', api: 'Encrypt', externalKeyId: 'Key_1.v-2' });
  });
});

describe('matchXksPath: health', () => {
  it('recognises /kms/xks/v1/health without a prefix', () => {
    assert.deepEqual(matchXksPath('/kms/xks/v1/health'), { uriPrefix: '', api: 'GetHealthStatus', externalKeyId: undefined });
  });

  it('recognises <prefix>/kms/xks/v1/health', () => {
    assert.deepEqual(matchXksPath('/a/b/kms/xks/v1/health'), { uriPrefix: '/a/b', api: 'GetHealthStatus', externalKeyId: undefined });
  });
});

describe('matchXksPath: invalid XKS paths', () => {
  it('marks an unknown operation suffix invalid, keeping the prefix', () => {
    assert.deepEqual(matchXksPath('/p/kms/xks/v1/keys/foo/sign'), { uriPrefix: '/p', invalid: true });
    assert.deepEqual(matchXksPath('/p/kms/xks/v1/keys/foo/Encrypt'), { uriPrefix: '/p', invalid: true });
    assert.deepEqual(matchXksPath('/p/kms/xks/v1/keys/foo/'), { uriPrefix: '/p', invalid: true });
  });

  it('marks key ids with bad characters invalid', () => {
    for (const id of ['%2e', '%2E%2E', 'a!b', 'a%20b', 'clé', 'a+b', 'a:b', 'a~b']) {
      assert.deepEqual(matchXksPath(`/p/kms/xks/v1/keys/${id}/encrypt`), { uriPrefix: '/p', invalid: true }, id);
    }
  });

  it('marks a 129-character key id invalid', () => {
    assert.deepEqual(matchXksPath(`/p/kms/xks/v1/keys/${'a'.repeat(129)}/encrypt`), { uriPrefix: '/p', invalid: true });
  });

  it('marks an empty key id invalid', () => {
    assert.deepEqual(matchXksPath('/p/kms/xks/v1/keys//encrypt'), { uriPrefix: '/p', invalid: true });
  });

  it('marks a trailing slash invalid', () => {
    assert.equal((matchXksPath('/p/kms/xks/v1/keys/foo/encrypt/') as { invalid?: boolean } | undefined)?.invalid, true);
    assert.equal((matchXksPath('/kms/xks/v1/health/') as { invalid?: boolean } | undefined)?.invalid, true);
  });

  it('marks extra segments, unknown APIs and the bare API root invalid', () => {
    for (const path of ['/p/kms/xks/v1/keys/a/b/encrypt', '/p/kms/xks/v1/keys/foo', '/p/kms/xks/v1/status', '/kms/xks/v1', '/kms/xks/v1/', '/p/kms/xks/v1/keys/foo/encrypt/extra']) {
      const route = matchXksPath(path) as { invalid?: boolean } | undefined;
      assert.equal(route?.invalid, true, path);
      assert.ok(!('api' in (route ?? {})), path);
    }
  });

  // Regression: the operation table was once an object literal, so these names found prototype functions.
  it('marks Object.prototype member names as unknown operations', () => {
    for (const suffix of ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__proto__']) {
      assert.deepEqual(matchXksPath(`/p/kms/xks/v1/keys/foo/${suffix}`), { uriPrefix: '/p', invalid: true }, suffix);
    }
  });

  it('does not accept a different API version', () => {
    assert.equal(matchXksPath('/kms/xks/v2/health'), undefined);
  });
});

describe('matchXksPath: other paths', () => {
  it('returns undefined for paths that do not mention /kms/xks/v1', () => {
    for (const path of ['/ping', '/ready', '/', '', '/metrics', '/p/keys/foo/encrypt', '/kms/xks/health']) assert.equal(matchXksPath(path), undefined, path);
  });
});
