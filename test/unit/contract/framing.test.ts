import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  MAX_AAD_BYTES,
  MAX_CIPHERTEXT_METADATA_BYTES,
  METADATA_FORMAT_V1,
  buildHsmAad,
  ciphertextDataIntegrityValue,
  decodeCiphertextMetadata,
  encodeCiphertextMetadata,
} from '../../../src/contract/aws-xks/framing.js';
import { ProxyError } from '../../../src/errors/proxy-error.js';

const b64 = (text: string): Buffer => Buffer.from(text, 'base64');
const utf8 = (text: string): Buffer => Buffer.from(text, 'utf8');
const sha256 = (...parts: Buffer[]): Buffer => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
};

function isInvalidCiphertext(error: unknown): boolean {
  assert.ok(error instanceof ProxyError, `expected a ProxyError, got ${String(error)}`);
  assert.equal(error.code, 'INVALID_CIPHERTEXT');
  assert.equal(error.retryable, false);
  return true;
}

describe('buildHsmAad', () => {
  it('lays out 2-byte big-endian AAD length || AAD || 1-byte metadata length || metadata', () => {
    const aad = utf8('abc');
    const metadata = Buffer.from([0x01, 0x00, 0x07]);
    assert.deepEqual(buildHsmAad(aad, metadata), Buffer.from([0x00, 0x03, 0x61, 0x62, 0x63, 0x03, 0x01, 0x00, 0x07]));
  });

  it('writes the AAD length big-endian', () => {
    const aad = Buffer.alloc(0x012c, 0xaa); // 300 bytes
    const out = buildHsmAad(aad, undefined);
    assert.equal(out.length, 2 + 300 + 1);
    assert.equal(out[0], 0x01);
    assert.equal(out[1], 0x2c);
    assert.deepEqual(out.subarray(2, 302), aad);
    assert.equal(out[302], 0);
  });

  it('writes zero lengths when AAD and metadata are absent', () => {
    assert.deepEqual(buildHsmAad(undefined, undefined), Buffer.from([0x00, 0x00, 0x00]));
    assert.deepEqual(buildHsmAad(utf8('xy'), undefined), Buffer.from([0x00, 0x02, 0x78, 0x79, 0x00]));
    assert.deepEqual(buildHsmAad(undefined, Buffer.from([0x01, 0x00, 0x01])), Buffer.from([0x00, 0x00, 0x03, 0x01, 0x00, 0x01]));
  });

  it('binds the role of each byte string: metadata passed as AAD differs from AAD absent plus metadata', () => {
    const metadata = encodeCiphertextMetadata(1);
    const asAad = buildHsmAad(metadata, undefined);
    const asMetadata = buildHsmAad(undefined, metadata);
    assert.notDeepEqual(asAad, asMetadata);
    assert.equal(asAad.length, asMetadata.length, 'same bytes in, same total length: only the framing tells them apart');
  });

  it('does not let bytes move between AAD and metadata', () => {
    const aad = utf8('project=nile');
    const metadata = encodeCiphertextMetadata(2);
    const joined = Buffer.concat([aad, metadata]);
    const reference = buildHsmAad(aad, metadata);
    assert.notDeepEqual(buildHsmAad(joined, undefined), reference);
    assert.notDeepEqual(buildHsmAad(aad.subarray(0, 4), Buffer.concat([aad.subarray(4), metadata])), reference);
  });

  it('accepts the largest AAD and metadata and rejects anything larger', () => {
    const out = buildHsmAad(Buffer.alloc(MAX_AAD_BYTES, 1), Buffer.alloc(MAX_CIPHERTEXT_METADATA_BYTES, 2));
    assert.equal(out.readUInt16BE(0), 0xffff);
    assert.equal(out[2 + MAX_AAD_BYTES], MAX_CIPHERTEXT_METADATA_BYTES);
    assert.throws(() => buildHsmAad(Buffer.alloc(MAX_AAD_BYTES + 1), undefined), RangeError);
    assert.throws(() => buildHsmAad(undefined, Buffer.alloc(MAX_CIPHERTEXT_METADATA_BYTES + 1)), RangeError);
  });
});

describe('encodeCiphertextMetadata / decodeCiphertextMetadata', () => {
  it('encodes format 0x01 followed by the key version as uint16 big-endian', () => {
    assert.equal(METADATA_FORMAT_V1, 0x01);
    assert.deepEqual(encodeCiphertextMetadata(1), Buffer.from([0x01, 0x00, 0x01]));
    assert.deepEqual(encodeCiphertextMetadata(0x1234), Buffer.from([0x01, 0x12, 0x34]));
    assert.deepEqual(encodeCiphertextMetadata(0xffff), Buffer.from([0x01, 0xff, 0xff]));
  });

  it('round-trips key versions', () => {
    for (const version of [1, 2, 255, 256, 4660, 65535]) {
      assert.deepEqual(decodeCiphertextMetadata(encodeCiphertextMetadata(version)), { format: 1, keyVersion: version });
    }
  });

  it('fits in the XKS 20-byte ciphertextMetadata limit (4 Base64 characters)', () => {
    assert.equal(encodeCiphertextMetadata(7).toString('base64').length, 4);
  });

  it('refuses to encode versions outside 1..65535', () => {
    for (const version of [0, -1, 65536, 1.5, Number.NaN]) assert.throws(() => encodeCiphertextMetadata(version), RangeError, String(version));
  });

  it('treats absent metadata as key version 1, format 0', () => {
    assert.deepEqual(decodeCiphertextMetadata(undefined), { format: 0, keyVersion: 1 });
  });

  it('rejects metadata of the wrong length with INVALID_CIPHERTEXT', () => {
    for (const bytes of [[], [0x01], [0x01, 0x00], [0x01, 0x00, 0x01, 0x00], Array.from({ length: 20 }, () => 1)]) {
      assert.throws(() => decodeCiphertextMetadata(Buffer.from(bytes)), isInvalidCiphertext, `${bytes.length} bytes`);
    }
  });

  it('rejects an unknown format byte with INVALID_CIPHERTEXT', () => {
    for (const format of [0x00, 0x02, 0x7f, 0xff]) {
      assert.throws(() => decodeCiphertextMetadata(Buffer.from([format, 0x00, 0x01])), isInvalidCiphertext, `format ${format}`);
    }
  });

  it('rejects key version 0 with INVALID_CIPHERTEXT', () => {
    assert.throws(() => decodeCiphertextMetadata(Buffer.from([0x01, 0x00, 0x00])), isInvalidCiphertext);
  });

  it('gives a fixed public message that does not echo the metadata', () => {
    try {
      decodeCiphertextMetadata(utf8('key_version=1'));
      assert.fail('expected a throw');
    } catch (error) {
      assert.ok(error instanceof ProxyError);
      assert.ok(!error.publicMessage.includes('key_version'));
    }
  });
});

describe('ciphertextDataIntegrityValue', () => {
  // XKS Proxy API spec, Appendix C.
  const aad = utf8('project=nile,department=marketing');
  const metadata = utf8('key_version=1');
  const iv = b64('HMrlRw85cAJUd5Ax');
  const ciphertext = b64('ghxkK1txeDNn3q8Y');
  const tag = b64('vBxN2ncH1oEkR8WVXpmyYQ==');

  it("matches the spec's Appendix C example", () => {
    const cdiv = ciphertextDataIntegrityValue({ aad, metadata, iv, ciphertext, tag });
    assert.equal(cdiv.length, 32);
    assert.equal(cdiv.toString('base64'), 'qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc=');
  });

  it('hashes AAD || metadata || IV || ciphertext || tag', () => {
    assert.deepEqual(ciphertextDataIntegrityValue({ aad, metadata, iv, ciphertext, tag }), sha256(aad, metadata, iv, ciphertext, tag));
  });

  it('hashes the remaining fields only when AAD is absent', () => {
    const cdiv = ciphertextDataIntegrityValue({ aad: undefined, metadata, iv, ciphertext, tag });
    assert.deepEqual(cdiv, sha256(metadata, iv, ciphertext, tag));
    assert.notEqual(cdiv.toString('base64'), 'qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc=');
  });

  it('hashes the remaining fields only when metadata is absent', () => {
    assert.deepEqual(ciphertextDataIntegrityValue({ aad, metadata: undefined, iv, ciphertext, tag }), sha256(aad, iv, ciphertext, tag));
  });

  it('hashes IV || ciphertext || tag when both AAD and metadata are absent', () => {
    assert.deepEqual(ciphertextDataIntegrityValue({ aad: undefined, metadata: undefined, iv, ciphertext, tag }), sha256(iv, ciphertext, tag));
  });

  it('changes when any single byte changes', () => {
    const reference = ciphertextDataIntegrityValue({ aad, metadata, iv, ciphertext, tag });
    const flip = (buffer: Buffer): Buffer => {
      const copy = Buffer.from(buffer);
      copy[0] = (copy[0] ?? 0) ^ 1;
      return copy;
    };
    assert.notDeepEqual(ciphertextDataIntegrityValue({ aad: flip(aad), metadata, iv, ciphertext, tag }), reference);
    assert.notDeepEqual(ciphertextDataIntegrityValue({ aad, metadata: flip(metadata), iv, ciphertext, tag }), reference);
    assert.notDeepEqual(ciphertextDataIntegrityValue({ aad, metadata, iv: flip(iv), ciphertext, tag }), reference);
    assert.notDeepEqual(ciphertextDataIntegrityValue({ aad, metadata, iv, ciphertext: flip(ciphertext), tag }), reference);
    assert.notDeepEqual(ciphertextDataIntegrityValue({ aad, metadata, iv, ciphertext, tag: flip(tag) }), reference);
  });
});
