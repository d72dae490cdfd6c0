import { z } from 'zod';

/**
 * The shared state of the proxy fleet (ADR 0004): key lifecycle and versions,
 * kill switches, dual-control requests and the managed policy. One JSON
 * document, versioned by a counter, stored on every HSM member.
 */

/** NIST SP 800-57 style states. */
export const KEY_STATES = ['pre-activation', 'active', 'suspended', 'deactivated', 'compromised', 'destroyed'] as const;
export type KeyState = (typeof KEY_STATES)[number];

/** A version is encrypted with while active; older ones only decrypt until retired. */
export const VERSION_STATES = ['active', 'decrypt-only', 'retired', 'destroyed'] as const;
export type VersionState = (typeof VERSION_STATES)[number];

const Timestamp = z.iso.datetime();
const Actor = z.string().min(1).max(200);

const VersionSchema = z.strictObject({
  state: z.enum(VERSION_STATES),
  createdAt: Timestamp,
});

const KillSwitchSchema = z.strictObject({
  at: Timestamp,
  by: Actor,
  reason: z.string().max(500).optional(),
});

const KeyRecordSchema = z.strictObject({
  state: z.enum(KEY_STATES),
  changedAt: Timestamp,
  changedBy: Actor,
  reason: z.string().max(500).optional(),
  /** Cryptoperiod: before this the key is pre-activation. */
  activateAt: Timestamp.optional(),
  /** Cryptoperiod: after this the key only decrypts (deactivated). */
  expireAt: Timestamp.optional(),
  /** Decrypt with a compromised key is refused unless an approved override is in force. */
  compromisedDecryptUntil: Timestamp.optional(),
  currentVersion: z.number().int().min(1),
  versions: z.record(z.string().regex(/^[1-9][0-9]*$/), VersionSchema),
  /** Members still holding objects of a destroyed key (they were unreachable at the time). */
  erasePending: z.array(z.string()).optional(),
  /** Set when the kill switch suspended the key: bringing it back needs dual control. */
  killSwitch: KillSwitchSchema.extend({
    /** The state the key had when it was stopped; restoring returns it there (a deactivated key never becomes active). */
    previousState: z.enum(KEY_STATES).optional(),
  }).optional(),
});


export const APPROVAL_ACTIONS = ['key.destroy', 'key.reenable-compromised', 'key.compromised-decrypt', 'policy.widen', 'killswitch.restore'] as const;
export type ApprovalAction = (typeof APPROVAL_ACTIONS)[number];

const ApprovalSchema = z.strictObject({
  id: z.string().regex(/^[a-f0-9-]{36}$/),
  action: z.enum(APPROVAL_ACTIONS),
  /** "keystore/<name>/key/<id>", "keystore/<name>" or "policy". */
  target: z.string().min(1).max(300),
  params: z.record(z.string(), z.unknown()),
  /** SHA-256 of action, target and params: an approval is bound to exactly this content. */
  digest: z.string().regex(/^[a-f0-9]{64}$/),
  requestedBy: Actor,
  requestedAt: Timestamp,
  expiresAt: Timestamp,
  approvals: z.array(z.strictObject({ by: Actor, at: Timestamp })),
  status: z.enum(['pending', 'executed', 'rejected', 'expired', 'failed']),
  decidedAt: Timestamp.optional(),
  outcome: z.string().max(500).optional(),
});

const ManagedPolicySchema = z.strictObject({
  /** The policy YAML text, already validated. */
  text: z.string().max(256 * 1024),
  version: z.string(),
  changedAt: Timestamp,
  changedBy: Actor,
});

export const StateDocumentSchema = z.strictObject({
  format: z.literal(1),
  version: z.number().int().min(0),
  updatedAt: Timestamp,
  updatedBy: Actor,
  /** By "<keyStore>/<externalKeyId>". */
  keys: z.record(z.string(), KeyRecordSchema),
  killedStores: z.record(z.string(), KillSwitchSchema),
  approvals: z.array(ApprovalSchema),
  policy: ManagedPolicySchema.optional(),
});

export type StateDocument = z.infer<typeof StateDocumentSchema>;
export type KeyRecord = z.infer<typeof KeyRecordSchema>;
export type ApprovalRecord = z.infer<typeof ApprovalSchema>;
export type KillSwitch = z.infer<typeof KillSwitchSchema>;

export function emptyState(): StateDocument {
  return { format: 1, version: 0, updatedAt: new Date(0).toISOString(), updatedBy: 'nobody', keys: {}, killedStores: {}, approvals: [] };
}

export function keyRef(keyStore: string, keyId: string): string {
  return `${keyStore}/${keyId}`;
}

/** Parses a stored document; undefined when it is not a valid state document. */
export function parseState(bytes: Buffer): StateDocument | undefined {
  try {
    const parsed = StateDocumentSchema.safeParse(JSON.parse(bytes.toString('utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

export function serializeState(document: StateDocument): Buffer {
  return Buffer.from(JSON.stringify(document), 'utf8');
}
