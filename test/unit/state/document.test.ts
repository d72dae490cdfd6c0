import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { emptyState, keyRef, parseState, serializeState, StateDocumentSchema, type StateDocument } from '../../../src/state/document.js';

const AT = '2030-01-01T00:00:00.000Z';

function sample(): StateDocument {
  return {
    format: 1,
    version: 7,
    updatedAt: AT,
    updatedBy: 'mtls:alice',
    keys: {
      [keyRef('prod', 'key-1')]: {
        state: 'active',
        changedAt: AT,
        changedBy: 'mtls:alice',
        currentVersion: 2,
        versions: { '1': { state: 'decrypt-only', createdAt: AT }, '2': { state: 'active', createdAt: AT } },
        expireAt: '2031-01-01T00:00:00.000Z',
      },
    },
    killedStores: { dev: { at: AT, by: 'mtls:op', reason: 'drill' } },
    approvals: [],
    policy: { text: 'version: 1\n', version: 'abc', changedAt: AT, changedBy: 'mtls:alice' },
  };
}

describe('state document', () => {
  it('starts empty at version 0', () => {
    const empty = emptyState();
    assert.equal(empty.version, 0);
    assert.deepEqual(empty.keys, {});
    assert.deepEqual(empty.killedStores, {});
    assert.deepEqual(empty.approvals, []);
    assert.equal(StateDocumentSchema.safeParse(empty).success, true);
    assert.notEqual(emptyState().keys, empty.keys, 'every call returns a fresh document');
  });

  it('names keys "<keyStore>/<externalKeyId>"', () => {
    assert.equal(keyRef('prod', 'key-1'), 'prod/key-1');
  });

  it('round-trips through serializeState and parseState', () => {
    const document = sample();
    const bytes = serializeState(document);
    assert.deepEqual(JSON.parse(bytes.toString('utf8')), document);
    assert.deepEqual(parseState(bytes), document);
  });

  it('reads anything that is not a valid state document as undefined', () => {
    const valid = sample();
    const invalid: unknown[] = [
      { ...valid, format: 2 },
      { ...valid, version: -1 },
      { ...valid, version: 1.5 },
      { ...valid, extra: true },
      { ...valid, updatedAt: 'yesterday' },
      { ...valid, keys: { 'prod/key-1': { ...valid.keys['prod/key-1'], state: 'revoked' } } },
      { ...valid, keys: { 'prod/key-1': { ...valid.keys['prod/key-1'], versions: { '01': { state: 'active', createdAt: AT } } } } },
      { ...valid, keys: { 'prod/key-1': { ...valid.keys['prod/key-1'], currentVersion: 0 } } },
      null,
      [],
    ];
    for (const [index, value] of invalid.entries()) assert.equal(parseState(Buffer.from(JSON.stringify(value))), undefined, `case ${index}`);
    assert.equal(parseState(Buffer.from('{"format":1,')), undefined, 'truncated JSON');
    assert.equal(parseState(Buffer.from([0xff, 0xfe, 0x00])), undefined, 'binary garbage');
  });
});
