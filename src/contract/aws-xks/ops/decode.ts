import { ProxyError } from '../../../errors/proxy-error.js';
import { decodedBase64Length, fromBase64 } from '../../../lib/base64.js';

/** Decodes a schema-validated Base64 field, rejecting it before decoding when it is larger than allowed. */
export function decodeBounded(text: string, field: string, maxBytes: number): Buffer {
  if (decodedBase64Length(text) > maxBytes) {
    throw new ProxyError('VALIDATION', `${field} is larger than the ${maxBytes} bytes this proxy accepts.`);
  }
  return fromBase64(text);
}

/** Decodes a field that must have one of a few exact lengths (IVs, tags). */
export function decodeExact(text: string, field: string, allowed: readonly number[]): Buffer {
  const bytes = fromBase64(text);
  if (!allowed.includes(bytes.length)) {
    throw new ProxyError('VALIDATION', `${field} must be ${allowed.join(' or ')} bytes.`);
  }
  return bytes;
}
