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
    const c = text.charCodeAt(i);
    const ok =
      (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2f;
    if (!ok) return false;
  }
  return true;
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
