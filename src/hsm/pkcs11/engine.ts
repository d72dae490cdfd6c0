import pkcs11js from 'pkcs11js';
import { HsmError } from '../errors.js';
import type { KeyDescription } from '../protocol.js';
import { readAttributes, readBool, readCheckValue, readUlong } from './attributes.js';
import { ckrOf, SESSION_CODES, STALE_HANDLE_CODES, toHsmError, type Pkcs11Step } from './ckr.js';

/**
 * Synchronous PKCS#11 for one token, used inside an agent process only: a
 * blocking call there never blocks the proxy's event loop, and a hung call is
 * ended by killing the process (see docs/adr/0001).
 *
 * Sessions: an anchor session holds the login and keeps object handles valid
 * (closing the last session logs out and invalidates handles); one operation
 * session carries the crypto. The agent runs one operation at a time, so the
 * operation session is never shared.
 */

export const GCM_IV_BYTES = 12;
export const GCM_TAG_BYTES = 16;

export interface EngineOptions {
  module: string;
  tokenLabel: string;
  pin: string;
}

const KEY_TYPE_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(pkcs11js as unknown as Record<string, unknown>)
    .filter((entry): entry is [string, number] => entry[0].startsWith('CKK_') && typeof entry[1] === 'number')
    .map(([name, value]) => [value, name === 'CKK_AES' ? 'AES' : name]),
);

export class Pkcs11Engine {
  private readonly options: EngineOptions;
  private readonly p11 = new pkcs11js.PKCS11();
  private slot: Buffer | undefined;
  private anchorSession: Buffer | undefined;
  private operationSession: Buffer | undefined;
  private readonly keyHandles = new Map<string, Buffer>();
  private slotDescription = '';

  constructor(options: EngineOptions) {
    this.options = options;
  }

  open(): string {
    try {
      this.p11.load(this.options.module);
    } catch (error) {
      throw new HsmError('misconfigured', `cannot load PKCS#11 module ${this.options.module}: ${(error as Error).message}`);
    }
    try {
      // OS locking is required by p11-kit's client module and harmless elsewhere.
      this.p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (error) {
      if (ckrOf(error) !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw toHsmError(error, 'init');
    }
    this.slot = this.findSlot();
    this.anchorSession = this.openSession();
    try {
      this.p11.C_Login(this.anchorSession, pkcs11js.CKU_USER, this.options.pin);
    } catch (error) {
      if (ckrOf(error) !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) throw toHsmError(error, 'session');
    }
    this.operationSession = this.openSession();
    return this.slotDescription;
  }

  close(): void {
    try {
      this.p11.C_Finalize();
    } catch {
      // Finalising a broken module must not stop the process from exiting.
    }
  }

  encrypt(label: string, aad: Buffer, plaintext: Buffer): { iv: Buffer; ciphertext: Buffer } {
    return this.withRecovery('encrypt', label, (session, key) => {
      // SoftHSM does not generate GCM IVs itself, so a fresh one comes from the token's RNG for every call.
      const iv = this.p11.C_GenerateRandom(session, Buffer.alloc(GCM_IV_BYTES));
      this.p11.C_EncryptInit(session, gcmMechanism(iv, aad), key);
      const ciphertext = this.p11.C_Encrypt(session, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BYTES));
      if (ciphertext.length !== plaintext.length + GCM_TAG_BYTES) {
        throw new HsmError('device', `token returned ${ciphertext.length} bytes for ${plaintext.length} bytes of plaintext`);
      }
      return { iv, ciphertext };
    });
  }

  /** `ciphertext` is the ciphertext followed by the 16-byte tag. */
  decrypt(label: string, aad: Buffer, iv: Buffer, ciphertext: Buffer): Buffer {
    return this.withRecovery('decrypt', label, (session, key) => {
      this.p11.C_DecryptInit(session, gcmMechanism(iv, aad), key);
      // The output buffer must hold the tag too, even though the plaintext is shorter.
      const plaintext = this.p11.C_Decrypt(session, ciphertext, Buffer.alloc(ciphertext.length));
      return Buffer.from(plaintext);
    });
  }

  describe(label: string): KeyDescription {
    return this.withRecovery('describe', label, (session, key) => {
      const value = readAttributes(this.p11, session, key, [
        pkcs11js.CKA_KEY_TYPE,
        pkcs11js.CKA_VALUE_LEN,
        pkcs11js.CKA_ENCRYPT,
        pkcs11js.CKA_DECRYPT,
        pkcs11js.CKA_WRAP,
        pkcs11js.CKA_UNWRAP,
        pkcs11js.CKA_SIGN,
        pkcs11js.CKA_VERIFY,
        pkcs11js.CKA_DERIVE,
      ]);
      const keyType = readUlong(value(pkcs11js.CKA_KEY_TYPE));
      return {
        keyType: keyType === undefined ? 'unknown' : (KEY_TYPE_NAMES.get(keyType) ?? `CKK_0x${keyType.toString(16)}`),
        valueLength: readUlong(value(pkcs11js.CKA_VALUE_LEN)),
        usage: {
          encrypt: readBool(value(pkcs11js.CKA_ENCRYPT)),
          decrypt: readBool(value(pkcs11js.CKA_DECRYPT)),
          wrap: readBool(value(pkcs11js.CKA_WRAP)),
          unwrap: readBool(value(pkcs11js.CKA_UNWRAP)),
          sign: readBool(value(pkcs11js.CKA_SIGN)),
          verify: readBool(value(pkcs11js.CKA_VERIFY)),
          derive: readBool(value(pkcs11js.CKA_DERIVE)),
        },
        checkValue: readCheckValue(this.p11, session, key),
      };
    });
  }

  /**
   * What identifies each key's material without revealing it: CKA_CHECK_VALUE
   * where the token has it; for the health-check key only, a GCM encryption of
   * a fixed block under a fixed IV (a test key, so the fixed IV is harmless;
   * customer keys never get crypto operations the customer did not ask for).
   */
  fingerprint(labels: readonly string[], fixedVectorLabel: string): Record<string, string | null> {
    const session = this.requireSession();
    const out: Record<string, string | null> = {};
    for (const label of labels) {
      let key: Buffer;
      try {
        this.keyHandles.delete(label); // Always look again: the point is to see what is on the token now.
        key = this.findKey(session, label);
      } catch (error) {
        if (error instanceof HsmError && error.kind === 'key-not-found') {
          out[label] = null;
          continue;
        }
        throw toHsmError(error, 'find');
      }
      const checkValue = readCheckValue(this.p11, session, key);
      if (checkValue !== undefined) out[label] = `kcv:${checkValue}`;
      else if (label === fixedVectorLabel) out[label] = `gcm:${this.fixedVectorCiphertext(session, key)}`;
      else out[label] = 'unknown';
    }
    return out;
  }

  private fixedVectorCiphertext(session: Buffer, key: Buffer): string {
    try {
      this.p11.C_EncryptInit(session, gcmMechanism(Buffer.alloc(GCM_IV_BYTES), Buffer.from('hyok-proxy key consistency check')), key);
      return this.p11.C_Encrypt(session, Buffer.alloc(16), Buffer.alloc(16 + GCM_TAG_BYTES)).toString('hex');
    } catch (error) {
      throw toHsmError(error, 'encrypt');
    }
  }

  /** Values of the private data objects with this label (the shared state document, ADR 0004). */
  readData(label: string): string[] {
    const session = this.requireSession();
    try {
      this.p11.C_FindObjectsInit(session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_LABEL, value: label },
      ]);
      let handles: Buffer[];
      try {
        handles = this.p11.C_FindObjects(session, 16);
      } finally {
        this.p11.C_FindObjectsFinal(session);
      }
      return handles.map((handle) => {
        const [attr] = this.p11.C_GetAttributeValue(session, handle, [{ type: pkcs11js.CKA_VALUE }]);
        return ((attr?.value as Buffer | undefined) ?? Buffer.alloc(0)).toString('base64');
      });
    } catch (error) {
      throw toHsmError(error, 'find');
    }
  }

  /** Cheap liveness probe that still crosses into the token. */
  ping(): string {
    const session = this.requireSession();
    try {
      this.p11.C_GetSessionInfo(session);
    } catch (error) {
      throw toHsmError(error, 'session');
    }
    return this.slotDescription;
  }


  /**
   * Runs one operation, recovering once from a stale key handle (key re-found)
   * or a broken session (session reopened). Anything else propagates classified.
   */
  private withRecovery<T>(step: Pkcs11Step, label: string, run: (session: Buffer, key: Buffer) => T): T {
    let recovered = false;
    for (;;) {
      const session = this.requireSession();
      let key: Buffer;
      try {
        key = this.findKey(session, label);
      } catch (error) {
        throw toHsmError(error, 'find');
      }
      try {
        return run(session, key);
      } catch (error) {
        const code = ckrOf(error);
        if (!recovered && code !== undefined && STALE_HANDLE_CODES.has(code)) {
          this.keyHandles.delete(label);
          recovered = true;
          continue;
        }
        if (!recovered && code !== undefined && SESSION_CODES.has(code)) {
          this.reopenOperationSession();
          recovered = true;
          continue;
        }
        throw toHsmError(error, step);
      }
    }
  }

  private findKey(session: Buffer, label: string): Buffer {
    const cached = this.keyHandles.get(label);
    if (cached !== undefined) return cached;
    this.p11.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_LABEL, value: label },
    ]);
    let handles: Buffer[];
    try {
      handles = this.p11.C_FindObjects(session, 2);
    } finally {
      // Without Final the session stays in a find operation and the next Init fails.
      this.p11.C_FindObjectsFinal(session);
    }
    if (handles.length === 0) throw new HsmError('key-not-found', 'no secret key with that label on the token');
    if (handles.length > 1) throw new HsmError('key-ambiguous', 'more than one secret key carries that label');
    const [handle] = handles as [Buffer];
    this.keyHandles.set(label, handle);
    return handle;
  }

  private findSlot(): Buffer {
    let slots: Buffer[];
    try {
      slots = this.p11.C_GetSlotList(true);
    } catch (error) {
      throw toHsmError(error, 'init');
    }
    for (const slot of slots) {
      try {
        const token = this.p11.C_GetTokenInfo(slot);
        if (token.label.trim() === this.options.tokenLabel) {
          this.slotDescription = `${token.manufacturerID.trim()} ${token.model.trim()} serial ${token.serialNumber.trim()}`;
          return slot;
        }
      } catch {
        // A slot that cannot describe its token is not ours.
      }
    }
    // A token that is absent now may be back later (p11-kit server restarting), so this blames the device.
    throw new HsmError('device', `no token labelled '${this.options.tokenLabel}' in ${slots.length} slot(s)`);
  }

  private openSession(): Buffer {
    if (this.slot === undefined) throw new HsmError('internal', 'engine not opened');
    try {
      // Read-only sessions suffice for crypto with existing keys; least privilege.
      return this.p11.C_OpenSession(this.slot, pkcs11js.CKF_SERIAL_SESSION);
    } catch (error) {
      throw toHsmError(error, 'session');
    }
  }

  private requireSession(): Buffer {
    if (this.operationSession === undefined) throw new HsmError('internal', 'engine not opened');
    return this.operationSession;
  }

  private reopenOperationSession(): void {
    if (this.operationSession !== undefined) {
      try {
        this.p11.C_CloseSession(this.operationSession);
      } catch {
        // Already gone.
      }
    }
    this.operationSession = undefined;
    this.keyHandles.clear();
    const session = this.openSession();
    try {
      this.p11.C_Login(session, pkcs11js.CKU_USER, this.options.pin);
    } catch (error) {
      const code = ckrOf(error);
      if (code !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) throw toHsmError(error, 'session');
    }
    this.operationSession = session;
  }
}

function gcmMechanism(iv: Buffer, aad: Buffer): pkcs11js.Mechanism {
  // CK_PARAMS_GCM, not CK_PARAMS_AES_GCM: the latter leaves ulIvBits uninitialised (hsm-notes).
  const parameter: pkcs11js.GcmParams = { type: pkcs11js.CK_PARAMS_GCM, iv, ivBits: iv.length * 8, aad, tagBits: GCM_TAG_BYTES * 8 };
  return { mechanism: pkcs11js.CKM_AES_GCM, parameter };
}
