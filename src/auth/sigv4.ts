// AWS Signature Version 4 verifier for requests AWS KMS sends to an XKS proxy
// (XKS proxy API spec, Appendix A). Pure and synchronous: the caller supplies
// the raw request pieces and a secret lookup, and gets a result back. It never
// throws on hostile input.

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export interface SigV4Request {
  method: string;
  /** Raw request path as received (still percent-encoded), without the query string. */
  path: string;
  /** Raw query string without the leading '?', '' if none. */
  query: string;
  /**
   * Node's IncomingMessage.rawHeaders: [name, value, name, value, ...].
   * Values are treated as byte strings, as Node decodes them (latin1); a value
   * holding characters above U+00FF cannot come from Node and is UTF-8 encoded.
   */
  rawHeaders: readonly string[];
  /** Exact raw body bytes. */
  body: Buffer;
}

/** Returns the secret access key for an access key id, or undefined when unknown. */
export type SecretLookup = (accessKeyId: string) => string | undefined;

export interface SigV4VerifierOptions {
  service: string;
  maxClockSkewMs: number;
  now?: () => number;
  allowedRegions?: ReadonlySet<string>;
  signingKeyCacheSize?: number;
}

export type SigV4FailureReason =
  | 'missing-authorization'
  | 'malformed-authorization'
  | 'unsupported-algorithm'
  | 'malformed-credential-scope'
  | 'wrong-service'
  | 'region-not-allowed'
  | 'missing-signed-header'
  | 'host-not-signed'
  | 'date-not-signed'
  | 'missing-date'
  | 'malformed-date'
  | 'scope-date-mismatch'
  | 'clock-skew'
  | 'unknown-access-key'
  | 'payload-hash-mismatch'
  | 'signature-mismatch';

export type SigV4Result =
  | { ok: true; accessKeyId: string; region: string; signedHeaders: readonly string[]; requestTime: Date }
  | { ok: false; reason: SigV4FailureReason; detail: string };

type SigV4Failure = Extract<SigV4Result, { ok: false }>;

export const SIGV4_ALGORITHM = 'AWS4-HMAC-SHA256';
const SCOPE_TERMINATOR = 'aws4_request';
const DEFAULT_CACHE_SIZE = 256;
// Used only so unknown access key ids cost the same work as known ones.
const DUMMY_SECRET = 'hyok-proxy/sigv4/dummy-secret-for-unknown-access-key-ids';

// --- percent-encoding tables -------------------------------------------------

const UNRESERVED = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || '-_.~'.includes(ch)) {
    UNRESERVED[c] = 1;
  }
}
const PCT: readonly string[] = Array.from({ length: 256 }, (_, b) => '%' + b.toString(16).toUpperCase().padStart(2, '0'));

// RFC 9110 tchar, restricted to lower case (SignedHeaders must be lower case).
const LOWER_TCHAR = new Uint8Array(128);
for (const ch of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") LOWER_TCHAR[ch.charCodeAt(0)] = 1;

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1; // also for NaN (past end of string)
}

function encodeByte(b: number): string {
  return b < 0x80 && UNRESERVED[b] === 1 ? String.fromCharCode(b) : (PCT[b] as string);
}

/**
 * AWS-style URI encoding: unreserved characters stay, every other UTF-8 byte
 * becomes %XX (upper case). With decodePercent, valid %XX escapes are decoded
 * first (a stray '%' is literal), which normalises escapes without a lossy
 * round trip through a string. Unchanged input is returned without copying.
 */
function awsEncode(s: string, decodePercent: boolean, keepSlash: boolean): string {
  let out = '';
  let runStart = 0;
  let i = 0;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c < 0x80 && (UNRESERVED[c] === 1 || (keepSlash && c === 0x2f))) {
      i++;
      continue;
    }
    if (runStart < i) out += s.slice(runStart, i);
    if (c === 0x25 && decodePercent) {
      const hi = hexValue(s.charCodeAt(i + 1));
      const lo = hexValue(s.charCodeAt(i + 2));
      if (hi >= 0 && lo >= 0) {
        out += encodeByte(hi * 16 + lo);
        i += 3;
        runStart = i;
        continue;
      }
    }
    if (c < 0x80) {
      out += PCT[c] as string;
      i++;
    } else {
      // Lone surrogates become U+FFFD via Buffer.from instead of throwing like encodeURIComponent.
      const cp = s.codePointAt(i) as number;
      const len = cp > 0xffff ? 2 : 1;
      for (const b of Buffer.from(s.slice(i, i + len), 'utf8')) out += PCT[b] as string;
      i += len;
    }
    runStart = i;
  }
  if (runStart === 0) return s;
  return runStart < s.length ? out + s.slice(runStart) : out;
}

/**
 * Canonical URI for non-S3 services: every path segment is encoded once more,
 * so '%20' on the wire becomes '%2520' (what the signer did to its own encoded
 * path). No '.'/'..' or empty-segment normalisation: the router rejects those.
 */
export function canonicalUri(rawPath: string): string {
  return rawPath.length === 0 ? '/' : awsEncode(rawPath, false, true);
}

/**
 * Canonical query string. '+' is a literal plus in SigV4, so only percent
 * escapes are decoded before re-encoding.
 */
export function canonicalQueryString(rawQuery: string): string {
  if (rawQuery.length === 0) return '';
  const pairs: Array<[string, string]> = [];
  for (const part of rawQuery.split('&')) {
    if (part.length === 0) continue;
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    pairs.push([awsEncode(name, true, false), awsEncode(value, true, false)]);
  }
  // Encoded strings are ASCII, so plain comparison is byte order.
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  let out = '';
  for (let i = 0; i < pairs.length; i++) {
    const p = pairs[i] as [string, string];
    out += (i === 0 ? '' : '&') + p[0] + '=' + p[1];
  }
  return out;
}

// --- header helpers ----------------------------------------------------------

function isHeaderWs(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

/** SigV4 "trimall": strip outer whitespace and collapse inner runs to one space. */
export function trimAll(v: string): string {
  let start = 0;
  let end = v.length;
  while (start < end && isHeaderWs(v.charCodeAt(start))) start++;
  while (end > start && isHeaderWs(v.charCodeAt(end - 1))) end--;
  let needsCollapse = false;
  for (let i = start; i < end; i++) {
    const c = v.charCodeAt(i);
    if (c === 0x20 ? isHeaderWs(v.charCodeAt(i + 1)) : isHeaderWs(c)) {
      needsCollapse = true;
      break;
    }
  }
  if (!needsCollapse) return start === 0 && end === v.length ? v : v.slice(start, end);
  let out = '';
  let runStart = start;
  let i = start;
  while (i < end) {
    if (!isHeaderWs(v.charCodeAt(i))) {
      i++;
      continue;
    }
    out += v.slice(runStart, i) + ' ';
    while (i < end && isHeaderWs(v.charCodeAt(i))) i++;
    runStart = i;
  }
  return out + v.slice(runStart, end);
}

function hasWideChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return true;
  return false;
}

/** One pass over rawHeaders: lower-cased name -> values in arrival order. */
function indexHeaders(rawHeaders: readonly string[]): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    const value = rawHeaders[i + 1] as string;
    const list = map.get(name);
    if (list === undefined) map.set(name, [value]);
    else list.push(value);
  }
  return map;
}

/**
 * Echoes a name-like value (region, service) only when it looks like one, so
 * that a misconfigured client putting a secret in the wrong field does not get
 * it written to the logs.
 */
function safeName(s: string): string {
  if (s.length === 0 || s.length > 64) return `(${s.length} chars, not shown)`;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d)) return `(${s.length} chars, not shown)`;
  }
  return s;
}

/** Access key ids are upper-case alphanumerics; anything else is fingerprinted, not echoed. */
function safeAccessKeyId(s: string): string {
  let plain = s.length >= 16 && s.length <= 128;
  for (let i = 0; plain && i < s.length; i++) {
    const c = s.charCodeAt(i);
    plain = (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39);
  }
  return plain ? s : `(sha256 ${sha256Hex(s).slice(0, 12)})`;
}

/** Printable ASCII only, bounded: details go to logs. */
function safeText(s: string, max = 64): string {
  let out = '';
  const n = Math.min(s.length, max);
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    out += c >= 0x20 && c <= 0x7e ? s[i] : '?';
  }
  return s.length > max ? out + '...' : out;
}

function fail(reason: SigV4FailureReason, detail: string): SigV4Failure {
  return { ok: false, reason, detail };
}

// --- Authorization header ----------------------------------------------------

export interface ParsedAuthorization {
  ok: true;
  accessKeyId: string;
  scopeDate: string;
  region: string;
  service: string;
  signedHeadersRaw: string;
  signedHeaders: string[];
  signature: string;
}

function isVisibleAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

function isDigits(s: string, start: number, len: number): boolean {
  for (let i = start; i < start + len; i++) {
    const c = s.charCodeAt(i);
    if (!(c >= 0x30 && c <= 0x39)) return false;
  }
  return true;
}

function isHex64(s: string): boolean {
  if (s.length !== 64) return false;
  for (let i = 0; i < 64; i++) if (hexValue(s.charCodeAt(i)) < 0) return false;
  return true;
}

function skipSpaces(s: string): string {
  let i = 0;
  while (i < s.length && (s.charCodeAt(i) === 0x20 || s.charCodeAt(i) === 0x09)) i++;
  return i === 0 ? s : s.slice(i);
}

export function parseAuthorization(header: string): ParsedAuthorization | SigV4Failure {
  const value = trimAll(header);
  const sp = value.indexOf(' ');
  // The scheme is deliberately not echoed: a foreign scheme's token may be a credential.
  if ((sp < 0 ? value : value.slice(0, sp)) !== SIGV4_ALGORITHM) {
    return fail('unsupported-algorithm', `algorithm is not ${SIGV4_ALGORITHM}`);
  }
  if (sp < 0) return fail('malformed-authorization', 'no components after algorithm');

  const parts = value.slice(sp + 1).split(',', 4);
  if (parts.length !== 3) return fail('malformed-authorization', 'expected exactly 3 components');
  let credential: string | undefined;
  let signedHeadersRaw: string | undefined;
  let signature: string | undefined;
  for (const rawPart of parts) {
    const part = skipSpaces(rawPart);
    const eq = part.indexOf('=');
    if (eq <= 0) return fail('malformed-authorization', 'component without name=value');
    const name = part.slice(0, eq);
    const v = part.slice(eq + 1);
    if (name === 'Credential') {
      if (credential !== undefined) return fail('malformed-authorization', 'duplicate Credential');
      credential = v;
    } else if (name === 'SignedHeaders') {
      if (signedHeadersRaw !== undefined) return fail('malformed-authorization', 'duplicate SignedHeaders');
      signedHeadersRaw = v;
    } else if (name === 'Signature') {
      if (signature !== undefined) return fail('malformed-authorization', 'duplicate Signature');
      signature = v;
    } else {
      return fail('malformed-authorization', 'unknown component');
    }
  }
  // Three distinct known names in three parts means all are set.
  if (credential === undefined || signedHeadersRaw === undefined || signature === undefined) {
    return fail('malformed-authorization', 'missing component');
  }
  if (!isHex64(signature)) return fail('malformed-authorization', 'Signature must be 64 hex characters');

  const scope = credential.split('/', 6);
  if (scope.length !== 5) return fail('malformed-credential-scope', 'Credential must have 5 parts');
  for (const p of scope) {
    if (p.length === 0 || !isVisibleAscii(p)) {
      return fail('malformed-credential-scope', 'Credential parts must be non-empty visible ASCII');
    }
  }
  const [accessKeyId, scopeDate, region, service, terminator] = scope as [string, string, string, string, string];
  if (terminator !== SCOPE_TERMINATOR) return fail('malformed-credential-scope', `Credential must end in ${SCOPE_TERMINATOR}`);
  if (scopeDate.length !== 8 || !isDigits(scopeDate, 0, 8)) {
    return fail('malformed-credential-scope', 'Credential date must be YYYYMMDD');
  }

  if (signedHeadersRaw.length === 0) return fail('malformed-authorization', 'SignedHeaders is empty');
  const signedHeaders = signedHeadersRaw.split(';');
  const seen = new Set<string>();
  for (const h of signedHeaders) {
    if (h.length === 0) return fail('malformed-authorization', 'SignedHeaders has an empty name');
    for (let i = 0; i < h.length; i++) {
      const c = h.charCodeAt(i);
      if (c >= 0x80 || LOWER_TCHAR[c] !== 1) {
        return fail('malformed-authorization', 'SignedHeaders names must be lower-case tokens');
      }
    }
    if (seen.has(h)) return fail('malformed-authorization', `SignedHeaders lists ${safeText(h, 40)} twice`);
    seen.add(h);
  }
  if (!seen.has('host')) return fail('host-not-signed', 'SignedHeaders does not include host');
  if (!seen.has('x-amz-date')) return fail('date-not-signed', 'SignedHeaders does not include x-amz-date');

  return { ok: true, accessKeyId, scopeDate, region, service, signedHeadersRaw, signedHeaders, signature };
}

// --- dates -------------------------------------------------------------------

function readNum(s: string, start: number, len: number): number {
  let n = 0;
  for (let i = start; i < start + len; i++) {
    const c = s.charCodeAt(i);
    if (!(c >= 0x30 && c <= 0x39)) return -1;
    n = n * 10 + (c - 0x30);
  }
  return n;
}

/** Parses basic ISO 8601 'YYYYMMDDTHHMMSSZ'; undefined when malformed or out of range. */
export function parseAmzDate(s: string): Date | undefined {
  if (s.length !== 16 || s.charCodeAt(8) !== 0x54 /* T */ || s.charCodeAt(15) !== 0x5a /* Z */) return undefined;
  const year = readNum(s, 0, 4);
  const month = readNum(s, 4, 2);
  const day = readNum(s, 6, 2);
  const hour = readNum(s, 9, 2);
  const minute = readNum(s, 11, 2);
  const second = readNum(s, 13, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59) {
    return undefined;
  }
  if (second < 0 || second > 59) return undefined;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const daysInMonth = month === 2 ? (leap ? 29 : 28) : month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
  if (day > daysInMonth) return undefined;
  // setUTCFullYear, unlike Date.UTC, does not map years 0-99 to 1900-1999.
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, 0);
  return d;
}

// --- crypto ------------------------------------------------------------------

function sha256Hex(data: string | Buffer, encoding: 'utf8' | 'latin1' = 'utf8'): string {
  const h = createHash('sha256');
  if (typeof data === 'string') h.update(data, encoding);
  else h.update(data);
  return h.digest('hex');
}

export function deriveSigningKey(secret: string, date: string, region: string, service: string): Buffer {
  const kDate = createHmac('sha256', 'AWS4' + secret).update(date).digest();
  const kRegion = createHmac('sha256', kDate).update(region).digest();
  const kService = createHmac('sha256', kRegion).update(service).digest();
  return createHmac('sha256', kService).update(SCOPE_TERMINATOR).digest();
}

// --- verifier ----------------------------------------------------------------

export class SigV4Verifier {
  readonly #service: string;
  readonly #maxClockSkewMs: number;
  readonly #now: () => number;
  readonly #allowedRegions: ReadonlySet<string> | undefined;
  readonly #cacheSize: number;
  readonly #keyCache = new Map<string, Buffer>();

  constructor(options: SigV4VerifierOptions) {
    if (typeof options.service !== 'string' || options.service.length === 0) {
      throw new TypeError('SigV4Verifier: service must be a non-empty string');
    }
    if (!Number.isFinite(options.maxClockSkewMs) || options.maxClockSkewMs < 0) {
      throw new RangeError('SigV4Verifier: maxClockSkewMs must be a finite number >= 0');
    }
    const cacheSize = options.signingKeyCacheSize ?? DEFAULT_CACHE_SIZE;
    if (!Number.isSafeInteger(cacheSize) || cacheSize < 0) {
      throw new RangeError('SigV4Verifier: signingKeyCacheSize must be an integer >= 0');
    }
    this.#service = options.service;
    this.#maxClockSkewMs = options.maxClockSkewMs;
    this.#now = options.now ?? Date.now;
    this.#allowedRegions = options.allowedRegions;
    this.#cacheSize = cacheSize;
  }

  /** Number of cached signing keys (for tests and metrics). */
  get signingKeyCacheEntries(): number {
    return this.#keyCache.size;
  }

  verify(request: SigV4Request, lookupSecret: SecretLookup): SigV4Result {
    const headers = indexHeaders(request.rawHeaders);

    const authValues = headers.get('authorization');
    if (authValues === undefined) return fail('missing-authorization', 'no Authorization header');
    if (authValues.length !== 1) return fail('malformed-authorization', 'more than one Authorization header');
    const auth = parseAuthorization(authValues[0] as string);
    if (!auth.ok) return auth;
    const { accessKeyId, scopeDate, region, service } = auth;

    if (service !== this.#service) return fail('wrong-service', `credential scope service ${safeName(service)}`);
    if (this.#allowedRegions !== undefined && !this.#allowedRegions.has(region)) {
      return fail('region-not-allowed', `credential scope region ${safeName(region)}`);
    }

    const dateValues = headers.get('x-amz-date');
    if (dateValues === undefined) return fail('missing-date', 'no X-Amz-Date header');
    if (dateValues.length !== 1) return fail('malformed-date', 'more than one X-Amz-Date header');
    const amzDate = trimAll(dateValues[0] as string);
    const requestTime = parseAmzDate(amzDate);
    if (requestTime === undefined) return fail('malformed-date', 'X-Amz-Date is not YYYYMMDDTHHMMSSZ');
    if (amzDate.slice(0, 8) !== scopeDate) {
      return fail('scope-date-mismatch', `credential scope date ${scopeDate} differs from X-Amz-Date ${amzDate}`);
    }
    const skew = this.#now() - requestTime.getTime();
    // Written so that a NaN clock fails closed.
    if (!(Math.abs(skew) <= this.#maxClockSkewMs)) {
      return fail('clock-skew', `X-Amz-Date ${amzDate} is ${Math.round(skew / 1000)}s off server time`);
    }

    // Canonical headers in SignedHeaders order, which is the order the signer used.
    let canonicalHeaders = '';
    // latin1 reproduces the bytes Node received (see SigV4Request.rawHeaders);
    // anything wider must go out as UTF-8, since latin1 would truncate it.
    let needsUtf8 = hasWideChar(request.method);
    for (const name of auth.signedHeaders) {
      const values = headers.get(name);
      if (values === undefined) return fail('missing-signed-header', `signed header ${safeText(name, 40)} is absent`);
      let joined = trimAll(values[0] as string);
      for (let i = 1; i < values.length; i++) joined += ',' + trimAll(values[i] as string);
      if (!needsUtf8) needsUtf8 = hasWideChar(joined);
      canonicalHeaders += name + ':' + joined + '\n';
    }

    const payloadHash = sha256Hex(request.body);
    const declared = headers.get('x-amz-content-sha256');
    if (declared !== undefined) {
      const v = declared.length === 1 ? trimAll(declared[0] as string) : '';
      if (v === 'UNSIGNED-PAYLOAD') return fail('payload-hash-mismatch', 'UNSIGNED-PAYLOAD is not accepted');
      if (v !== payloadHash) return fail('payload-hash-mismatch', 'X-Amz-Content-Sha256 does not match the body');
    }

    const canonicalRequest =
      request.method + '\n' +
      canonicalUri(request.path) + '\n' +
      canonicalQueryString(request.query) + '\n' +
      canonicalHeaders + '\n' +
      auth.signedHeadersRaw + '\n' +
      payloadHash;
    const stringToSign =
      SIGV4_ALGORITHM + '\n' +
      amzDate + '\n' +
      scopeDate + '/' + region + '/' + service + '/' + SCOPE_TERMINATOR + '\n' +
      sha256Hex(canonicalRequest, needsUtf8 ? 'utf8' : 'latin1');

    const secret = lookupSecret(accessKeyId);
    // An empty secret would make signatures forgeable; treat it as unconfigured.
    const known = typeof secret === 'string' && secret.length > 0;
    const signingKey = known
      ? this.#signingKey(accessKeyId, secret, scopeDate, region, service)
      : this.#signingKey('', DUMMY_SECRET, scopeDate, region, service);
    const computed = createHmac('sha256', signingKey).update(stringToSign).digest();
    const supplied = Buffer.from(auth.signature, 'hex'); // 32 bytes: validated as 64 hex chars
    const match = timingSafeEqual(computed, supplied);

    if (!known) return fail('unknown-access-key', `unknown access key id ${safeAccessKeyId(accessKeyId)}`);
    if (!match) return fail('signature-mismatch', `signature does not match for access key id ${safeAccessKeyId(accessKeyId)}`);
    return { ok: true, accessKeyId, region, signedHeaders: auth.signedHeaders, requestTime };
  }

  #signingKey(accessKeyId: string, secret: string, date: string, region: string, service: string): Buffer {
    if (this.#cacheSize === 0) return deriveSigningKey(secret, date, region, service);
    // Scope parts never contain '/', so the key is unambiguous; hashing the
    // secret keeps it out of the key and makes a rotated secret miss.
    const cacheKey = accessKeyId + '/' + sha256Hex(secret) + '/' + date + '/' + region + '/' + service;
    let key = this.#keyCache.get(cacheKey);
    if (key === undefined) {
      key = deriveSigningKey(secret, date, region, service);
      if (this.#keyCache.size >= this.#cacheSize) {
        const oldest = this.#keyCache.keys().next();
        if (oldest.done !== true) this.#keyCache.delete(oldest.value);
      }
      this.#keyCache.set(cacheKey, key);
    }
    return key;
  }
}
