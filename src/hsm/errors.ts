/**
 * How an HSM failure is classified. The class decides everything downstream:
 * whether the client is told its input was bad, whether another member is tried,
 * and whether the failure counts against the member's health.
 */
export const HSM_ERROR_KINDS = [
  /** The request's data is at fault (bad tag, IV, AAD or ciphertext). Never the device's fault. */
  'data',
  /** The key's attributes forbid the operation (CKA_ENCRYPT/CKA_DECRYPT false, wrong key type). */
  'key-usage',
  /** No key object with that label on the token. */
  'key-not-found',
  /** More than one key object carries the label: a provisioning mistake, never guessed around. */
  'key-ambiguous',
  /** The session broke (closed, logged out); the agent already reopened it and the retry failed too. */
  'session',
  /** The device or its connection failed. */
  'device',
  /** No answer within the call's deadline. */
  'timeout',
  /** The member cannot take work: agent down, restarting, fenced or queue full. */
  'unavailable',
  /** PIN rejected or module cannot be loaded: needs an operator, never retried automatically. */
  'misconfigured',
  /** A bug or an unexpected state inside the proxy. */
  'internal',
] as const;

export type HsmErrorKind = (typeof HSM_ERROR_KINDS)[number];

/** Failures that say nothing about the request, so another member may succeed. */
const RETRYABLE_KINDS: ReadonlySet<HsmErrorKind> = new Set(['session', 'device', 'timeout', 'unavailable']);
/** Failures that blame the member itself and count against its health. */
const MEMBER_FAULT_KINDS: ReadonlySet<HsmErrorKind> = new Set(['session', 'device', 'timeout', 'misconfigured']);

export interface HsmErrorInit {
  ckr?: number | undefined;
  ckrName?: string | undefined;
  member?: string | undefined;
}

export class HsmError extends Error {
  readonly kind: HsmErrorKind;
  readonly ckr: number | undefined;
  readonly ckrName: string | undefined;
  readonly member: string | undefined;

  constructor(kind: HsmErrorKind, message: string, init: HsmErrorInit = {}) {
    super(message);
    this.name = 'HsmError';
    this.kind = kind;
    this.ckr = init.ckr;
    this.ckrName = init.ckrName;
    this.member = init.member;
  }

  get retryable(): boolean {
    return RETRYABLE_KINDS.has(this.kind);
  }

  get blamesMember(): boolean {
    return MEMBER_FAULT_KINDS.has(this.kind);
  }

  withMember(member: string): HsmError {
    return new HsmError(this.kind, this.message, { ckr: this.ckr, ckrName: this.ckrName, member });
  }
}

export function isHsmError(value: unknown): value is HsmError {
  return value instanceof HsmError;
}
