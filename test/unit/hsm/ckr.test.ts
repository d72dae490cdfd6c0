import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pkcs11js from 'pkcs11js';
import { HSM_ERROR_KINDS, HsmError, isHsmError, type HsmErrorKind } from '../../../src/hsm/errors.js';
import { ckrName, ckrOf, classifyCkr, toHsmError, type Pkcs11Step } from '../../../src/hsm/pkcs11/ckr.js';

const C = pkcs11js;
const VENDOR_CODE = 0x80000123;
const ALL_STEPS: readonly Pkcs11Step[] = ['encrypt', 'decrypt', 'find', 'describe', 'session', 'init', 'random'];

describe('classifyCkr', () => {
  it('treats CKR_GENERAL_ERROR and CKR_FUNCTION_FAILED as bad data on decrypt (vendor GCM tag failures)', () => {
    assert.equal(classifyCkr(C.CKR_GENERAL_ERROR, 'decrypt'), 'data');
    assert.equal(classifyCkr(C.CKR_FUNCTION_FAILED, 'decrypt'), 'data');
  });

  it('treats CKR_GENERAL_ERROR and CKR_FUNCTION_FAILED as a device failure on encrypt and other steps', () => {
    for (const step of ALL_STEPS.filter((candidate) => candidate !== 'decrypt')) {
      assert.equal(classifyCkr(C.CKR_GENERAL_ERROR, step), 'device', step);
      assert.equal(classifyCkr(C.CKR_FUNCTION_FAILED, step), 'device', step);
    }
  });

  it('treats invalid data codes as data on encrypt and decrypt', () => {
    for (const code of [C.CKR_ENCRYPTED_DATA_INVALID, C.CKR_ENCRYPTED_DATA_LEN_RANGE, C.CKR_DATA_INVALID, C.CKR_DATA_LEN_RANGE]) {
      assert.equal(classifyCkr(code, 'decrypt'), 'data', ckrName(code));
      assert.equal(classifyCkr(code, 'encrypt'), 'data', ckrName(code));
    }
  });

  it('treats CKR_MECHANISM_PARAM_INVALID as data on decrypt (client IV) but internal on encrypt (proxy parameters)', () => {
    assert.equal(classifyCkr(C.CKR_MECHANISM_PARAM_INVALID, 'decrypt'), 'data');
    assert.equal(classifyCkr(C.CKR_MECHANISM_PARAM_INVALID, 'encrypt'), 'internal');
  });

  it('treats invalid data codes outside encrypt/decrypt as internal (the proxy built the input)', () => {
    assert.equal(classifyCkr(C.CKR_ENCRYPTED_DATA_INVALID, 'find'), 'internal');
    assert.equal(classifyCkr(C.CKR_DATA_INVALID, 'describe'), 'internal');
  });

  it('treats key usage codes as key-usage', () => {
    assert.equal(classifyCkr(C.CKR_KEY_FUNCTION_NOT_PERMITTED, 'encrypt'), 'key-usage');
    assert.equal(classifyCkr(C.CKR_KEY_FUNCTION_NOT_PERMITTED, 'decrypt'), 'key-usage');
    assert.equal(classifyCkr(C.CKR_KEY_TYPE_INCONSISTENT, 'encrypt'), 'key-usage');
    assert.equal(classifyCkr(C.CKR_KEY_SIZE_RANGE, 'encrypt'), 'key-usage');
  });

  it('treats broken-session codes as session', () => {
    for (const code of [C.CKR_SESSION_HANDLE_INVALID, C.CKR_SESSION_CLOSED, C.CKR_USER_NOT_LOGGED_IN, C.CKR_OPERATION_ACTIVE, C.CKR_OPERATION_NOT_INITIALIZED]) {
      assert.equal(classifyCkr(code, 'encrypt'), 'session', ckrName(code));
      assert.equal(classifyCkr(code, 'decrypt'), 'session', ckrName(code));
    }
  });

  it('treats stale key handles as key-not-found', () => {
    assert.equal(classifyCkr(C.CKR_KEY_HANDLE_INVALID, 'encrypt'), 'key-not-found');
    assert.equal(classifyCkr(C.CKR_OBJECT_HANDLE_INVALID, 'decrypt'), 'key-not-found');
  });

  it('treats PIN problems as misconfigured', () => {
    for (const code of [C.CKR_PIN_INCORRECT, C.CKR_PIN_INVALID, C.CKR_PIN_LEN_RANGE, C.CKR_PIN_EXPIRED, C.CKR_PIN_LOCKED]) {
      assert.equal(classifyCkr(code, 'session'), 'misconfigured', ckrName(code));
    }
  });

  it('treats device errors, missing tokens and unknown vendor codes as device', () => {
    assert.equal(classifyCkr(C.CKR_DEVICE_ERROR, 'encrypt'), 'device');
    assert.equal(classifyCkr(C.CKR_DEVICE_ERROR, 'decrypt'), 'device');
    assert.equal(classifyCkr(C.CKR_DEVICE_REMOVED, 'decrypt'), 'device');
    assert.equal(classifyCkr(C.CKR_TOKEN_NOT_PRESENT, 'session'), 'device');
    assert.equal(classifyCkr(VENDOR_CODE, 'encrypt'), 'device');
    assert.equal(classifyCkr(VENDOR_CODE, 'decrypt'), 'device');
  });

  it('only ever returns a known kind', () => {
    for (const step of ALL_STEPS) {
      for (let code = 0; code < 0x200; code++) assert.ok((HSM_ERROR_KINDS as readonly string[]).includes(classifyCkr(code, step)));
    }
  });
});

describe('ckrName', () => {
  it('names standard codes from pkcs11js constants', () => {
    assert.equal(ckrName(C.CKR_DEVICE_ERROR), 'CKR_DEVICE_ERROR');
    assert.equal(ckrName(C.CKR_PIN_INCORRECT), 'CKR_PIN_INCORRECT');
    assert.equal(ckrName(0x30), 'CKR_DEVICE_ERROR');
  });

  it('gives unknown vendor codes an 8-digit hex name', () => {
    assert.equal(ckrName(VENDOR_CODE), 'CKR_0x80000123');
    assert.equal(ckrName(0x7ff), 'CKR_0x000007ff');
  });
});

describe('toHsmError', () => {
  it('classifies a real pkcs11js Pkcs11Error by its code and step', () => {
    const error = new pkcs11js.Pkcs11Error('CKR_DEVICE_ERROR', C.CKR_DEVICE_ERROR, 'C_Encrypt');
    assert.equal(ckrOf(error), C.CKR_DEVICE_ERROR);
    const hsm = toHsmError(error, 'encrypt');
    assert.ok(isHsmError(hsm));
    assert.equal(hsm.kind, 'device');
    assert.equal(hsm.ckr, C.CKR_DEVICE_ERROR);
    assert.equal(hsm.ckrName, 'CKR_DEVICE_ERROR');
    assert.equal(hsm.message, 'encrypt failed: CKR_DEVICE_ERROR');
  });

  it('reads the code from the native message format "CKR_NAME:code"', () => {
    const error = new pkcs11js.Pkcs11Error(`CKR_GENERAL_ERROR:${C.CKR_GENERAL_ERROR}`);
    assert.equal(error.code, C.CKR_GENERAL_ERROR);
    assert.equal(toHsmError(error, 'decrypt').kind, 'data');
    assert.equal(toHsmError(error, 'encrypt').kind, 'device');
  });

  it('names unknown vendor codes in hex', () => {
    const hsm = toHsmError(new pkcs11js.Pkcs11Error('vendor failure', VENDOR_CODE), 'decrypt');
    assert.equal(hsm.kind, 'device');
    assert.equal(hsm.ckrName, 'CKR_0x80000123');
    assert.equal(hsm.message, 'decrypt failed: CKR_0x80000123');
  });

  it('makes a plain Error internal, keeping its message', () => {
    const hsm = toHsmError(new Error('module not loaded'), 'find');
    assert.equal(hsm.kind, 'internal');
    assert.equal(hsm.ckr, undefined);
    assert.equal(hsm.message, 'find: module not loaded');
  });

  it('makes a non-Error throw internal', () => {
    assert.equal(toHsmError('boom', 'init').kind, 'internal');
    assert.equal(toHsmError(undefined, 'init').kind, 'internal');
  });

  it('does not trust an object that only looks like a Pkcs11Error', () => {
    const lookalike = Object.assign(new Error('CKR_ENCRYPTED_DATA_INVALID'), { code: C.CKR_ENCRYPTED_DATA_INVALID });
    assert.equal(ckrOf(lookalike), undefined);
    assert.equal(toHsmError(lookalike, 'decrypt').kind, 'internal');
  });

  it('passes an HsmError through unchanged', () => {
    const original = new HsmError('timeout', 'slow', { member: 'hsm-a' });
    assert.equal(toHsmError(original, 'encrypt'), original);
  });
});

describe('HsmError', () => {
  const retryable: Record<HsmErrorKind, boolean> = {
    data: false,
    'key-usage': false,
    'key-not-found': false,
    'key-ambiguous': false,
    session: true,
    device: true,
    timeout: true,
    unavailable: true,
    misconfigured: false,
    internal: false,
  };
  const blamesMember: Record<HsmErrorKind, boolean> = {
    data: false,
    'key-usage': false,
    'key-not-found': false,
    'key-ambiguous': false,
    session: true,
    device: true,
    timeout: true,
    unavailable: false,
    misconfigured: true,
    internal: false,
  };

  it('covers every kind in these tables', () => {
    assert.deepEqual(Object.keys(retryable).sort(), [...HSM_ERROR_KINDS].sort());
  });

  for (const kind of HSM_ERROR_KINDS) {
    it(`${kind}: retryable=${retryable[kind]}, blamesMember=${blamesMember[kind]}`, () => {
      const error = new HsmError(kind, 'x');
      assert.equal(error.retryable, retryable[kind]);
      assert.equal(error.blamesMember, blamesMember[kind]);
    });
  }

  it('withMember keeps kind, message and CK_RV and adds the member', () => {
    const original = new HsmError('device', 'encrypt failed: CKR_DEVICE_ERROR', { ckr: 0x30, ckrName: 'CKR_DEVICE_ERROR' });
    const attributed = original.withMember('hsm-b');
    assert.notEqual(attributed, original);
    assert.equal(attributed.kind, 'device');
    assert.equal(attributed.message, original.message);
    assert.equal(attributed.ckr, 0x30);
    assert.equal(attributed.ckrName, 'CKR_DEVICE_ERROR');
    assert.equal(attributed.member, 'hsm-b');
    assert.equal(original.member, undefined);
  });
});
