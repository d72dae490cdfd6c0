import pkcs11js from 'pkcs11js';

/** CK_ULONG attributes arrive as native-endian bytes (8 on 64-bit Linux). */
export function readUlong(value: Buffer | undefined): number | undefined {
  if (value === undefined || value.length === 0) return undefined;
  return value.length >= 8 ? Number(value.readBigUInt64LE(0)) : value.readUInt32LE(0);
}

export function readBool(value: Buffer | undefined): boolean {
  return value !== undefined && value.length > 0 && value[0] !== 0;
}

/** CKA_CHECK_VALUE as hex; undefined where the token does not support it (it is optional in PKCS#11 2.40). */
export function readCheckValue(p11: pkcs11js.PKCS11, session: Buffer, key: Buffer): string | undefined {
  try {
    const [attr] = p11.C_GetAttributeValue(session, key, [{ type: pkcs11js.CKA_CHECK_VALUE }]);
    const value = attr?.value as Buffer | undefined;
    return value !== undefined && value.length > 0 ? value.toString('hex') : undefined;
  } catch {
    return undefined;
  }
}

/** Reads several attributes at once and returns a lookup by attribute type. */
export function readAttributes(p11: pkcs11js.PKCS11, session: Buffer, key: Buffer, types: readonly number[]): (type: number) => Buffer | undefined {
  const attrs = p11.C_GetAttributeValue(session, key, types.map((type) => ({ type })));
  return (type) => attrs.find((attr) => attr.type === type)?.value as Buffer | undefined;
}
