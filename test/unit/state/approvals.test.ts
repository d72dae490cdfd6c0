import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { AdminRole } from '../../../src/config/schema.js';
import {
  ApprovalError,
  approvalDigest,
  approve,
  executeApproval,
  parseTarget,
  pruneApprovals,
  reject,
  requestApproval,
  REQUESTER_ROLES,
  type ApprovalRequestInput,
  type ApproveInput,
  type ExecutionContext,
} from '../../../src/state/approvals.js';
import { emptyState, keyRef, StateDocumentSchema, type ApprovalRecord, type KeyRecord, type KeyState, type StateDocument } from '../../../src/state/document.js';
import { effectiveKey, LifecycleError, transitionMode } from '../../../src/state/lifecycle.js';
import { DAY, iso, MINUTE, rotatedKeyRecord } from '../../helpers/state-fixtures.js';

// --- fixtures ------------------------------------------------------------------

const NOW = Date.parse('2030-01-01T12:00:00.000Z');

const STORE = 'prod';
const KEY_ID = 'key-1';
const REF = keyRef(STORE, KEY_ID);
const TARGET = `keystore/${STORE}/key/${KEY_ID}`;
const MEMBERS = ['hsm-a', 'hsm-b', 'hsm-c'];

const roles = (...names: AdminRole[]): ReadonlySet<AdminRole> => new Set(names);
const KEY_ADMIN = roles('key-admin');
const APPROVER = roles('approver');

const keyRecord = (state: KeyState, extra: Partial<KeyRecord> = {}): KeyRecord => rotatedKeyRecord(state, NOW, extra);

function documentWith(keys: Record<string, KeyRecord> = {}): StateDocument {
  return { ...emptyState(), keys };
}

/** A key-admin (alice) asks to destroy prod/key-1; the window is an hour. */
function ask(document: StateDocument, overrides: Partial<ApprovalRequestInput> = {}): ApprovalRecord {
  return requestApproval(document, {
    action: 'key.destroy',
    target: TARGET,
    params: { reason: 'end of life' },
    requestedBy: 'mtls:alice',
    roles: KEY_ADMIN,
    windowMinutes: 60,
    now: NOW,
    ...overrides,
  });
}

/** An approver approves `record`, sending the digest they reviewed, a minute after the request. */
function approveAs(document: StateDocument, record: ApprovalRecord, by: string, overrides: Partial<ApproveInput> = {}): { record: ApprovalRecord; ready: boolean } {
  return approve(document, { id: record.id, by, roles: APPROVER, digest: record.digest, requiredApprovals: 2, now: NOW + MINUTE, ...overrides });
}

function context(overrides: Partial<ExecutionContext> = {}): ExecutionContext {
  return {
    now: NOW + 2 * MINUTE,
    members: MEMBERS,
    installPolicy: () => assert.fail('installPolicy should not be called for this action'),
    ...overrides,
  };
}

function approvalError(fn: () => unknown, status: ApprovalError['status'], message: RegExp): ApprovalError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ApprovalError, `expected an ApprovalError, got ${String(error)}`);
    assert.equal(error.status, status, error.message);
    assert.match(error.message, message);
    return error;
  }
  assert.fail('expected an ApprovalError, but nothing was thrown');
}

function lifecycleError(fn: () => unknown, code: LifecycleError['code']): LifecycleError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof LifecycleError, `expected a LifecycleError, got ${String(error)}`);
    assert.equal(error.code, code);
    return error;
  }
  assert.fail('expected a LifecycleError, but nothing was thrown');
}

// --- tests ---------------------------------------------------------------------

describe('approvalDigest: what an approval is bound to', () => {
  it('is the SHA-256 of the canonical action, target and params', () => {
    const expected = createHash('sha256').update('{"action":"key.destroy","params":{"reason":"x"},"target":"keystore/prod/key/key-1"}').digest('hex');
    assert.equal(approvalDigest('key.destroy', TARGET, { reason: 'x' }), expected);
  });

  it('does not depend on the order of keys in the params, however deep', () => {
    const one = approvalDigest('policy.widen', 'policy', { text: 't', version: 'v', nested: { a: 1, b: [1, { c: 2, d: 3 }] } });
    const two = approvalDigest('policy.widen', 'policy', { nested: { b: [1, { d: 3, c: 2 }], a: 1 }, version: 'v', text: 't' });
    assert.equal(one, two);
  });

  it('changes with the action, the target, any param value and the order of array elements', () => {
    const base = approvalDigest('key.destroy', TARGET, { reason: 'x', list: [1, 2] });
    const variants = [
      approvalDigest('key.reenable-compromised', TARGET, { reason: 'x', list: [1, 2] }),
      approvalDigest('key.destroy', 'keystore/prod/key/key-2', { reason: 'x', list: [1, 2] }),
      approvalDigest('key.destroy', TARGET, { reason: 'y', list: [1, 2] }),
      approvalDigest('key.destroy', TARGET, { reason: 'x', list: [2, 1] }),
      approvalDigest('key.destroy', TARGET, { reason: 'x', list: [1, 2], extra: true }),
      approvalDigest('key.destroy', TARGET, { reason: 'x', list: ['1', 2] }),
    ];
    for (const [index, digest] of variants.entries()) assert.notEqual(digest, base, `variant ${index}`);
    assert.equal(new Set(variants).size, variants.length);
  });
});

describe('requestApproval', () => {
  it('records a pending request with its digest, requester and a window of windowMinutes', () => {
    const document = documentWith();
    const record = ask(document, { windowMinutes: 30 });
    assert.deepEqual(document.approvals, [record]);
    assert.match(record.id, /^[a-f0-9-]{36}$/);
    assert.equal(record.status, 'pending');
    assert.equal(record.digest, approvalDigest('key.destroy', TARGET, { reason: 'end of life' }));
    assert.equal(record.requestedBy, 'mtls:alice');
    assert.equal(record.requestedAt, iso(NOW));
    assert.equal(record.expiresAt, iso(NOW + 30 * MINUTE));
    assert.deepEqual(record.approvals, []);
    // The record must survive the schema check StateService.mutate applies before writing.
    assert.equal(StateDocumentSchema.safeParse(document).success, true);
  });

  it('lets only the requesting roles of each action ask', () => {
    assert.deepEqual(REQUESTER_ROLES['key.destroy'], ['key-admin']);
    assert.deepEqual(REQUESTER_ROLES['killswitch.restore'], ['operator', 'key-admin']);
    for (const identity of [roles('approver'), roles('auditor'), roles('operator'), roles()]) {
      const document = documentWith();
      approvalError(() => ask(document, { roles: identity }), 403, /needs one of the roles: key-admin/);
      assert.deepEqual(document.approvals, [], 'a refused request leaves no record');
    }
    // An operator may ask to restore after a kill switch, not to destroy.
    const record = ask(documentWith(), { action: 'killswitch.restore', target: `keystore/${STORE}`, roles: roles('operator') });
    assert.equal(record.status, 'pending');
  });

  it(
    'refuses an identity that also holds the approver role (docs/lifecycle.md: "An approver cannot request")',
    () => {
      const document = documentWith();
      approvalError(() => ask(document, { roles: roles('key-admin', 'approver') }), 403, /approver/);
      assert.deepEqual(document.approvals, []);
    },
  );

  it('refuses a second pending request for the same action and target, but not for another target or action', () => {
    const document = documentWith();
    const first = ask(document);
    approvalError(() => ask(document, { now: NOW + 59 * MINUTE, requestedBy: 'mtls:dave' }), 409, new RegExp(`already pending \\(${first.id}\\)`));
    ask(document, { target: 'keystore/prod/key/key-2' });
    ask(document, { action: 'key.compromised-decrypt', params: { minutes: 5 } });
    assert.equal(document.approvals.length, 3);
  });

  it('accepts a new request once the earlier one has expired', () => {
    const document = documentWith();
    ask(document);
    const again = ask(document, { now: NOW + 60 * MINUTE });
    assert.equal(again.status, 'pending');
    assert.equal(document.approvals.length, 2);
  });
});

describe('approve: dual-control rules', () => {
  it('needs the approver role', () => {
    const document = documentWith();
    const record = ask(document);
    for (const identity of [roles('auditor'), roles()]) {
      approvalError(() => approveAs(document, record, 'mtls:bob', { roles: identity }), 403, /needs the approver role/);
    }
    assert.deepEqual(record.approvals, []);
  });

  it('refuses an approver who also holds key-admin or operator (separation of duties)', () => {
    const document = documentWith();
    const record = ask(document);
    approvalError(() => approveAs(document, record, 'mtls:bob', { roles: roles('approver', 'key-admin') }), 403, /key-admin role \(separation of duties\)/);
    approvalError(() => approveAs(document, record, 'mtls:bob', { roles: roles('approver', 'operator') }), 403, /operator role \(separation of duties\)/);
    approvalError(() => approveAs(document, record, 'mtls:bob', { roles: roles('approver', 'auditor', 'key-admin') }), 403, /separation of duties/);
    assert.deepEqual(record.approvals, [], 'no approval was recorded');
    // Auditor is read-only and does not conflict.
    assert.equal(approveAs(document, record, 'mtls:bob', { roles: roles('approver', 'auditor') }).record.approvals.length, 1);
  });

  it('refuses the requester approving their own request, even once they hold only the approver role', () => {
    const document = documentWith();
    const record = ask(document);
    approvalError(() => approveAs(document, record, 'mtls:alice'), 403, /requester cannot approve their own request/);
    assert.deepEqual(record.approvals, []);
  });

  it('binds the approval to the exact request: the digest of another request is refused', () => {
    const document = documentWith();
    const record = ask(document);
    const other = ask(document, { target: 'keystore/prod/key/key-2' });
    const altered = approvalDigest('key.destroy', TARGET, { reason: 'something else' });
    for (const digest of [other.digest, altered, '', record.digest.toUpperCase()]) {
      approvalError(() => approveAs(document, record, 'mtls:bob', { digest }), 409, /digest does not match this request/);
    }
    assert.deepEqual(record.approvals, []);
    assert.equal(approveAs(document, record, 'mtls:bob').record.approvals.length, 1);
  });

  it('counts the same approver once', () => {
    const document = documentWith();
    const record = ask(document);
    assert.equal(approveAs(document, record, 'mtls:bob').ready, false);
    approvalError(() => approveAs(document, record, 'mtls:bob', { now: NOW + 2 * MINUTE }), 409, /already approved/);
    assert.deepEqual(record.approvals, [{ by: 'mtls:bob', at: iso(NOW + MINUTE) }]);
  });

  it('becomes ready exactly when the required number of distinct approvals is reached', () => {
    for (const required of [1, 2, 3, 5]) {
      const document = documentWith();
      const record = ask(document);
      for (let index = 1; index <= required; index++) {
        const { ready } = approveAs(document, record, `mtls:approver-${index}`, { requiredApprovals: required });
        assert.equal(ready, index === required, `approval ${index} of ${required}`);
      }
      assert.equal(record.approvals.length, required);
      assert.equal(record.status, 'pending', 'approve never executes by itself');
    }
  });

  it('refuses an approval at or after the expiry and marks the request expired', () => {
    const document = documentWith();
    const record = ask(document, { windowMinutes: 10 });
    assert.equal(approveAs(document, record, 'mtls:bob', { now: NOW + 10 * MINUTE - 1 }).record.approvals.length, 1, 'one millisecond before the expiry still counts');
    approvalError(() => approveAs(document, record, 'mtls:carol', { now: NOW + 10 * MINUTE }), 409, /the request is expired/);
    assert.equal(record.status, 'expired');
    assert.equal(record.decidedAt, iso(NOW + 10 * MINUTE));
    assert.equal(record.approvals.length, 1);
    approvalError(() => approveAs(document, record, 'mtls:carol', { now: NOW }), 409, /the request is expired/);
  });

  it('answers 404 for an unknown request', () => {
    approvalError(() => approve(documentWith(), { id: '00000000-0000-0000-0000-000000000000', by: 'mtls:bob', roles: APPROVER, digest: 'x', requiredApprovals: 2, now: NOW }), 404, /no such approval request/);
  });

  it('refuses approvals on a rejected request', () => {
    const document = documentWith();
    const record = ask(document);
    approveAs(document, record, 'mtls:bob');
    const rejected = reject(document, record.id, 'mtls:carol', APPROVER, NOW + 2 * MINUTE);
    assert.equal(rejected, record);
    assert.equal(record.status, 'rejected');
    assert.equal(record.outcome, 'rejected by mtls:carol');
    assert.equal(record.decidedAt, iso(NOW + 2 * MINUTE));
    approvalError(() => approveAs(document, record, 'mtls:dave', { now: NOW + 3 * MINUTE }), 409, /the request is rejected/);
    approvalError(() => reject(document, record.id, 'mtls:dave', APPROVER, NOW + 3 * MINUTE), 409, /the request is rejected/);
    assert.equal(record.approvals.length, 1);
  });

  it('refuses approvals on an executed request: it runs at most once', () => {
    const document = documentWith({ [REF]: keyRecord('suspended') });
    const record = ask(document);
    approveAs(document, record, 'mtls:bob');
    const { ready } = approveAs(document, record, 'mtls:carol');
    assert.equal(ready, true);
    executeApproval(document, record, context());
    assert.equal(record.status, 'executed');
    approvalError(() => approveAs(document, record, 'mtls:dave', { now: NOW + 3 * MINUTE }), 409, /the request is executed/);
    approvalError(() => reject(document, record.id, 'mtls:dave', APPROVER, NOW + 3 * MINUTE), 409, /the request is executed/);
    assert.equal(record.approvals.length, 2);
  });
});

describe('reject', () => {
  it('needs the approver role', () => {
    const document = documentWith();
    const record = ask(document);
    approvalError(() => reject(document, record.id, 'mtls:alice', KEY_ADMIN, NOW), 403, /rejecting needs the approver role/);
    assert.equal(record.status, 'pending');
  });

  it('cannot reject an expired request', () => {
    const document = documentWith();
    const record = ask(document, { windowMinutes: 1 });
    approvalError(() => reject(document, record.id, 'mtls:bob', APPROVER, NOW + MINUTE), 409, /expired/);
    assert.equal(record.status, 'expired');
  });
});

describe('executeApproval', () => {
  /** A request for `action` on `target`, approved by bob and carol. */
  function approved(document: StateDocument, overrides: Partial<ApprovalRequestInput> = {}): ApprovalRecord {
    const record = ask(document, overrides);
    approveAs(document, record, 'mtls:bob');
    assert.equal(approveAs(document, record, 'mtls:carol').ready, true);
    return record;
  }

  it('destroys a suspended key: every version destroyed, every member pending erase, overrides cleared', () => {
    const document = documentWith({
      [REF]: keyRecord('suspended', {
        killSwitch: { at: iso(NOW - DAY), by: 'op', previousState: 'active' },
        compromisedDecryptUntil: iso(NOW + DAY),
      }),
    });
    const record = approved(document);
    executeApproval(document, record, context());
    const key = document.keys[REF];
    assert.equal(key?.state, 'destroyed');
    assert.deepEqual(
      Object.values(key?.versions ?? {}).map((version) => version.state),
      ['destroyed', 'destroyed'],
    );
    assert.deepEqual(key?.erasePending, MEMBERS);
    assert.equal(key?.killSwitch, undefined);
    assert.equal(key?.compromisedDecryptUntil, undefined);
    assert.equal(key?.changedBy, 'dual-control:mtls:alice+mtls:bob+mtls:carol');
    assert.equal(key?.changedAt, iso(NOW + 2 * MINUTE));
    assert.equal(record.status, 'executed');
    assert.equal(record.outcome, 'executed');
    assert.equal(record.decidedAt, iso(NOW + 2 * MINUTE));
    assert.equal(StateDocumentSchema.safeParse(document).success, true);
  });

  it('destroys keys from every state whose transition table allows it, and refuses the others without executing', () => {
    const allowed: KeyState[] = ['pre-activation', 'suspended', 'deactivated', 'compromised'];
    for (const state of allowed) {
      const document = documentWith({ [REF]: keyRecord(state) });
      executeApproval(document, approved(document), context());
      assert.equal(document.keys[REF]?.state, 'destroyed', state);
    }
    for (const state of ['active', 'destroyed'] as const) {
      const document = documentWith({ [REF]: keyRecord(state) });
      const record = approved(document);
      lifecycleError(() => executeApproval(document, record, context()), 'forbidden');
      assert.equal(document.keys[REF]?.state, state, 'the key is unchanged');
      assert.equal(record.status, 'pending', 'a failed execution is not marked executed');
    }
  });

  it(
    'destroys a key that its cryptoperiod has deactivated (the transition the admin API asked approval for)',
    () => {
      const document = documentWith({ [REF]: keyRecord('active', { expireAt: iso(NOW - DAY) }) });
      // What the admin API sees when the key admin asks for 'destroyed': a deactivated key, so dual control.
      assert.equal(effectiveKey(document, STORE, KEY_ID, NOW).state, 'deactivated');
      assert.equal(transitionMode('deactivated', 'destroyed', false), 'approval');
      const record = approved(document);
      executeApproval(document, record, context());
      assert.equal(document.keys[REF]?.state, 'destroyed');
      assert.equal(record.status, 'executed');
    },
  );

  it('re-enables a compromised key and keeps its versions', () => {
    const before = keyRecord('compromised');
    const document = documentWith({ [REF]: before });
    executeApproval(document, approved(document, { action: 'key.reenable-compromised', params: {} }), context());
    const key = document.keys[REF];
    assert.equal(key?.state, 'active');
    assert.deepEqual(key?.versions, before.versions);
    assert.equal(key?.erasePending, undefined);
  });

  it('opens a time-boxed decrypt override on a compromised key only', () => {
    const document = documentWith({ [REF]: keyRecord('compromised') });
    executeApproval(document, approved(document, { action: 'key.compromised-decrypt', params: { minutes: 15 } }), context());
    assert.equal(document.keys[REF]?.compromisedDecryptUntil, iso(NOW + 2 * MINUTE + 15 * MINUTE));
    assert.equal(document.keys[REF]?.state, 'compromised', 'the override does not change the state');

    const healthy = documentWith({ [REF]: keyRecord('active') });
    const record = approved(healthy, { action: 'key.compromised-decrypt', params: { minutes: 15 } });
    approvalError(() => executeApproval(healthy, record, context()), 409, /not compromised/);
    assert.equal(healthy.keys[REF]?.compromisedDecryptUntil, undefined);
  });

  it('restores a kill-switched key to the state it had, not to active', () => {
    const document = documentWith({ [REF]: keyRecord('suspended', { killSwitch: { at: iso(NOW - DAY), by: 'op', previousState: 'deactivated' } }) });
    executeApproval(document, approved(document, { action: 'killswitch.restore', params: {} }), context());
    const key = document.keys[REF];
    assert.equal(key?.state, 'deactivated');
    assert.equal(key?.killSwitch, undefined);
    assert.equal(key?.changedBy, 'dual-control:mtls:alice+mtls:bob+mtls:carol');
  });

  it('restores a stopped key store, and refuses to restore what is not stopped', () => {
    const document = { ...documentWith(), killedStores: { [STORE]: { at: iso(NOW - DAY), by: 'op' } } };
    executeApproval(document, approved(document, { action: 'killswitch.restore', target: `keystore/${STORE}`, params: {} }), context());
    assert.deepEqual(document.killedStores, {});

    const running = documentWith({ [REF]: keyRecord('active') });
    const storeRecord = approved(running, { action: 'killswitch.restore', target: `keystore/${STORE}`, params: {} });
    approvalError(() => executeApproval(running, storeRecord, context()), 409, /key store is not stopped/);
    const keyRecordRequest = approved(running, { action: 'killswitch.restore', params: {} });
    approvalError(() => executeApproval(running, keyRecordRequest, context()), 409, /not stopped by the kill switch/);
  });

  it('installs a widened policy through the context, as the dual-control actor', () => {
    const document = documentWith();
    const installed: Array<{ text: string; actor: string }> = [];
    const record = approved(document, { action: 'policy.widen', target: 'policy', params: { text: 'version: 1\n', version: 'abc' } });
    const install = (target: StateDocument, text: string, actor: string): void => {
      assert.equal(target, document);
      installed.push({ text, actor });
    };
    executeApproval(document, record, context({ installPolicy: install }));
    assert.deepEqual(installed, [{ text: 'version: 1\n', actor: 'dual-control:mtls:alice+mtls:bob+mtls:carol' }]);
    assert.equal(record.status, 'executed');
  });

  it('refuses key actions on a store target or on a key without a lifecycle record', () => {
    const document = documentWith();
    const storeTarget = approved(document, { target: `keystore/${STORE}` });
    approvalError(() => executeApproval(document, storeTarget, context()), 400, /needs a key target/);
    const unknownKey = approved(document, { target: 'keystore/prod/key/unknown' });
    approvalError(() => executeApproval(document, unknownKey, context()), 409, /no lifecycle record/);
    assert.deepEqual(document.keys, {});
  });
});

describe('parseTarget', () => {
  it('parses key and key store targets and refuses anything else', () => {
    assert.deepEqual(parseTarget('keystore/prod/key/key-1'), { keyStore: 'prod', keyId: 'key-1' });
    assert.deepEqual(parseTarget('keystore/prod'), { keyStore: 'prod', keyId: undefined });
    for (const bad of ['policy', 'keystore/', 'keystore/prod/key/', 'keystore/prod/key/a/b', 'keystore/a/b', '/keystore/prod']) {
      approvalError(() => parseTarget(bad), 400, /bad target/);
    }
  });
});

describe('pruneApprovals', () => {
  it('expires stale pending requests, drops decided ones after a day and keeps the rest', () => {
    const document = documentWith();
    const stale = ask(document, { target: 'keystore/prod/key/stale', windowMinutes: 10 });
    const live = ask(document, { target: 'keystore/prod/key/live', now: NOW + DAY, windowMinutes: 120 });
    const oldRejected = ask(document, { target: 'keystore/prod/key/old' });
    reject(document, oldRejected.id, 'mtls:bob', APPROVER, NOW + MINUTE);
    const recentRejected = ask(document, { target: 'keystore/prod/key/recent', now: NOW + DAY });
    reject(document, recentRejected.id, 'mtls:bob', APPROVER, NOW + DAY + MINUTE);

    pruneApprovals(document, NOW + DAY + 2 * MINUTE);
    assert.deepEqual(
      document.approvals.map((record) => [record.target, record.status]),
      [
        ['keystore/prod/key/stale', 'expired'],
        ['keystore/prod/key/live', 'pending'],
        ['keystore/prod/key/recent', 'rejected'],
      ],
    );
    assert.equal(stale.decidedAt, iso(NOW + DAY + 2 * MINUTE));
    assert.equal(live.decidedAt, undefined);

    // A day later the stale and the rejected requests go; the live one has expired meanwhile and stays a day.
    pruneApprovals(document, NOW + 2 * DAY + 3 * MINUTE);
    assert.deepEqual(
      document.approvals.map((record) => [record.target, record.status]),
      [['keystore/prod/key/live', 'expired']],
    );
  });

  it('keeps at most the 100 newest records', () => {
    const document = documentWith();
    for (let index = 0; index < 130; index++) ask(document, { target: `keystore/prod/key/k${index}`, windowMinutes: 7 * 24 * 60 });
    pruneApprovals(document, NOW);
    assert.equal(document.approvals.length, 100);
    assert.equal(document.approvals[0]?.target, 'keystore/prod/key/k30');
    assert.equal(document.approvals[99]?.target, 'keystore/prod/key/k129');
  });
});

describe('dual control end to end over one document', () => {
  it('request, refused self-approval, two approvals, execution, then no further approval', () => {
    const document = documentWith({ [REF]: keyRecord('deactivated') });
    const record = ask(document);
    approvalError(() => approveAs(document, record, 'mtls:alice'), 403, /own request/);
    const first = approveAs(document, record, 'mtls:bob');
    assert.equal(first.ready, false);
    assert.equal(document.keys[REF]?.state, 'deactivated', 'nothing happens before the second approval');
    const second = approveAs(document, record, 'mtls:carol', { now: NOW + 5 * MINUTE });
    assert.equal(second.ready, true);
    executeApproval(document, second.record, context({ now: NOW + 5 * MINUTE }));
    assert.equal(document.keys[REF]?.state, 'destroyed');
    approvalError(() => approveAs(document, record, 'mtls:dave', { now: NOW + 6 * MINUTE }), 409, /executed/);
    assert.equal(StateDocumentSchema.safeParse(document).success, true);
  });
});
