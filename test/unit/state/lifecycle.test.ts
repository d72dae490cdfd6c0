import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { emptyState, KEY_STATES, keyRef, type KeyRecord, type KeyState, type StateDocument, type VersionState } from '../../../src/state/document.js';
import {
  effectiveKey,
  initialRecord,
  keyStatus,
  LifecycleError,
  mayDecrypt,
  mayEncrypt,
  TRANSITIONS,
  transitionMode,
  type EffectiveKey,
  type TransitionMode,
} from '../../../src/state/lifecycle.js';

// --- fixtures ------------------------------------------------------------------

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
const NOW = Date.parse('2030-06-01T08:00:00.000Z');
const iso = (ms: number): string => new Date(ms).toISOString();
const STORE = 'prod';
const KEY_ID = 'key-1';

function record(state: KeyState, extra: Partial<KeyRecord> = {}): KeyRecord {
  return {
    state,
    changedAt: iso(NOW - DAY),
    changedBy: 'setup',
    currentVersion: 1,
    versions: { '1': { state: 'active', createdAt: iso(NOW - DAY) } },
    ...extra,
  };
}

function documentWith(key: KeyRecord | undefined, killed = false): StateDocument {
  return {
    ...emptyState(),
    keys: key === undefined ? {} : { [keyRef(STORE, KEY_ID)]: key },
    killedStores: killed ? { [STORE]: { at: iso(NOW - MINUTE), by: 'op' } } : {},
  };
}

function effective(key: KeyRecord | undefined, now = NOW, killed = false): EffectiveKey {
  return effectiveKey(documentWith(key, killed), STORE, KEY_ID, now);
}

/** The transition table of docs/lifecycle.md, written out independently of src/. */
const DOCUMENTED: Record<KeyState, Partial<Record<KeyState, TransitionMode>>> = {
  'pre-activation': { active: 'direct', suspended: 'direct', destroyed: 'approval' },
  active: { suspended: 'direct', deactivated: 'direct', compromised: 'direct' },
  suspended: { active: 'direct', deactivated: 'direct', compromised: 'direct', destroyed: 'approval' },
  deactivated: { compromised: 'direct', destroyed: 'approval' },
  compromised: { active: 'approval', destroyed: 'approval' },
  destroyed: {},
};

function forbidden(from: KeyState, to: KeyState, killSwitched = false): LifecycleError {
  try {
    transitionMode(from, to, killSwitched);
  } catch (error) {
    assert.ok(error instanceof LifecycleError, `expected a LifecycleError, got ${String(error)}`);
    assert.equal(error.code, 'forbidden');
    assert.equal(error.message, `a ${from} key cannot become ${to}`);
    return error;
  }
  assert.fail(`${from} -> ${to} should be forbidden`);
}

// --- tests ---------------------------------------------------------------------

describe('transitionMode: the transition table', () => {
  it('matches the documented table for every pair of states', () => {
    for (const from of KEY_STATES) {
      for (const to of KEY_STATES) {
        const expected = DOCUMENTED[from][to];
        if (expected === undefined) forbidden(from, to);
        else assert.equal(transitionMode(from, to, false), expected, `${from} -> ${to}`);
      }
    }
    assert.deepEqual(TRANSITIONS, DOCUMENTED);
  });

  it('forbids active -> destroyed: a key is suspended or deactivated first', () => {
    forbidden('active', 'destroyed');
    forbidden('active', 'destroyed', true);
  });

  it('makes destroyed terminal', () => {
    for (const to of KEY_STATES) forbidden('destroyed', to);
  });

  it('never brings a deactivated key back', () => {
    for (const to of ['active', 'suspended', 'pre-activation'] as const) forbidden('deactivated', to);
  });

  it('forbids staying in the same state (a no-op is not a transition)', () => {
    for (const state of KEY_STATES) forbidden(state, state);
  });

  it('requires dual control to undo a kill switch, and only for suspended -> active', () => {
    assert.equal(transitionMode('suspended', 'active', false), 'direct');
    assert.equal(transitionMode('suspended', 'active', true), 'approval');
    assert.equal(transitionMode('suspended', 'deactivated', true), 'direct', 'moving a stopped key on stays direct');
    assert.equal(transitionMode('suspended', 'compromised', true), 'direct');
    assert.equal(transitionMode('suspended', 'destroyed', true), 'approval');
    forbidden('active', 'destroyed', true);
  });
});

describe('effectiveKey: cryptoperiods applied to the stored state', () => {
  it('treats a key without a record as active at version 1', () => {
    const key = effective(undefined);
    assert.equal(key.state, 'active');
    assert.equal(key.currentVersion, 1);
    assert.equal(key.versionState(1), 'active');
    assert.equal(key.versionState(2), undefined);
    assert.equal(key.record, undefined);
    assert.equal(key.storeKilled, false);
    assert.equal(key.compromisedDecryptAllowed, false);
  });

  it('is pre-activation before activateAt and active from activateAt on', () => {
    const activateAt = iso(NOW + MINUTE);
    for (const stored of ['pre-activation', 'active'] as const) {
      assert.equal(effective(record(stored, { activateAt }), NOW).state, 'pre-activation', stored);
      assert.equal(effective(record(stored, { activateAt }), NOW + MINUTE - 1).state, 'pre-activation', stored);
      assert.equal(effective(record(stored, { activateAt }), NOW + MINUTE).state, 'active', stored);
      assert.equal(effective(record(stored, { activateAt }), NOW + DAY).state, 'active', stored);
    }
  });

  it('keeps a pre-activation key without activateAt in pre-activation', () => {
    assert.equal(effective(record('pre-activation'), NOW + 1000 * DAY).state, 'pre-activation');
  });

  it('deactivates an active key from expireAt on (decrypt-only)', () => {
    const expireAt = iso(NOW + MINUTE);
    assert.equal(effective(record('active', { expireAt }), NOW + MINUTE - 1).state, 'active');
    const expired = effective(record('active', { expireAt }), NOW + MINUTE);
    assert.equal(expired.state, 'deactivated');
    assert.equal(mayEncrypt(expired).allowed, false);
    assert.deepEqual(mayDecrypt(expired, 1), { allowed: true, alert: false });
    assert.equal(expired.record?.state, 'active', 'the stored record is untouched');
  });

  it('applies both ends of the cryptoperiod in order', () => {
    const period = { activateAt: iso(NOW), expireAt: iso(NOW + DAY) };
    for (const stored of ['pre-activation', 'active'] as const) {
      assert.equal(effective(record(stored, period), NOW - 1).state, 'pre-activation', stored);
      assert.equal(effective(record(stored, period), NOW + DAY / 2).state, 'active', stored);
      assert.equal(effective(record(stored, period), NOW + DAY).state, 'deactivated', stored);
    }
  });

  it('does not let a cryptoperiod revive or override a suspended, deactivated, compromised or destroyed key', () => {
    const period = { activateAt: iso(NOW - DAY), expireAt: iso(NOW + DAY) };
    for (const stored of ['suspended', 'deactivated', 'compromised', 'destroyed'] as const) {
      assert.equal(effective(record(stored, period)).state, stored);
      assert.equal(effective(record(stored, { expireAt: iso(NOW - DAY) })).state, stored);
      assert.equal(effective(record(stored, { activateAt: iso(NOW + DAY) })).state, stored);
    }
  });

  it('reports the kill switch of the key store and the compromised-decrypt override window', () => {
    assert.equal(effective(record('active'), NOW, true).storeKilled, true);
    const until = iso(NOW + MINUTE);
    assert.equal(effective(record('compromised', { compromisedDecryptUntil: until }), NOW + MINUTE - 1).compromisedDecryptAllowed, true);
    assert.equal(effective(record('compromised', { compromisedDecryptUntil: until }), NOW + MINUTE).compromisedDecryptAllowed, false);
  });

  it('only counts a kill switch of its own key store', () => {
    const document: StateDocument = { ...documentWith(record('active')), killedStores: { other: { at: iso(NOW), by: 'op' } } };
    assert.equal(effectiveKey(document, STORE, KEY_ID, NOW).storeKilled, false);
    assert.equal(effectiveKey(document, 'other', KEY_ID, NOW).storeKilled, true);
  });
});

describe('mayEncrypt / mayDecrypt / keyStatus: what each state allows', () => {
  /** docs/lifecycle.md, "States". */
  const TABLE: Record<KeyState, { encrypt: boolean; decrypt: boolean }> = {
    'pre-activation': { encrypt: false, decrypt: false },
    active: { encrypt: true, decrypt: true },
    suspended: { encrypt: false, decrypt: false },
    deactivated: { encrypt: false, decrypt: true },
    compromised: { encrypt: false, decrypt: false },
    destroyed: { encrypt: false, decrypt: false },
  };

  it('allows encrypt only when active and decrypt only when active or deactivated', () => {
    for (const state of KEY_STATES) {
      const key = effective(record(state));
      const encrypt = mayEncrypt(key);
      const decrypt = mayDecrypt(key, 1);
      assert.equal(encrypt.allowed, TABLE[state].encrypt, `${state} encrypt`);
      assert.equal(decrypt.allowed, TABLE[state].decrypt, `${state} decrypt`);
      assert.equal(keyStatus(key), TABLE[state].encrypt ? 'ENABLED' : 'DISABLED', `${state} status`);
      if (!encrypt.allowed) assert.equal(encrypt.reason, `the key is ${state}`);
      if (encrypt.allowed) assert.equal(encrypt.version, 1);
    }
  });

  it('lets a compromised key decrypt only under an override, and flags every such use', () => {
    const refused = mayDecrypt(effective(record('compromised')), 1);
    assert.deepEqual(refused, { allowed: false, reason: 'the key is compromised; decrypt needs an approved override' });
    const override = effective(record('compromised', { compromisedDecryptUntil: iso(NOW + MINUTE) }));
    assert.deepEqual(mayDecrypt(override, 1), { allowed: true, alert: true });
    assert.equal(mayEncrypt(override).allowed, false, 'the override never allows encrypt');
    const lapsed = effective(record('compromised', { compromisedDecryptUntil: iso(NOW - 1) }));
    assert.equal(mayDecrypt(lapsed, 1).allowed, false);
  });

  it('encrypts with the current version only while that version is active', () => {
    const rotated = record('active', {
      currentVersion: 3,
      versions: {
        '1': { state: 'retired', createdAt: iso(NOW - 3 * DAY) },
        '2': { state: 'decrypt-only', createdAt: iso(NOW - 2 * DAY) },
        '3': { state: 'active', createdAt: iso(NOW - DAY) },
      },
    });
    assert.deepEqual(mayEncrypt(effective(rotated)), { allowed: true, version: 3 });
    const broken = record('active', { currentVersion: 2, versions: { '1': { state: 'active', createdAt: iso(NOW) }, '2': { state: 'decrypt-only', createdAt: iso(NOW) } } });
    assert.deepEqual(mayEncrypt(effective(broken)), { allowed: false, reason: 'key version 2 is not active' });
    assert.equal(keyStatus(effective(broken)), 'DISABLED');
  });

  it('decrypts with active and decrypt-only versions, never with retired, destroyed or unknown ones', () => {
    const states: Record<string, VersionState> = { '1': 'retired', '2': 'decrypt-only', '3': 'active', '4': 'destroyed' };
    const versions = Object.fromEntries(Object.entries(states).map(([version, state]) => [version, { state, createdAt: iso(NOW) }]));
    for (const keyState of ['active', 'deactivated'] as const) {
      const key = effective(record(keyState, { currentVersion: 3, versions }));
      assert.deepEqual(mayDecrypt(key, 1), { allowed: false, reason: 'key version 1 is retired' });
      assert.deepEqual(mayDecrypt(key, 2), { allowed: true, alert: false });
      assert.deepEqual(mayDecrypt(key, 3), { allowed: true, alert: false });
      assert.deepEqual(mayDecrypt(key, 4), { allowed: false, reason: 'key version 4 is destroyed' });
      assert.deepEqual(mayDecrypt(key, 5), { allowed: false, reason: 'key version 5 does not exist' });
    }
  });

  it('refuses everything while the key store is stopped, even for an active key', () => {
    const key = effective(record('active'), NOW, true);
    assert.deepEqual(mayEncrypt(key), { allowed: false, reason: 'the key store is stopped by its kill switch' });
    assert.deepEqual(mayDecrypt(key, 1), { allowed: false, reason: 'the key store is stopped by its kill switch' });
    assert.equal(keyStatus(key), 'DISABLED');
    const override = effective(record('compromised', { compromisedDecryptUntil: iso(NOW + MINUTE) }), NOW, true);
    assert.equal(mayDecrypt(override, 1).allowed, false, 'the kill switch beats a compromised-decrypt override');
  });
});

describe('initialRecord', () => {
  it('describes a key with no record yet: active, version 1 active, created now', () => {
    const at = iso(NOW);
    assert.deepEqual(initialRecord(at, 'mtls:alice'), {
      state: 'active',
      changedAt: at,
      changedBy: 'mtls:alice',
      currentVersion: 1,
      versions: { '1': { state: 'active', createdAt: at } },
    });
    // It means the same thing as having no record at all.
    const withRecord = effective(initialRecord(at, 'mtls:alice'));
    const without = effective(undefined);
    assert.equal(withRecord.state, without.state);
    assert.equal(withRecord.currentVersion, without.currentVersion);
    assert.equal(withRecord.versionState(1), without.versionState(1));
  });
});
