import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { decodedBase64Length, fromBase64, isCanonicalBase64, toBase64 } from '../../../src/lib/base64.js';

describe('isCanonicalBase64', () => {
  it('accepts standard Base64 with no, one and two padding characters', () => {
    for (const text of ['QUJD', 'QUI=', 'QQ==', 'SGVsbG8gV29ybGQh', 'vBxN2ncH1oEkR8WVXpmyYQ==', 'a+b/', 'AAAA////++++']) {
      assert.equal(isCanonicalBase64(text), true, text);
    }
  });

  it('accepts the empty string', () => {
    assert.equal(isCanonicalBase64(''), true);
  });

  it('accepts every encoding Node produces', () => {
    for (let length = 0; length <= 64; length++) {
      const text = randomBytes(length).toString('base64');
      assert.equal(isCanonicalBase64(text), true, text);
    }
  });

  it('rejects lengths that are not a multiple of four', () => {
    for (const text of ['Q', 'QQ', 'QQ=', 'QUJ', 'QUJDR', 'QUJDRA', 'QUJDRA=']) assert.equal(isCanonicalBase64(text), false, text);
  });

  it("rejects '=' anywhere but the end", () => {
    for (const text of ['=AAA', 'A=AA', 'QQ==QQ==', 'QU=D', '=QUJ']) assert.equal(isCanonicalBase64(text), false, text);
  });

  it("rejects three or four '=' characters", () => {
    assert.equal(isCanonicalBase64('Q==='), false);
    assert.equal(isCanonicalBase64('===='), false);
    assert.equal(isCanonicalBase64('QUJDQ==='), false);
  });

  it('rejects non-zero padding bits (non-canonical encodings of the same bytes)', () => {
    for (const text of ['QR==', 'QUJ=', 'QUK=', 'AB==']) assert.equal(isCanonicalBase64(text), false, text);
    for (const text of ['QQ==', 'QUI=', 'AA==']) assert.equal(isCanonicalBase64(text), true, text);
  });

  it("rejects Base64url characters '-' and '_'", () => {
    assert.equal(isCanonicalBase64('ab-d'), false);
    assert.equal(isCanonicalBase64('ab_d'), false);
    assert.equal(isCanonicalBase64('-_-_'), false);
  });

  it('rejects whitespace anywhere', () => {
    for (const text of [' QUJ', 'QUJ ', 'QU\nJ', 'QUJD\n', 'QU\tJ', 'QUJD\r\n', 'QUI =']) assert.equal(isCanonicalBase64(text), false, JSON.stringify(text));
  });

  it('rejects other characters, including non-ASCII', () => {
    for (const text of ['@@@@', 'QUJ.', 'QUJ!', 'QUJé', 'QUJ\u0000', 'ＱＵＪＤ']) assert.equal(isCanonicalBase64(text), false, JSON.stringify(text));
  });
});

describe('decodedBase64Length', () => {
  it('equals the decoded byte count for every length 0..100, on random data', () => {
    for (let length = 0; length <= 100; length++) {
      for (let round = 0; round < 5; round++) {
        const text = randomBytes(length).toString('base64');
        assert.equal(decodedBase64Length(text), Buffer.from(text, 'base64').length, `length ${length}: ${text}`);
        assert.equal(decodedBase64Length(text), length);
      }
    }
  });

  it('is 0 for the empty string and handles each padding case', () => {
    assert.equal(decodedBase64Length(''), 0);
    assert.equal(decodedBase64Length('QUJD'), 3);
    assert.equal(decodedBase64Length('QUI='), 2);
    assert.equal(decodedBase64Length('QQ=='), 1);
  });
});

describe('fromBase64 / toBase64', () => {
  it('round-trip bytes, including a subarray view with an offset', () => {
    const bytes = randomBytes(50);
    assert.deepEqual(fromBase64(toBase64(bytes)), bytes);
    const view = bytes.subarray(7, 30);
    assert.equal(toBase64(view), Buffer.from(view).toString('base64'));
    const typed = new Uint8Array(bytes.buffer, bytes.byteOffset + 3, 10);
    assert.equal(toBase64(typed), Buffer.from(typed).toString('base64'));
  });
});
