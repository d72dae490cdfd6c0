import { createHash, randomUUID } from 'node:crypto';
import type { AdminRole } from '../config/schema.js';
import { keyRef, type ApprovalAction, type ApprovalRecord, type StateDocument } from './document.js';
import { effectiveKey, transitionMode } from './lifecycle.js';

/**
 * Dual control: irreversible or access-widening actions need approvals from
 * distinct administrators within a time window. An approval is bound to the
 * request's digest, so it cannot be replayed onto another request, and each
 * request executes at most once.
 */

export class ApprovalError extends Error {
  readonly status: 400 | 403 | 404 | 409;

  constructor(status: 400 | 403 | 404 | 409, message: string) {
    super(message);
    this.name = 'ApprovalError';
    this.status = status;
  }
}

/** Roles that may ask for each action. Approvers never ask: separation of duties. */
export const REQUESTER_ROLES: Readonly<Record<ApprovalAction, readonly AdminRole[]>> = {
  'key.destroy': ['key-admin'],
  'key.reenable-compromised': ['key-admin'],
  'key.compromised-decrypt': ['key-admin'],
  'policy.widen': ['key-admin'],
  'killswitch.restore': ['operator', 'key-admin'],
};

/** An approver may not also hold a requesting role: nobody approves their own kind of change. */
const CONFLICTING_WITH_APPROVER: readonly AdminRole[] = ['key-admin', 'operator'];

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, unknown>)[key])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

export function approvalDigest(action: ApprovalAction, target: string, params: Record<string, unknown>): string {
  return createHash('sha256').update(canonical({ action, target, params })).digest('hex');
}

export interface ApprovalRequestInput {
  readonly action: ApprovalAction;
  readonly target: string;
  readonly params: Record<string, unknown>;
  readonly requestedBy: string;
  readonly roles: ReadonlySet<AdminRole>;
  readonly windowMinutes: number;
  readonly now: number;
}

export function requestApproval(document: StateDocument, input: ApprovalRequestInput): ApprovalRecord {
  if (!REQUESTER_ROLES[input.action].some((role) => input.roles.has(role))) {
    throw new ApprovalError(403, `asking for ${input.action} needs one of the roles: ${REQUESTER_ROLES[input.action].join(', ')}`);
  }
  if (input.roles.has('approver')) throw new ApprovalError(403, 'an approver may not also make requests (separation of duties)');
  const duplicate = document.approvals.find(
    (record) => record.status === 'pending' && record.action === input.action && record.target === input.target && Date.parse(record.expiresAt) > input.now,
  );
  if (duplicate !== undefined) throw new ApprovalError(409, `a request for ${input.action} on ${input.target} is already pending (${duplicate.id})`);
  const record: ApprovalRecord = {
    id: randomUUID(),
    action: input.action,
    target: input.target,
    params: input.params,
    digest: approvalDigest(input.action, input.target, input.params),
    requestedBy: input.requestedBy,
    requestedAt: new Date(input.now).toISOString(),
    expiresAt: new Date(input.now + input.windowMinutes * 60_000).toISOString(),
    approvals: [],
    status: 'pending',
  };
  document.approvals.push(record);
  return record;
}

export interface ApproveInput {
  readonly id: string;
  readonly by: string;
  readonly roles: ReadonlySet<AdminRole>;
  /** The digest the approver saw; it must be the request's. */
  readonly digest: string;
  readonly requiredApprovals: number;
  readonly now: number;
}

/** Records an approval; returns the request and whether it now has enough approvals to execute. */
export function approve(document: StateDocument, input: ApproveInput): { record: ApprovalRecord; ready: boolean } {
  if (!input.roles.has('approver')) throw new ApprovalError(403, 'approving needs the approver role');
  const conflict = CONFLICTING_WITH_APPROVER.find((role) => input.roles.has(role));
  if (conflict !== undefined) throw new ApprovalError(403, `an approver may not also hold the ${conflict} role (separation of duties)`);
  const record = pendingRecord(document, input.id, input.now);
  if (record.digest !== input.digest) throw new ApprovalError(409, 'the digest does not match this request: approvals are bound to the exact request');
  if (record.requestedBy === input.by) throw new ApprovalError(403, 'the requester cannot approve their own request');
  if (record.approvals.some((approval) => approval.by === input.by)) throw new ApprovalError(409, 'this administrator already approved the request');
  record.approvals.push({ by: input.by, at: new Date(input.now).toISOString() });
  return { record, ready: record.approvals.length >= input.requiredApprovals };
}

export function reject(document: StateDocument, id: string, by: string, roles: ReadonlySet<AdminRole>, now: number): ApprovalRecord {
  if (!roles.has('approver')) throw new ApprovalError(403, 'rejecting needs the approver role');
  const record = pendingRecord(document, id, now);
  record.status = 'rejected';
  record.decidedAt = new Date(now).toISOString();
  record.outcome = `rejected by ${by}`;
  return record;
}

function pendingRecord(document: StateDocument, id: string, now: number): ApprovalRecord {
  const record = document.approvals.find((candidate) => candidate.id === id);
  if (record === undefined) throw new ApprovalError(404, 'no such approval request');
  if (record.status === 'pending' && Date.parse(record.expiresAt) <= now) {
    record.status = 'expired';
    record.decidedAt = new Date(now).toISOString();
  }
  if (record.status !== 'pending') throw new ApprovalError(409, `the request is ${record.status}`);
  return record;
}

/** Marks stale requests expired and drops decided ones after a day (the audit log keeps them). */
export function pruneApprovals(document: StateDocument, now: number): void {
  for (const record of document.approvals) {
    if (record.status === 'pending' && Date.parse(record.expiresAt) <= now) {
      record.status = 'expired';
      record.decidedAt = new Date(now).toISOString();
    }
  }
  const dayAgo = now - 24 * 3_600_000;
  document.approvals = document.approvals.filter((record) => record.status === 'pending' || Date.parse(record.decidedAt ?? record.requestedAt) > dayAgo).slice(-100);
}

/** Parses "keystore/<name>/key/<id>" or "keystore/<name>". */
export function parseTarget(target: string): { keyStore: string; keyId: string | undefined } {
  const match = /^keystore\/([^/]+)(?:\/key\/([^/]+))?$/.exec(target);
  if (match === null) throw new ApprovalError(400, `bad target '${target.slice(0, 100)}'`);
  return { keyStore: match[1] as string, keyId: match[2] };
}

export interface ExecutionContext {
  readonly now: number;
  readonly members: readonly string[];
  /** Installs a widened policy (validated again at execution). */
  readonly installPolicy: (document: StateDocument, text: string, actor: string) => void;
}

/** Applies an approved request to the state. Crypto-erase of destroyed keys happens after the write commits. */
export function executeApproval(document: StateDocument, record: ApprovalRecord, context: ExecutionContext): void {
  const at = new Date(context.now).toISOString();
  const actor = `dual-control:${record.requestedBy}+${record.approvals.map((approval) => approval.by).join('+')}`;
  switch (record.action) {
    case 'key.destroy':
    case 'key.reenable-compromised':
    case 'key.compromised-decrypt': {
      const { keyStore, keyId } = parseTarget(record.target);
      if (keyId === undefined) throw new ApprovalError(400, 'this action needs a key target');
      const ref = keyRef(keyStore, keyId);
      const current = document.keys[ref];
      if (current === undefined) throw new ApprovalError(409, 'the key has no lifecycle record');
      if (record.action === 'key.compromised-decrypt') {
        if (current.state !== 'compromised') throw new ApprovalError(409, 'the key is not compromised');
        const minutes = Number(record.params['minutes'] ?? 60);
        document.keys[ref] = { ...current, compromisedDecryptUntil: new Date(context.now + minutes * 60_000).toISOString() };
        break;
      }
      const to = record.action === 'key.destroy' ? 'destroyed' : 'active';
      // The state the request was judged on: the stored one with the cryptoperiod applied.
      transitionMode(effectiveKey(document, keyStore, keyId, context.now).state, to, current.killSwitch !== undefined);
      const versions = Object.fromEntries(
        Object.entries(current.versions).map(([version, entry]) => [version, to === 'destroyed' ? { ...entry, state: 'destroyed' as const } : entry]),
      );
      document.keys[ref] = {
        ...current,
        state: to,
        changedAt: at,
        changedBy: actor,
        versions,
        ...(to === 'destroyed' ? { erasePending: [...context.members] } : {}),
      };
      delete document.keys[ref]?.killSwitch;
      delete document.keys[ref]?.compromisedDecryptUntil;
      break;
    }
    case 'killswitch.restore': {
      const { keyStore, keyId } = parseTarget(record.target);
      if (keyId === undefined) {
        if (document.killedStores[keyStore] === undefined) throw new ApprovalError(409, 'the key store is not stopped');
        delete document.killedStores[keyStore];
      } else {
        const ref = keyRef(keyStore, keyId);
        const current = document.keys[ref];
        if (current?.killSwitch === undefined) throw new ApprovalError(409, 'the key is not stopped by the kill switch');
        const { killSwitch, ...rest } = current;
        document.keys[ref] = { ...rest, state: killSwitch.previousState ?? 'active', changedAt: at, changedBy: actor };
      }
      break;
    }
    case 'policy.widen':
      context.installPolicy(document, String(record.params['text'] ?? ''), actor);
      break;
  }
  record.status = 'executed';
  record.decidedAt = at;
  record.outcome = 'executed';
}
