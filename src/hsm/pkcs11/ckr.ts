import pkcs11js from 'pkcs11js';
import { HsmError, type HsmErrorKind } from '../errors.js';

/** CK_RV value -> CKR_ name, built from pkcs11js's own constants. */
const CKR_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(pkcs11js as unknown as Record<string, unknown>)
    .filter((entry): entry is [string, number] => entry[0].startsWith('CKR_') && typeof entry[1] === 'number')
    .map(([name, value]) => [value, name]),
);

export function ckrName(code: number): string {
  return CKR_NAMES.get(code) ?? `CKR_0x${code.toString(16).padStart(8, '0')}`;
}

export type Pkcs11Step = 'encrypt' | 'decrypt' | 'find' | 'describe' | 'session' | 'init' | 'random';

const C = pkcs11js;

/** Codes that mean "this session is broken; reopen it". */
export const SESSION_CODES: ReadonlySet<number> = new Set([
  C.CKR_SESSION_HANDLE_INVALID,
  C.CKR_SESSION_CLOSED,
  C.CKR_USER_NOT_LOGGED_IN,
  C.CKR_OPERATION_ACTIVE,
  C.CKR_OPERATION_NOT_INITIALIZED,
]);

/** Codes that mean "the cached key handle is stale; find the key again". */
export const STALE_HANDLE_CODES: ReadonlySet<number> = new Set([C.CKR_KEY_HANDLE_INVALID, C.CKR_OBJECT_HANDLE_INVALID]);

const KEY_USAGE_CODES: ReadonlySet<number> = new Set([
  C.CKR_KEY_FUNCTION_NOT_PERMITTED,
  C.CKR_KEY_TYPE_INCONSISTENT,
  C.CKR_KEY_SIZE_RANGE,
]);

/** Input the caller supplied is wrong: these never blame the device. */
const DATA_CODES: ReadonlySet<number> = new Set([
  C.CKR_ENCRYPTED_DATA_INVALID,
  C.CKR_ENCRYPTED_DATA_LEN_RANGE,
  C.CKR_DATA_INVALID,
  C.CKR_DATA_LEN_RANGE,
]);

/**
 * Vendors report a failed GCM authentication check in non-standard ways:
 * SoftHSM2 returns CKR_GENERAL_ERROR and nShield CKR_FUNCTION_FAILED. On decrypt
 * these mean "invalid ciphertext", so garbage input can never trip a breaker.
 */
const DECRYPT_AUTH_FAILURE_CODES: ReadonlySet<number> = new Set([C.CKR_GENERAL_ERROR, C.CKR_FUNCTION_FAILED]);

const MISCONFIGURED_CODES: ReadonlySet<number> = new Set([
  C.CKR_PIN_INCORRECT,
  C.CKR_PIN_INVALID,
  C.CKR_PIN_LEN_RANGE,
  C.CKR_PIN_EXPIRED,
  C.CKR_PIN_LOCKED,
]);

export function classifyCkr(code: number, step: Pkcs11Step): HsmErrorKind {
  if (step === 'decrypt' && DECRYPT_AUTH_FAILURE_CODES.has(code)) return 'data';
  // On decrypt the client chose the IV; on encrypt the proxy did, so there it is the proxy's or the HSM's fault.
  if (code === C.CKR_MECHANISM_PARAM_INVALID) return step === 'decrypt' ? 'data' : 'internal';
  if (DATA_CODES.has(code)) return step === 'encrypt' || step === 'decrypt' ? 'data' : 'internal';
  if (KEY_USAGE_CODES.has(code)) return 'key-usage';
  if (SESSION_CODES.has(code)) return 'session';
  if (STALE_HANDLE_CODES.has(code)) return 'key-not-found';
  if (MISCONFIGURED_CODES.has(code)) return 'misconfigured';
  // Anything else (CKR_DEVICE_ERROR, CKR_TOKEN_NOT_PRESENT, unknown vendor codes...) blames the device.
  return 'device';
}

/** The CK_RV carried by a pkcs11js error, if any. */
export function ckrOf(error: unknown): number | undefined {
  if (error instanceof pkcs11js.Pkcs11Error && typeof error.code === 'number') return error.code;
  return undefined;
}

/** Converts anything thrown by pkcs11js into an HsmError classified for the step that failed. */
export function toHsmError(error: unknown, step: Pkcs11Step): HsmError {
  if (error instanceof HsmError) return error;
  const code = ckrOf(error);
  if (code === undefined) {
    const message = error instanceof Error ? error.message : String(error);
    return new HsmError('internal', `${step}: ${message}`);
  }
  const name = ckrName(code);
  return new HsmError(classifyCkr(code, step), `${step} failed: ${name}`, { ckr: code, ckrName: name });
}
