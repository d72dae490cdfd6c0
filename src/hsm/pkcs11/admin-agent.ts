/**
 * Entry point of a one-shot token administration process (CLI `keys ...` and
 * the dev bootstrap). Separate from the serving agent: it opens a read-write
 * session and may create keys. It runs in its own process so each member's
 * module and environment (e.g. SOFTHSM2_CONF) stay isolated.
 */
import pkcs11js from 'pkcs11js';
import { HsmError } from '../errors.js';
import type { AdminOperation, AdminRequest, AdminResponse, PutDataResult, TokenKey } from '../token-admin-protocol.js';
import { readAttributes, readBool, readCheckValue, readUlong } from './attributes.js';
import { toHsmError } from './ckr.js';

const C = pkcs11js;

function keyTemplate(label: string, usage: { encrypt: boolean; decrypt: boolean }): pkcs11js.Template {
  return [
    { type: C.CKA_CLASS, value: C.CKO_SECRET_KEY },
    { type: C.CKA_KEY_TYPE, value: C.CKK_AES },
    { type: C.CKA_TOKEN, value: true },
    { type: C.CKA_PRIVATE, value: true },
    { type: C.CKA_LABEL, value: label },
    // Key material never leaves the HSM.
    { type: C.CKA_SENSITIVE, value: true },
    { type: C.CKA_EXTRACTABLE, value: false },
    { type: C.CKA_ENCRYPT, value: usage.encrypt },
    { type: C.CKA_DECRYPT, value: usage.decrypt },
    { type: C.CKA_WRAP, value: false },
    { type: C.CKA_UNWRAP, value: false },
    { type: C.CKA_SIGN, value: false },
    { type: C.CKA_VERIFY, value: false },
    { type: C.CKA_DERIVE, value: false },
  ];
}

/** The top-level "version" of a stored JSON document, if it has one. */
function storedVersion(value: Buffer | undefined): number | undefined {
  if (value === undefined) return undefined;
  try {
    const version = (JSON.parse(value.toString('utf8')) as { version?: unknown }).version;
    return typeof version === 'number' ? version : undefined;
  } catch {
    return undefined;
  }
}

class TokenAdmin {
  private readonly p11 = new pkcs11js.PKCS11();
  private session: Buffer | undefined;

  open(module: string, tokenLabel: string, pin: string): void {
    try {
      this.p11.load(module);
    } catch (error) {
      throw new HsmError('misconfigured', `cannot load PKCS#11 module ${module}: ${(error as Error).message}`);
    }
    try {
      this.p11.C_Initialize({ flags: C.CKF_OS_LOCKING_OK });
    } catch (error) {
      throw toHsmError(error, 'init');
    }
    const slot = this.p11.C_GetSlotList(true).find((candidate) => this.p11.C_GetTokenInfo(candidate).label.trim() === tokenLabel);
    if (slot === undefined) throw new HsmError('misconfigured', `no token labelled '${tokenLabel}'`);
    try {
      this.session = this.p11.C_OpenSession(slot, C.CKF_SERIAL_SESSION | C.CKF_RW_SESSION);
      this.p11.C_Login(this.session, C.CKU_USER, pin);
    } catch (error) {
      throw toHsmError(error, 'session');
    }
  }

  close(): void {
    try {
      this.p11.C_Finalize();
    } catch {
      // The process exits next anyway.
    }
  }

  run(operation: AdminOperation): unknown {
    const session = this.session as Buffer;
    switch (operation.op) {
      case 'generate': {
        this.refuseExisting(operation.label);
        const template = [...keyTemplate(operation.label, operation.usage), { type: C.CKA_VALUE_LEN, value: 32 }];
        const handle = this.p11.C_GenerateKey(session, { mechanism: C.CKM_AES_KEY_GEN }, template);
        return { checkValue: this.checkValue(handle) };
      }
      case 'import': {
        this.refuseExisting(operation.label);
        const material = Buffer.from(operation.material, 'base64');
        try {
          if (material.length !== 32) throw new HsmError('internal', 'AES-256 key material must be 32 bytes');
          const handle = this.p11.C_CreateObject(session, [...keyTemplate(operation.label, operation.usage), { type: C.CKA_VALUE, value: material }]);
          return { checkValue: this.checkValue(handle) };
        } finally {
          material.fill(0);
        }
      }
      case 'list':
        return this.list();
      case 'destroy': {
        const handles = this.find(operation.label);
        for (const handle of handles) this.p11.C_DestroyObject(session, handle);
        return { destroyed: handles.length };
      }
      case 'putData':
        return this.putData(operation.label, Buffer.from(operation.value, 'base64'), operation.version);
    }
  }

  private putData(label: string, value: Buffer, version: number): PutDataResult {
    const session = this.session as Buffer;
    const existing = this.findData(label);
    for (const handle of existing) {
      const [attr] = this.p11.C_GetAttributeValue(session, handle, [{ type: C.CKA_VALUE }]);
      const current = storedVersion(attr?.value as Buffer | undefined);
      if (current !== undefined && current >= version) return { written: false, conflictVersion: current };
    }
    // Create before destroy: a reader never finds the token without a document.
    const created = this.p11.C_CreateObject(session, [
      { type: C.CKA_CLASS, value: C.CKO_DATA },
      { type: C.CKA_TOKEN, value: true },
      { type: C.CKA_PRIVATE, value: true },
      { type: C.CKA_LABEL, value: label },
      { type: C.CKA_APPLICATION, value: 'hyok-proxy' },
      { type: C.CKA_VALUE, value },
    ]);
    // PKCS#11 has no compare-and-set: another process may have created the same version between our check and
    // our create. Look again; if so, withdraw ours (both may withdraw; the writers retry with jitter).
    const rival = this.newestOtherVersion(label, [created, ...existing]);
    if (rival !== undefined && rival >= version) {
      this.p11.C_DestroyObject(session, created);
      return { written: false, conflictVersion: rival };
    }
    for (const handle of existing) this.p11.C_DestroyObject(session, handle);
    return { written: true };
  }

  /** The highest document version among this label's data objects other than `known`. */
  private newestOtherVersion(label: string, known: readonly Buffer[]): number | undefined {
    const session = this.session as Buffer;
    let newest: number | undefined;
    for (const handle of this.findData(label)) {
      if (known.some((mine) => mine.equals(handle))) continue;
      const [attr] = this.p11.C_GetAttributeValue(session, handle, [{ type: C.CKA_VALUE }]);
      const other = storedVersion(attr?.value as Buffer | undefined);
      if (other !== undefined && (newest === undefined || other > newest)) newest = other;
    }
    return newest;
  }

  private findData(label: string): Buffer[] {
    const session = this.session as Buffer;
    this.p11.C_FindObjectsInit(session, [
      { type: C.CKA_CLASS, value: C.CKO_DATA },
      { type: C.CKA_TOKEN, value: true },
      { type: C.CKA_LABEL, value: label },
    ]);
    try {
      return this.p11.C_FindObjects(session, 16);
    } finally {
      this.p11.C_FindObjectsFinal(session);
    }
  }

  private refuseExisting(label: string): void {
    if (this.find(label).length > 0) throw new HsmError('internal', `a secret key labelled '${label}' already exists`);
  }

  private find(label: string | undefined): Buffer[] {
    const session = this.session as Buffer;
    const template: pkcs11js.Template = [
      { type: C.CKA_CLASS, value: C.CKO_SECRET_KEY },
      { type: C.CKA_TOKEN, value: true },
    ];
    if (label !== undefined) template.push({ type: C.CKA_LABEL, value: label });
    this.p11.C_FindObjectsInit(session, template);
    try {
      return this.p11.C_FindObjects(session, 10_000);
    } finally {
      this.p11.C_FindObjectsFinal(session);
    }
  }

  private checkValue(handle: Buffer): string | undefined {
    return readCheckValue(this.p11, this.session as Buffer, handle);
  }

  private list(): TokenKey[] {
    const session = this.session as Buffer;
    return this.find(undefined).map((handle) => {
      const value = readAttributes(this.p11, session, handle, [
        C.CKA_LABEL,
        C.CKA_KEY_TYPE,
        C.CKA_VALUE_LEN,
        C.CKA_ENCRYPT,
        C.CKA_DECRYPT,
        C.CKA_SENSITIVE,
        C.CKA_EXTRACTABLE,
      ]);
      return {
        label: value(C.CKA_LABEL)?.toString('utf8') ?? '',
        keyType: readUlong(value(C.CKA_KEY_TYPE)) === C.CKK_AES ? 'AES' : 'other',
        valueLength: readUlong(value(C.CKA_VALUE_LEN)),
        encrypt: readBool(value(C.CKA_ENCRYPT)),
        decrypt: readBool(value(C.CKA_DECRYPT)),
        sensitive: readBool(value(C.CKA_SENSITIVE)),
        extractable: readBool(value(C.CKA_EXTRACTABLE)),
        checkValue: this.checkValue(handle),
      };
    });
  }
}

process.once('message', (request: AdminRequest) => {
  const admin = new TokenAdmin();
  let response: AdminResponse;
  try {
    admin.open(request.module, request.tokenLabel, request.pin);
    response = { ok: true, results: request.operations.map((operation) => admin.run(operation)) };
  } catch (error) {
    const failure = error instanceof HsmError ? error : toHsmError(error, 'init');
    response = { ok: false, error: { kind: failure.kind, message: failure.message } };
  } finally {
    admin.close();
  }
  process.send?.(response, () => process.exit(0));
});
