import { timingSafeEqual } from 'node:crypto';
import { ProxyError } from '../../../errors/proxy-error.js';
import { admitCryptoCall, noteHsm, type XksCall, type XksDependencies } from '../context.js';
import { buildHsmAad, ciphertextDataIntegrityValue, encodeCiphertextMetadata } from '../framing.js';
import type { components } from '../openapi-types.js';
import { decodeBounded } from './decode.js';

type Request = components['schemas']['EncryptRequest'];
type Response = components['schemas']['EncryptResponse'];

export async function encrypt(call: XksCall, request: Request, deps: XksDependencies): Promise<Response> {
  const key = await admitCryptoCall(call, deps, 'xks:Encrypt', request);
  const version = deps.lifecycle.encryptVersion(call.store.name, key);
  const plaintext = decodeBounded(request.plaintext, 'plaintext', deps.limits.maxPlaintextBytes);
  const aad = request.additionalAuthenticatedData === undefined ? undefined : decodeBounded(request.additionalAuthenticatedData, 'additionalAuthenticatedData', deps.limits.maxAadBytes);
  try {
    call.audit.keyVersion = version;
    const metadata = encodeCiphertextMetadata(version);
    const hsmAad = buildHsmAad(aad, metadata);
    const sealed = await deps.keys.encrypt(key, version, hsmAad, plaintext, call.deadline);
    noteHsm(call, sealed);
    const response: Response = {
      ciphertext: sealed.ciphertext.toString('base64'),
      ciphertextMetadata: metadata.toString('base64'),
      initializationVector: sealed.iv.toString('base64'),
      authenticationTag: sealed.tag.toString('base64'),
    };
    if (request.ciphertextDataIntegrityValueAlgorithm !== undefined) {
      // Appendix C: hash first, then prove the output decrypts, so a later bit flip cannot hide behind a matching CDIV.
      const cdiv = ciphertextDataIntegrityValue({ aad, metadata, iv: sealed.iv, ciphertext: sealed.ciphertext, tag: sealed.tag });
      await verifyRoundTrip(call, () => deps.keys.decrypt(key, version, hsmAad, sealed.iv, sealed.ciphertext, sealed.tag, call.deadline), plaintext);
      response.ciphertextDataIntegrityValue = cdiv.toString('base64');
    }
    return response;
  } finally {
    plaintext.fill(0);
  }
}

/**
 * Proves the fresh ciphertext decrypts to the plaintext. A key that cannot
 * decrypt (encrypt-only) cannot give that proof: InvalidKeyUsageException, as the
 * public XKS test client expects. Our own output failing GCM is an internal fault.
 */
async function verifyRoundTrip(call: XksCall, decrypt: () => Promise<{ plaintext: Buffer }>, expected: Buffer): Promise<void> {
  let roundTrip: Buffer;
  try {
    ({ plaintext: roundTrip } = await decrypt());
  } catch (error) {
    if (error instanceof ProxyError && error.code !== 'INVALID_CIPHERTEXT') throw error;
    call.audit.reason = 'encrypt output failed to decrypt';
    throw new ProxyError('INTERNAL', 'The encryption could not be verified by a decryption.', { cause: error });
  }
  const same = roundTrip.length === expected.length && timingSafeEqual(roundTrip, expected);
  roundTrip.fill(0);
  if (!same) {
    call.audit.reason = 'round trip returned different plaintext';
    throw new ProxyError('INTERNAL', 'The encryption could not be verified by a decryption.');
  }
}
