import { createHash } from 'node:crypto';
import { ProxyError } from '../../errors/proxy-error.js';

/**
 * The XKS adapter's binary formats: the AAD handed to the HSM, the proxy's
 * ciphertextMetadata header, and the CDIV.
 */

/** The spec caps ciphertextMetadata at 20 bytes. */
export const MAX_CIPHERTEXT_METADATA_BYTES = 20;
/** The 2-byte length prefix caps AAD at 65,535 bytes. */
export const MAX_AAD_BYTES = 0xffff;

/**
 * Format 1 of hyok-proxy's ciphertextMetadata: [0x01, key version (uint16, big-endian)].
 * Decrypt reads the format byte first, so later formats can change the AAD
 * framing or add fields while old ciphertexts stay decryptable (spec, Encrypt).
 */
export const METADATA_FORMAT_V1 = 0x01;

export interface CiphertextMetadata {
  readonly format: number;
  readonly keyVersion: number;
}

export function encodeCiphertextMetadata(keyVersion: number): Buffer {
  if (!Number.isInteger(keyVersion) || keyVersion < 1 || keyVersion > 0xffff) throw new RangeError(`key version ${keyVersion} out of range`);
  const out = Buffer.alloc(3);
  out[0] = METADATA_FORMAT_V1;
  out.writeUInt16BE(keyVersion, 1);
  return out;
}

/**
 * Parses metadata from a decrypt request. Absent metadata means a ciphertext
 * made without it (another proxy, or none needed): key version 1, spec framing.
 */
export function decodeCiphertextMetadata(metadata: Buffer | undefined): CiphertextMetadata {
  if (metadata === undefined) return { format: 0, keyVersion: 1 };
  if (metadata.length === 3 && metadata[0] === METADATA_FORMAT_V1) {
    const keyVersion = metadata.readUInt16BE(1);
    if (keyVersion >= 1) return { format: METADATA_FORMAT_V1, keyVersion };
  }
  // Unknown or damaged metadata cannot have come from this proxy's encrypt: the ciphertext is invalid.
  throw new ProxyError(
    'INVALID_CIPHERTEXT',
    'The request was rejected because the specified ciphertext metadata is corrupted or not produced by this proxy.',
  );
}

/**
 * The AAD the HSM authenticates (spec, Encrypt, ciphertextMetadata):
 * 2-byte big-endian length of the AAD || AAD || 1-byte length of the metadata || metadata.
 * The lengths stop metadata passed as AAD (or the reverse) from decrypting.
 */
export function buildHsmAad(aad: Buffer | undefined, metadata: Buffer | undefined): Buffer {
  const aadLength = aad?.length ?? 0;
  const metadataLength = metadata?.length ?? 0;
  if (aadLength > MAX_AAD_BYTES) throw new RangeError('AAD longer than 65535 bytes');
  if (metadataLength > MAX_CIPHERTEXT_METADATA_BYTES) throw new RangeError('ciphertext metadata longer than 20 bytes');
  const out = Buffer.allocUnsafe(2 + aadLength + 1 + metadataLength);
  out.writeUInt16BE(aadLength, 0);
  if (aad !== undefined) aad.copy(out, 2);
  out[2 + aadLength] = metadataLength;
  if (metadata !== undefined) metadata.copy(out, 3 + aadLength);
  return out;
}

/** Spec Appendix C: SHA-256 over AAD || metadata || IV || ciphertext || tag (absent fields are empty). */
export function ciphertextDataIntegrityValue(parts: {
  aad: Buffer | undefined;
  metadata: Buffer | undefined;
  iv: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}): Buffer {
  const hash = createHash('sha256');
  if (parts.aad !== undefined) hash.update(parts.aad);
  if (parts.metadata !== undefined) hash.update(parts.metadata);
  return hash.update(parts.iv).update(parts.ciphertext).update(parts.tag).digest();
}
