import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ProxyError, type ProxyErrorCode } from '../../../src/errors/proxy-error.js';
import type { KeyEntry } from '../../../src/keys/catalog.js';
import { emptyState, keyRef, type KeyRecord, type KeyState, type StateDocument } from '../../../src/state/document.js';
import { KeyLifecycle } from '../../../src/state/key-lifecycle.js';
import type { StateService } from '../../../src/state/service.js';
import { iso, MINUTE, rotatedKeyRecord } from '../../helpers/state-fixtures.js';

// --- fixtures ------------------------------------------------------------------

const NOW = Date.parse('2030-06-01T08:00:00.000Z');
const STORE = 'prod';
const KEY: KeyEntry = { id: 'key-1', label: 'hsm-label-1', enabled: true, checkValue: undefined, rotationPeriodDays: undefined };

/** KeyLifecycle only reads `current` of the state service. */
function fakeState(document: StateDocument): StateService {
  return { current: document } as unknown as StateService;
}

const record = (state: KeyState, extra: Partial<KeyRecord> = {}): KeyRecord => rotatedKeyRecord(state, NOW, extra);

function lifecycleFor(key: KeyRecord | undefined, killed = false): KeyLifecycle {
  return new KeyLifecycle(
    fakeState({
      ...emptyState(),
      keys: key === undefined ? {} : { [keyRef(STORE, KEY.id)]: key },
      killedStores: killed ? { [STORE]: { at: iso(NOW), by: 'op' } } : {},
    }),
  );
}

function proxyError(fn: () => unknown, code: ProxyErrorCode): ProxyError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ProxyError, `expected a ProxyError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return error;
  }
  assert.fail(`expected a ProxyError ${code}, but nothing was thrown`);
}

/** KeyLifecycle reads the clock itself (Date.now()); pin it. */
function at(t: TestContext, now: number): void {
  t.mock.timers.enable({ apis: ['Date'], now });
}

// --- tests ---------------------------------------------------------------------

describe('KeyLifecycle without lifecycle state (no state service)', () => {
  const lifecycle = new KeyLifecycle(undefined);

  it('encrypts with version 1 and reports the key enabled', () => {
    assert.equal(lifecycle.effective(STORE, KEY), undefined);
    assert.equal(lifecycle.encryptVersion(STORE, KEY), 1);
    assert.deepEqual(lifecycle.metadata(STORE, KEY), { version: 1, status: 'ENABLED', destroyed: false });
  });

  it('decrypts version 1 only; any other version is an invalid ciphertext', () => {
    assert.deepEqual(lifecycle.checkDecrypt(STORE, KEY, 1), { alert: false });
    for (const version of [0, 2, 65535]) proxyError(() => lifecycle.checkDecrypt(STORE, KEY, version), 'INVALID_CIPHERTEXT');
  });
});

describe('KeyLifecycle over the state document', () => {
  it('treats a key the document does not mention as active at version 1', () => {
    const lifecycle = lifecycleFor(undefined);
    assert.equal(lifecycle.encryptVersion(STORE, KEY), 1);
    assert.deepEqual(lifecycle.checkDecrypt(STORE, KEY, 1), { alert: false });
    proxyError(() => lifecycle.checkDecrypt(STORE, KEY, 2), 'INVALID_CIPHERTEXT');
    assert.deepEqual(lifecycle.metadata(STORE, KEY), { version: 1, status: 'ENABLED', destroyed: false });
  });

  it('encrypts with the current version and decrypts older decrypt-only versions', () => {
    const lifecycle = lifecycleFor(record('active'));
    assert.equal(lifecycle.encryptVersion(STORE, KEY), 2);
    assert.deepEqual(lifecycle.checkDecrypt(STORE, KEY, 1), { alert: false });
    assert.deepEqual(lifecycle.checkDecrypt(STORE, KEY, 2), { alert: false });
    assert.deepEqual(lifecycle.metadata(STORE, KEY), { version: 2, status: 'ENABLED', destroyed: false });
  });

  it('refuses encrypt and decrypt of a suspended key with INVALID_STATE, giving the reason in the detail only', () => {
    const lifecycle = lifecycleFor(record('suspended'));
    const encrypt = proxyError(() => lifecycle.encryptVersion(STORE, KEY), 'INVALID_STATE');
    assert.deepEqual(encrypt.detail, { reason: 'the key is suspended' });
    assert.ok(!encrypt.publicMessage.includes('suspended'), 'the public message does not say which state');
    proxyError(() => lifecycle.checkDecrypt(STORE, KEY, 2), 'INVALID_STATE');
    assert.deepEqual(lifecycle.metadata(STORE, KEY), { version: 2, status: 'DISABLED', destroyed: false });
  });

  it('answers INVALID_CIPHERTEXT, not INVALID_STATE, for a version that never existed, whatever the state', () => {
    for (const state of ['active', 'suspended', 'compromised', 'destroyed'] as const) {
      proxyError(() => lifecycleFor(record(state)).checkDecrypt(STORE, KEY, 3), 'INVALID_CIPHERTEXT');
    }
  });

  it('refuses a retired version with INVALID_STATE', () => {
    const lifecycle = lifecycleFor(record('active', { versions: { '1': { state: 'retired', createdAt: iso(NOW) }, '2': { state: 'active', createdAt: iso(NOW) } } }));
    const error = proxyError(() => lifecycle.checkDecrypt(STORE, KEY, 1), 'INVALID_STATE');
    assert.deepEqual(error.detail, { reason: 'key version 1 is retired' });
  });

  it('lets a deactivated key decrypt but not encrypt', () => {
    const lifecycle = lifecycleFor(record('deactivated'));
    proxyError(() => lifecycle.encryptVersion(STORE, KEY), 'INVALID_STATE');
    assert.deepEqual(lifecycle.checkDecrypt(STORE, KEY, 2), { alert: false });
    assert.equal(lifecycle.metadata(STORE, KEY).status, 'DISABLED');
  });

  it('reports a destroyed key as destroyed and refuses it', () => {
    const destroyed = record('destroyed', {
      versions: { '1': { state: 'destroyed', createdAt: iso(NOW) }, '2': { state: 'destroyed', createdAt: iso(NOW) } },
    });
    const lifecycle = lifecycleFor(destroyed);
    assert.deepEqual(lifecycle.metadata(STORE, KEY), { version: 2, status: 'DISABLED', destroyed: true });
    proxyError(() => lifecycle.encryptVersion(STORE, KEY), 'INVALID_STATE');
    proxyError(() => lifecycle.checkDecrypt(STORE, KEY, 2), 'INVALID_STATE');
  });

  it('refuses everything while the key store is stopped', () => {
    const lifecycle = lifecycleFor(record('active'), true);
    const error = proxyError(() => lifecycle.encryptVersion(STORE, KEY), 'INVALID_STATE');
    assert.deepEqual(error.detail, { reason: 'the key store is stopped by its kill switch' });
    proxyError(() => lifecycle.checkDecrypt(STORE, KEY, 2), 'INVALID_STATE');
    assert.equal(lifecycle.metadata(STORE, KEY).status, 'DISABLED');
  });

  it('reads the latest document of the state service on every call', () => {
    const state = { current: { ...emptyState(), keys: { [keyRef(STORE, KEY.id)]: record('active') } } };
    const lifecycle = new KeyLifecycle(state as unknown as StateService);
    assert.equal(lifecycle.encryptVersion(STORE, KEY), 2);
    state.current = { ...emptyState(), keys: { [keyRef(STORE, KEY.id)]: record('suspended') } };
    proxyError(() => lifecycle.encryptVersion(STORE, KEY), 'INVALID_STATE');
  });
});

describe('KeyLifecycle: cryptoperiods against the clock', () => {
  it('is pre-activation (refused, DISABLED) before activateAt and active from it on', (t) => {
    const lifecycle = lifecycleFor(record('pre-activation', { activateAt: iso(NOW) }));
    at(t, NOW - 1);
    proxyError(() => lifecycle.encryptVersion(STORE, KEY), 'INVALID_STATE');
    proxyError(() => lifecycle.checkDecrypt(STORE, KEY, 2), 'INVALID_STATE');
    assert.equal(lifecycle.metadata(STORE, KEY).status, 'DISABLED');
    t.mock.timers.setTime(NOW);
    assert.equal(lifecycle.encryptVersion(STORE, KEY), 2);
    assert.equal(lifecycle.metadata(STORE, KEY).status, 'ENABLED');
  });

  it('is deactivated (decrypt-only, DISABLED) from expireAt on', (t) => {
    const lifecycle = lifecycleFor(record('active', { expireAt: iso(NOW) }));
    at(t, NOW - 1);
    assert.equal(lifecycle.encryptVersion(STORE, KEY), 2);
    t.mock.timers.setTime(NOW);
    const error = proxyError(() => lifecycle.encryptVersion(STORE, KEY), 'INVALID_STATE');
    assert.deepEqual(error.detail, { reason: 'the key is deactivated' });
    assert.deepEqual(lifecycle.checkDecrypt(STORE, KEY, 2), { alert: false });
    assert.deepEqual(lifecycle.checkDecrypt(STORE, KEY, 1), { alert: false });
    assert.deepEqual(lifecycle.metadata(STORE, KEY), { version: 2, status: 'DISABLED', destroyed: false });
  });

  it('lets a compromised key decrypt with an alert only until the override ends', (t) => {
    const lifecycle = lifecycleFor(record('compromised', { compromisedDecryptUntil: iso(NOW + MINUTE) }));
    at(t, NOW);
    assert.deepEqual(lifecycle.checkDecrypt(STORE, KEY, 2), { alert: true });
    proxyError(() => lifecycle.encryptVersion(STORE, KEY), 'INVALID_STATE');
    t.mock.timers.setTime(NOW + MINUTE);
    const error = proxyError(() => lifecycle.checkDecrypt(STORE, KEY, 2), 'INVALID_STATE');
    assert.deepEqual(error.detail, { reason: 'the key is compromised; decrypt needs an approved override' });
  });
});
