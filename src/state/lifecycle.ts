import { keyRef, type KeyRecord, type KeyState, type StateDocument, type VersionState } from './document.js';

/**
 * Key lifecycle rules (NIST SP 800-57 style). Pure functions over the state
 * document: what a key may do now, and which transitions are allowed.
 */

/** How a transition may happen: at once by a key admin, or only through dual control. */
export type TransitionMode = 'direct' | 'approval';

export const TRANSITIONS: Readonly<Record<KeyState, Readonly<Partial<Record<KeyState, TransitionMode>>>>> = {
  'pre-activation': { active: 'direct', suspended: 'direct', destroyed: 'approval' },
  active: { suspended: 'direct', deactivated: 'direct', compromised: 'direct' },
  suspended: { active: 'direct', deactivated: 'direct', compromised: 'direct', destroyed: 'approval' },
  // A deactivated key protects nothing new; it never comes back (NIST).
  deactivated: { compromised: 'direct', destroyed: 'approval' },
  // Re-enabling after a compromise is a two-person decision.
  compromised: { active: 'approval', destroyed: 'approval' },
  destroyed: {},
};

export interface EffectiveKey {
  /** The state after applying the cryptoperiod to the stored state. */
  readonly state: KeyState;
  readonly currentVersion: number;
  readonly versionState: (version: number) => VersionState | undefined;
  readonly storeKilled: boolean;
  readonly compromisedDecryptAllowed: boolean;
  readonly record: KeyRecord | undefined;
}

/** A key with no record predates lifecycle management: active, version 1. */
export function effectiveKey(document: StateDocument, keyStore: string, keyId: string, now: number = Date.now()): EffectiveKey {
  const record = document.keys[keyRef(keyStore, keyId)];
  const storeKilled = document.killedStores[keyStore] !== undefined;
  if (record === undefined) {
    return { state: 'active', currentVersion: 1, versionState: (version) => (version === 1 ? 'active' : undefined), storeKilled, compromisedDecryptAllowed: false, record };
  }
  let state = record.state;
  if (state === 'pre-activation' && record.activateAt !== undefined && Date.parse(record.activateAt) <= now) state = 'active';
  if (state === 'active' && record.activateAt !== undefined && Date.parse(record.activateAt) > now) state = 'pre-activation';
  if (state === 'active' && record.expireAt !== undefined && Date.parse(record.expireAt) <= now) state = 'deactivated';
  return {
    state,
    currentVersion: record.currentVersion,
    versionState: (version) => record.versions[String(version)]?.state,
    storeKilled,
    compromisedDecryptAllowed: record.compromisedDecryptUntil !== undefined && Date.parse(record.compromisedDecryptUntil) > now,
    record,
  };
}

export type Refusal = { readonly allowed: false; readonly reason: string };
export type EncryptPermission = { readonly allowed: true; readonly version: number } | Refusal;
export type DecryptPermission = { readonly allowed: true; readonly alert: boolean } | Refusal;

export function mayEncrypt(key: EffectiveKey): EncryptPermission {
  if (key.storeKilled) return { allowed: false, reason: 'the key store is stopped by its kill switch' };
  if (key.state !== 'active') return { allowed: false, reason: `the key is ${key.state}` };
  if (key.versionState(key.currentVersion) !== 'active') return { allowed: false, reason: `key version ${key.currentVersion} is not active` };
  return { allowed: true, version: key.currentVersion };
}

/** Deactivated keys still decrypt; compromised ones only under an approved override, and every use raises an alert. */
export function mayDecrypt(key: EffectiveKey, version: number): DecryptPermission {
  if (key.storeKilled) return { allowed: false, reason: 'the key store is stopped by its kill switch' };
  const versionState = key.versionState(version);
  if (versionState === undefined) return { allowed: false, reason: `key version ${version} does not exist` };
  if (versionState === 'retired' || versionState === 'destroyed') return { allowed: false, reason: `key version ${version} is ${versionState}` };
  switch (key.state) {
    case 'active':
    case 'deactivated':
      return { allowed: true, alert: false };
    case 'compromised':
      return key.compromisedDecryptAllowed ? { allowed: true, alert: true } : { allowed: false, reason: 'the key is compromised; decrypt needs an approved override' };
    default:
      return { allowed: false, reason: `the key is ${key.state}` };
  }
}

/** XKS keyStatus: ENABLED only while active and usable. */
export function keyStatus(key: EffectiveKey): 'ENABLED' | 'DISABLED' {
  return mayEncrypt(key).allowed ? 'ENABLED' : 'DISABLED';
}

export class LifecycleError extends Error {
  readonly code: 'forbidden' | 'needs-approval';

  constructor(code: 'forbidden' | 'needs-approval', message: string) {
    super(message);
    this.name = 'LifecycleError';
    this.code = code;
  }
}

/** How `from` may become `to`; throws when the transition does not exist. */
export function transitionMode(from: KeyState, to: KeyState, killSwitched: boolean): TransitionMode {
  const mode = TRANSITIONS[from][to];
  if (mode === undefined) throw new LifecycleError('forbidden', `a ${from} key cannot become ${to}`);
  // Undoing a kill switch is a two-person decision too.
  if (from === 'suspended' && to === 'active' && killSwitched) return 'approval';
  return mode;
}

/** A record for a key that has none yet: active, version 1, created now. */
export function initialRecord(now: string, actor: string): KeyRecord {
  return { state: 'active', changedAt: now, changedBy: actor, currentVersion: 1, versions: { '1': { state: 'active', createdAt: now } } };
}
