import { admitCryptoCall, noteHsm, type XksCall, type XksDependencies } from '../context.js';
import { buildHsmAad, decodeCiphertextMetadata, MAX_CIPHERTEXT_METADATA_BYTES } from '../framing.js';
import type { components } from '../openapi-types.js';
import { decodeBounded, decodeExact } from './decode.js';

type Request = components['schemas']['DecryptRequest'];
type Response = components['schemas']['DecryptResponse'];

export async function decrypt(call: XksCall, request: Request, deps: XksDependencies): Promise<Response> {
  const key = await admitCryptoCall(call, deps, 'xks:Decrypt', request);
  const ciphertext = decodeBounded(request.ciphertext, 'ciphertext', deps.limits.maxPlaintextBytes);
  const iv = decodeExact(request.initializationVector, 'initializationVector', [12, 16]);
  const tag = decodeExact(request.authenticationTag, 'authenticationTag', [16]);
  const aad = request.additionalAuthenticatedData === undefined ? undefined : decodeBounded(request.additionalAuthenticatedData, 'additionalAuthenticatedData', deps.limits.maxAadBytes);
  const metadata = request.ciphertextMetadata === undefined ? undefined : decodeBounded(request.ciphertextMetadata, 'ciphertextMetadata', MAX_CIPHERTEXT_METADATA_BYTES);
  const { keyVersion } = decodeCiphertextMetadata(metadata);
  call.audit.keyVersion = keyVersion;
  const { alert } = deps.lifecycle.checkDecrypt(call.store.name, key, keyVersion);
  if (alert) {
    call.audit.alert = true;
    call.audit.reason = 'decrypt with a compromised key under an approved override';
  }
  const opened = await deps.keys.decrypt(key, keyVersion, buildHsmAad(aad, metadata), iv, ciphertext, tag, call.deadline);
  noteHsm(call, opened);
  const plaintext = opened.plaintext.toString('base64');
  opened.plaintext.fill(0);
  return { plaintext };
}
