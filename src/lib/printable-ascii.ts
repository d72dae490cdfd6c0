/** XKS requires error messages of printable ASCII (0x20-0x7e) shorter than 512 characters. */
export const MAX_ERROR_MESSAGE_LENGTH = 511;

export function toPrintableAscii(text: string, maxLength = MAX_ERROR_MESSAGE_LENGTH): string {
  let out = '';
  for (const ch of text) {
    if (out.length >= maxLength) break;
    const code = ch.charCodeAt(0);
    out += code >= 0x20 && code <= 0x7e && ch.length === 1 ? ch : '?';
  }
  return out;
}
