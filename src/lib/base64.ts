/**
 * Strict standard Base64 (RFC 4648 section 4): length a multiple of four, padding
 * only at the end. Node's decoder silently skips bad characters, so input is
 * checked first; a loop beats a regex on 10 KB strings.
 */
export function isCanonicalBase64(text: string): boolean {
  const length = text.length;
  if (length % 4 !== 0) return false;
  let padding = 0;
  if (length > 0 && text.charCodeAt(length - 1) === 0x3d) padding = text.charCodeAt(length - 2) === 0x3d ? 2 : 1;
  const end = length - padding;
  for (let i = 0; i < end; i++) {
    if (sextet(text.charCodeAt(i)) < 0) return false;
  }
  // Canonical: the bits the padding leaves over are zero ("QR==" would decode like "QQ==").
  if (padding === 2) return (sextet(text.charCodeAt(end - 1)) & 0x0f) === 0;
  if (padding === 1) return (sextet(text.charCodeAt(end - 1)) & 0x03) === 0;
  return true;
}

/** The 6-bit value of a Base64 character, or -1. */
function sextet(c: number): number {
  if (c >= 0x41 && c <= 0x5a) return c - 0x41;
  if (c >= 0x61 && c <= 0x7a) return c - 0x61 + 26;
  if (c >= 0x30 && c <= 0x39) return c - 0x30 + 52;
  if (c === 0x2b) return 62;
  if (c === 0x2f) return 63;
  return -1;
}

/** Decoded length of canonical Base64 without decoding it. */
export function decodedBase64Length(text: string): number {
  if (text.length === 0) return 0;
  let padding = 0;
  if (text.endsWith('==')) padding = 2;
  else if (text.endsWith('=')) padding = 1;
  return (text.length / 4) * 3 - padding;
}

export function fromBase64(text: string): Buffer {
  return Buffer.from(text, 'base64');
}

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}
