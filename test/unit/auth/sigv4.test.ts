import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SigV4Verifier, canonicalQueryString, canonicalUri, parseAmzDate, trimAll } from '../../../src/auth/sigv4.js';
import type { SecretLookup, SigV4Request, SigV4Result, SigV4VerifierOptions } from '../../../src/auth/sigv4.js';

// --- fixtures ------------------------------------------------------------------

const SERVICE = 'kms-xks-proxy';
const REGION = 'us-east-1';
const AKID = 'XKSPROXYTESTACCESSKEYID2';
const SECRET = 'Vw2h9+7Qmq3dC0hS1mJ7pX2y8a/6tQy5zW0lKcB4eRk=';
const AKID_2 = 'XKSPROXYSECONDACCESSKEY7';
const SECRET_2 = 'b0T0l2S7nq1xYc9dWm+UeF3pR8kZ4aH6vJ/gQy2sLtE=';
const SIGN_TIME = new Date('2024-05-14T12:34:56Z');
const HOST = 'xks.example.com:8443';
const PATH = '/prefix/kms/xks/v1/keys/key-1/encrypt';
const BODY = Buffer.from(
  JSON.stringify({
    requestMetadata: { awsPrincipalArn: 'arn:aws:iam::123456789012:user/alice', kmsOperation: 'Encrypt', kmsRequestId: 'r-1' },
    plaintext: 'BODY-MARKER-aGVsbG8=',
    encryptionAlgorithm: 'AES_GCM',
  }),
);

const lookup: SecretLookup = (id) => (id === AKID ? SECRET : undefined);

interface SignSpec {
  accessKeyId?: string;
  secret?: string;
  region?: string;
  service?: string;
  date?: Date;
  method?: string;
  /** Raw path as it would appear on the wire. */
  path?: string;
  /** Query as the signer sees it (decoded). */
  query?: Record<string, string | string[]>;
  /** Raw query string to put in the SigV4Request; required when query is set. */
  rawQuery?: string;
  /** Headers to sign besides host and x-amz-date (lower-case names). */
  headers?: Record<string, string>;
  host?: string;
  body?: Buffer;
  applyChecksum?: boolean;
}

function titleCase(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_m, dash: string, ch: string) => dash + ch.toUpperCase());
}

/** Signs with the independent smithy signer and returns the request as the proxy would receive it. */
async function signRequest(spec: SignSpec = {}): Promise<SigV4Request> {
  const signer = new SignatureV4({
    service: spec.service ?? SERVICE,
    region: spec.region ?? REGION,
    credentials: { accessKeyId: spec.accessKeyId ?? AKID, secretAccessKey: spec.secret ?? SECRET },
    sha256: Sha256,
    applyChecksum: spec.applyChecksum ?? false,
  });
  const body = spec.body ?? BODY;
  const host = spec.host ?? HOST;
  const signed = await signer.sign(
    {
      method: spec.method ?? 'POST',
      protocol: 'https:',
      hostname: host,
      path: spec.path ?? PATH,
      query: spec.query ?? {},
      headers: { host, ...spec.headers },
      body,
    },
    { signingDate: spec.date ?? SIGN_TIME },
  );
  const rawHeaders: string[] = [];
  for (const [name, value] of Object.entries(signed.headers)) rawHeaders.push(titleCase(name), value);
  return { method: spec.method ?? 'POST', path: spec.path ?? PATH, query: spec.rawQuery ?? '', rawHeaders, body };
}

function verifier(options: Partial<SigV4VerifierOptions> = {}): SigV4Verifier {
  return new SigV4Verifier({ service: SERVICE, maxClockSkewMs: 300_000, now: () => SIGN_TIME.getTime(), ...options });
}

function headerValues(req: SigV4Request, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    if ((req.rawHeaders[i] as string).toLowerCase() === name) out.push(req.rawHeaders[i + 1] as string);
  }
  return out;
}

function header(req: SigV4Request, name: string): string {
  const values = headerValues(req, name);
  assert.equal(values.length, 1, `expected exactly one ${name} header`);
  return values[0] as string;
}

function withoutHeader(req: SigV4Request, name: string): SigV4Request {
  const rawHeaders: string[] = [];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    if ((req.rawHeaders[i] as string).toLowerCase() !== name) rawHeaders.push(req.rawHeaders[i] as string, req.rawHeaders[i + 1] as string);
  }
  return { ...req, rawHeaders };
}

/** Replaces every occurrence of a header by a single new one. */
function withHeader(req: SigV4Request, name: string, value: string): SigV4Request {
  const base = withoutHeader(req, name);
  return { ...base, rawHeaders: [...base.rawHeaders, titleCase(name), value] };
}

function withExtraHeaders(req: SigV4Request, ...pairs: string[]): SigV4Request {
  return { ...req, rawHeaders: [...req.rawHeaders, ...pairs] };
}

function signatureOf(req: SigV4Request): string {
  const m = /Signature=([0-9a-f]{64})$/.exec(header(req, 'authorization'));
  assert.ok(m, 'smithy Authorization header ends with the signature');
  return m[1] as string;
}

function credentialOf(req: SigV4Request): string {
  const m = /Credential=([^,]+),/.exec(header(req, 'authorization'));
  assert.ok(m);
  return m[1] as string;
}

function expectOk(result: SigV4Result): Extract<SigV4Result, { ok: true }> {
  if (!result.ok) assert.fail(`expected ok, got ${result.reason}: ${result.detail}`);
  return result;
}

function expectFail(result: SigV4Result, reason: string): Extract<SigV4Result, { ok: false }> {
  if (result.ok) assert.fail(`expected ${reason}, got ok`);
  assert.equal(result.reason, reason, result.detail);
  return result;
}

// --- valid requests --------------------------------------------------------------

describe('SigV4Verifier: valid signatures', () => {
  it('accepts the KMS form (SignedHeaders=host;x-amz-date) and reports the identity', async () => {
    const req = await signRequest();
    assert.match(
      header(req, 'authorization'),
      /^AWS4-HMAC-SHA256 Credential=XKSPROXYTESTACCESSKEYID2\/20240514\/us-east-1\/kms-xks-proxy\/aws4_request, SignedHeaders=host;x-amz-date, Signature=[0-9a-f]{64}$/,
    );
    const result = expectOk(verifier().verify(req, lookup));
    assert.equal(result.accessKeyId, AKID);
    assert.equal(result.region, REGION);
    assert.deepEqual(result.signedHeaders, ['host', 'x-amz-date']);
    assert.equal(result.requestTime.getTime(), SIGN_TIME.getTime());
  });

  it('accepts curl --aws-sigv4 style content-type;host;x-amz-date', async () => {
    const req = await signRequest({ headers: { 'content-type': 'application/json' } });
    const result = expectOk(verifier().verify(req, lookup));
    assert.deepEqual(result.signedHeaders, ['content-type', 'host', 'x-amz-date']);
  });

  it('accepts an extra arbitrary signed header', async () => {
    const req = await signRequest({ headers: { 'x-custom-trace': 'trace-123', 'content-type': 'application/json' } });
    const result = expectOk(verifier().verify(req, lookup));
    assert.deepEqual(result.signedHeaders, ['content-type', 'host', 'x-amz-date', 'x-custom-trace']);
    // And the value really is covered.
    expectFail(verifier().verify(withHeader(req, 'x-custom-trace', 'trace-124'), lookup), 'signature-mismatch');
  });

  it('trims header values and collapses inner whitespace runs', async () => {
    const req = await signRequest({ headers: { 'x-spaced': 'a b c' } });
    const spaced = withHeader(req, 'x-spaced', ' \t a  \t b    c \t');
    expectOk(verifier().verify(spaced, lookup));
    expectFail(verifier().verify(withHeader(req, 'x-spaced', 'a bc'), lookup), 'signature-mismatch');
  });

  it('joins multiple values of a signed header with commas, in arrival order', async () => {
    const req = await signRequest({ headers: { 'x-multi': 'one,two three' } });
    const base = withoutHeader(req, 'x-multi');
    expectOk(verifier().verify(withExtraHeaders(base, 'X-Multi', ' one ', 'x-multi', 'two   three'), lookup));
    expectFail(verifier().verify(withExtraHeaders(base, 'x-multi', 'two three', 'X-Multi', 'one'), lookup), 'signature-mismatch');
  });

  it('matches header names case-insensitively', async () => {
    const req = await signRequest({ headers: { 'content-type': 'application/json' } });
    const shouted = { ...req, rawHeaders: req.rawHeaders.map((v, i) => (i % 2 === 0 ? v.toUpperCase() : v)) };
    expectOk(verifier().verify(shouted, lookup));
  });

  it('accepts an upper-case hex signature', async () => {
    const req = await signRequest();
    const sig = signatureOf(req);
    const upper = withHeader(req, 'authorization', header(req, 'authorization').replace(sig, sig.toUpperCase()));
    assert.notEqual(sig, sig.toUpperCase());
    expectOk(verifier().verify(upper, lookup));
  });

  it('tolerates no or extra whitespace after the commas', async () => {
    const req = await signRequest();
    const auth = header(req, 'authorization');
    expectOk(verifier().verify(withHeader(req, 'authorization', auth.replaceAll(', ', ',')), lookup));
    expectOk(verifier().verify(withHeader(req, 'authorization', auth.replaceAll(', ', ',   ')), lookup));
    expectOk(verifier().verify(withHeader(req, 'authorization', auth.replaceAll(', ', ',\t')), lookup));
  });

  it('treats header values as the bytes Node received (latin1-decoded UTF-8)', async () => {
    const req = await signRequest({ headers: { 'x-note': 'café ሴ' } });
    const asNodeSeesIt = withHeader(req, 'x-note', Buffer.from('café ሴ', 'utf8').toString('latin1'));
    expectOk(verifier().verify(asNodeSeesIt, lookup));
    // A caller passing already-decoded Unicode above U+00FF is UTF-8 encoded.
    expectOk(verifier().verify(req, lookup));
  });

  it('double-encodes the path like the signer does for non-S3 services', async () => {
    for (const path of ['/prefix/kms/xks/v1/keys/key%20one/encrypt', "/p/a:b@c=d!e(f)*$'+,;", '/p/%41%2f', '/']) {
      const req = await signRequest({ path });
      expectOk(verifier().verify(req, lookup));
    }
  });

  it('accepts an empty body', async () => {
    const req = await signRequest({ body: Buffer.alloc(0) });
    expectOk(verifier().verify(req, lookup));
  });

  it('accepts a leap day', async () => {
    const date = new Date('2024-02-29T23:59:59Z');
    const req = await signRequest({ date });
    assert.equal(header(req, 'x-amz-date'), '20240229T235959Z');
    expectOk(verifier({ now: () => date.getTime() }).verify(req, lookup));
  });
});

// Published vectors from the AWS SigV4 test suite, independent of smithy.
describe('SigV4Verifier: AWS test-suite vectors', () => {
  const suite = new SigV4Verifier({ service: 'service', maxClockSkewMs: 300_000, now: () => Date.parse('2015-08-30T12:36:00Z') });
  const suiteLookup: SecretLookup = (id) => (id === 'AKIDEXAMPLE' ? 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' : undefined);
  const vector = (method: string, path: string, query: string, signature: string): SigV4Request => ({
    method,
    path,
    query,
    body: Buffer.alloc(0),
    rawHeaders: [
      'Host', 'example.amazonaws.com',
      'X-Amz-Date', '20150830T123600Z',
      'Authorization',
      `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=${signature}`,
    ],
  });

  it('get-vanilla', () => {
    expectOk(suite.verify(vector('GET', '/', '', '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31'), suiteLookup));
  });
  it('get-vanilla-query-order-key-case', () => {
    const sig = 'b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500';
    expectOk(suite.verify(vector('GET', '/', 'Param2=value2&Param1=value1', sig), suiteLookup));
  });
  it('post-vanilla', () => {
    expectOk(suite.verify(vector('POST', '/', '', '5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b'), suiteLookup));
  });
  it('get-utf8', () => {
    expectOk(suite.verify(vector('GET', '/ሴ', '', '8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85'), suiteLookup));
  });
  it('a one-character change to a vector signature fails', () => {
    const sig = '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf30';
    expectFail(suite.verify(vector('GET', '/', '', sig), suiteLookup), 'signature-mismatch');
  });
});

// --- credentials -----------------------------------------------------------------

describe('SigV4Verifier: credentials and signing-key cache', () => {
  const twoKeys: SecretLookup = (id) => (id === AKID ? SECRET : id === AKID_2 ? SECRET_2 : undefined);

  it('verifies both an old and a new credential through the lookup', async () => {
    const v = verifier();
    const oldReq = await signRequest();
    const newReq = await signRequest({ accessKeyId: AKID_2, secret: SECRET_2 });
    assert.equal(expectOk(v.verify(oldReq, twoKeys)).accessKeyId, AKID);
    assert.equal(expectOk(v.verify(newReq, twoKeys)).accessKeyId, AKID_2);
  });

  it('rejects a signature made with the wrong secret', async () => {
    const req = await signRequest({ secret: SECRET_2 });
    expectFail(verifier().verify(req, lookup), 'signature-mismatch');
  });

  it('rejects an unknown access key id after asking the lookup for it', async () => {
    const asked: string[] = [];
    const req = await signRequest({ accessKeyId: 'UNKNOWNACCESSKEYID234567' });
    const result = verifier().verify(req, (id) => {
      asked.push(id);
      return undefined;
    });
    expectFail(result, 'unknown-access-key');
    assert.deepEqual(asked, ['UNKNOWNACCESSKEYID234567']);
  });

  it('treats an empty secret as unconfigured', async () => {
    // Signed with an empty secret, so the signature itself would match.
    const req = await signRequest({ secret: '' });
    expectFail(verifier().verify(req, () => ''), 'unknown-access-key');
  });

  it('stops accepting the old secret once it is rotated for the same access key id', async () => {
    const v = verifier();
    let current = SECRET;
    const rotating: SecretLookup = (id) => (id === AKID ? current : undefined);
    const oldReq = await signRequest({ secret: SECRET });
    const newReq = await signRequest({ secret: SECRET_2 });
    expectOk(v.verify(oldReq, rotating));
    assert.equal(v.signingKeyCacheEntries, 1);
    current = SECRET_2;
    expectFail(v.verify(oldReq, rotating), 'signature-mismatch');
    expectOk(v.verify(newReq, rotating));
    assert.equal(v.signingKeyCacheEntries, 2);
  });

  it('keeps the cache within its bound and stays correct after eviction', async () => {
    const secrets = new Map<string, string>();
    const reqs: SigV4Request[] = [];
    for (let i = 0; i < 5; i++) {
      const id = `XKSPROXYROTATIONKEY${'ABCDE'[i]}2345`;
      const secret = `secret-${i}-${'x'.repeat(40)}`;
      secrets.set(id, secret);
      reqs.push(await signRequest({ accessKeyId: id, secret }));
    }
    const v = verifier({ signingKeyCacheSize: 2 });
    for (let round = 0; round < 3; round++) {
      for (const req of reqs) {
        expectOk(v.verify(req, (id) => secrets.get(id)));
        assert.ok(v.signingKeyCacheEntries <= 2);
      }
    }
    assert.equal(v.signingKeyCacheEntries, 2);
  });

  it('works with caching disabled', async () => {
    const v = verifier({ signingKeyCacheSize: 0 });
    expectOk(v.verify(await signRequest(), lookup));
    assert.equal(v.signingKeyCacheEntries, 0);
  });

  it('does not let unknown access key ids fill the cache', async () => {
    const v = verifier({ signingKeyCacheSize: 4 });
    for (let i = 0; i < 10; i++) {
      const req = await signRequest({ accessKeyId: `XKSPROXYUNKNOWNKEY${i}ABCDEF` });
      expectFail(v.verify(req, lookup), 'unknown-access-key');
    }
    assert.equal(v.signingKeyCacheEntries, 1);
  });
});

// --- tampering -------------------------------------------------------------------

describe('SigV4Verifier: tampering', () => {
  it('rejects a tampered body', async () => {
    const req = await signRequest();
    const body = Buffer.from(req.body);
    const i = body.length - 3;
    body.writeUInt8(body.readUInt8(i) ^ 1, i);
    expectFail(verifier().verify({ ...req, body }, lookup), 'signature-mismatch');
  });

  it('rejects a tampered path', async () => {
    const req = await signRequest();
    expectFail(verifier().verify({ ...req, path: PATH.replace('encrypt', 'decrypt') }, lookup), 'signature-mismatch');
    expectFail(verifier().verify({ ...req, path: PATH.replace('key-1', 'key%2D1') }, lookup), 'signature-mismatch');
  });

  it('rejects a tampered signed header value', async () => {
    const req = await signRequest({ headers: { 'content-type': 'application/json' } });
    expectFail(verifier().verify(withHeader(req, 'content-type', 'text/plain'), lookup), 'signature-mismatch');
  });

  it('rejects a changed host', async () => {
    const req = await signRequest();
    expectFail(verifier().verify(withHeader(req, 'host', 'evil.example.com:8443'), lookup), 'signature-mismatch');
  });

  it('rejects a changed method, an added query or a duplicated signed header', async () => {
    const req = await signRequest();
    expectFail(verifier().verify({ ...req, method: 'PUT' }, lookup), 'signature-mismatch');
    // U+0150 would truncate to 'P' under latin1; it must not alias POST.
    expectFail(verifier().verify({ ...req, method: '\u0150OST' }, lookup), 'signature-mismatch');
    expectFail(verifier().verify({ ...req, query: 'x=1' }, lookup), 'signature-mismatch');
    expectFail(verifier().verify(withExtraHeaders(req, 'Host', HOST), lookup), 'signature-mismatch');
  });

  it('rejects a flipped signature bit', async () => {
    const req = await signRequest();
    const sig = signatureOf(req);
    const flipped = (parseInt(sig[0] as string, 16) ^ 1).toString(16) + sig.slice(1);
    const tampered = withHeader(req, 'authorization', header(req, 'authorization').replace(sig, flipped));
    expectFail(verifier().verify(tampered, lookup), 'signature-mismatch');
  });

  it('ignores changes to unsigned headers', async () => {
    const req = await signRequest();
    const changed = withExtraHeaders(
      req,
      'User-Agent', 'aws-kms-xks/1.0',
      'Content-Type', 'application/json',
      'Content-Length', String(req.body.length),
      'X-Amzn-Trace-Id', 'Root=1-abc',
    );
    expectOk(verifier().verify(changed, lookup));
  });
});

// --- clock -----------------------------------------------------------------------

describe('SigV4Verifier: clock skew', () => {
  const t = SIGN_TIME.getTime();
  const at = (ms: number): SigV4Verifier => verifier({ now: () => ms });

  it('accepts 4m59s in the past and in the future', async () => {
    const req = await signRequest();
    expectOk(at(t + 299_000).verify(req, lookup)); // request is 4m59s old
    expectOk(at(t - 299_000).verify(req, lookup)); // request is 4m59s ahead
  });

  it('accepts exactly the limit', async () => {
    const req = await signRequest();
    expectOk(at(t + 300_000).verify(req, lookup));
    expectOk(at(t - 300_000).verify(req, lookup));
  });

  it('rejects 5m01s in the past and in the future', async () => {
    const req = await signRequest();
    expectFail(at(t + 301_000).verify(req, lookup), 'clock-skew');
    expectFail(at(t - 301_000).verify(req, lookup), 'clock-skew');
  });

  it('fails closed when the clock returns NaN', async () => {
    const req = await signRequest();
    expectFail(at(Number.NaN).verify(req, lookup), 'clock-skew');
  });

  it('uses Date.now by default', async () => {
    const now = new Date();
    const req = await signRequest({ date: now });
    expectOk(new SigV4Verifier({ service: SERVICE, maxClockSkewMs: 300_000 }).verify(req, lookup));
    expectFail(new SigV4Verifier({ service: SERVICE, maxClockSkewMs: 300_000 }).verify(await signRequest(), lookup), 'clock-skew');
  });
});

// --- scope and date ----------------------------------------------------------------

describe('SigV4Verifier: credential scope and X-Amz-Date', () => {
  it('rejects a scope date that differs from the X-Amz-Date date', async () => {
    const req = await signRequest();
    const auth = header(req, 'authorization').replace('/20240514/', '/20240513/');
    expectFail(verifier().verify(withHeader(req, 'authorization', auth), lookup), 'scope-date-mismatch');
  });

  it('rejects a different service', async () => {
    const req = await signRequest({ service: 'kms' });
    const result = expectFail(verifier().verify(req, lookup), 'wrong-service');
    assert.match(result.detail, /kms/);
  });

  it('applies the region allow-list when configured', async () => {
    const v = verifier({ allowedRegions: new Set(['us-east-1', 'eu-west-1']) });
    expectOk(v.verify(await signRequest({ region: 'eu-west-1' }), lookup));
    expectFail(v.verify(await signRequest({ region: 'ap-south-1' }), lookup), 'region-not-allowed');
    // Without an allow-list any region is fine.
    expectOk(verifier().verify(await signRequest({ region: 'ap-south-1' }), lookup));
  });

  it('rejects malformed X-Amz-Date values', async () => {
    const req = await signRequest();
    const bad = [
      '20241314T123456Z', // month 13
      '20240014T123456Z', // month 0
      '20240532T123456Z', // day 32
      '20240500T123456Z', // day 0
      '20230229T123456Z', // not a leap year
      '20240431T123456Z', // April has 30 days
      '20240514T243456Z', // hour 24
      '20240514T126056Z', // minute 60
      '20240514T123460Z', // second 60
      '2024-05-14T12:34:56Z', // extended format
      '20240514T123456', // no Z
      '20240514t123456z', // lower case
      '20240514 123456Z',
      '2024051AT123456Z',
      '+0240514T123456Z',
      '',
      'Tue, 14 May 2024 12:34:56 GMT',
    ];
    for (const value of bad) {
      expectFail(verifier().verify(withHeader(req, 'x-amz-date', value), lookup), 'malformed-date');
    }
  });

  it('rejects two X-Amz-Date headers', async () => {
    const req = await signRequest();
    const twice = withExtraHeaders(req, 'X-Amz-Date', header(req, 'x-amz-date'));
    expectFail(verifier().verify(twice, lookup), 'malformed-date');
  });

  it('rejects a missing X-Amz-Date header', async () => {
    const req = await signRequest();
    expectFail(verifier().verify(withoutHeader(req, 'x-amz-date'), lookup), 'missing-date');
  });

  it('parseAmzDate handles years below 100 without the Date.UTC 1900 offset', () => {
    assert.equal(parseAmzDate('00500101T000000Z')?.getUTCFullYear(), 50);
    assert.equal(parseAmzDate('20240514T123456Z')?.toISOString(), '2024-05-14T12:34:56.000Z');
    assert.equal(parseAmzDate('20240229T000000Z')?.toISOString(), '2024-02-29T00:00:00.000Z');
    assert.equal(parseAmzDate('21000229T000000Z'), undefined); // 2100 is not a leap year
  });
});

// --- Authorization header ------------------------------------------------------------

describe('SigV4Verifier: Authorization header parsing', () => {
  const SIG = 'a'.repeat(64);
  const CRED = `${AKID}/20240514/us-east-1/kms-xks-proxy/aws4_request`;

  async function withAuth(value: string): Promise<SigV4Result> {
    const req = await signRequest();
    return verifier().verify(withHeader(req, 'authorization', value), lookup);
  }

  it('rejects a missing Authorization header', async () => {
    const req = await signRequest();
    expectFail(verifier().verify(withoutHeader(req, 'authorization'), lookup), 'missing-authorization');
  });

  it('rejects a duplicated Authorization header, even when both copies are valid', async () => {
    const req = await signRequest();
    const twice = withExtraHeaders(req, 'authorization', header(req, 'authorization'));
    expectFail(verifier().verify(twice, lookup), 'malformed-authorization');
  });

  it('rejects other algorithms', async () => {
    const variants = [
      `AWS4-HMAC-SHA512 Credential=${CRED}, SignedHeaders=host;x-amz-date, Signature=${SIG}`,
      `AWS4-ECDSA-P256-SHA256 Credential=${CRED}, SignedHeaders=host;x-amz-date, Signature=${SIG}`,
      `aws4-hmac-sha256 Credential=${CRED}, SignedHeaders=host;x-amz-date, Signature=${SIG}`,
      `AWS4-HMAC-SHA256,Credential=${CRED}, SignedHeaders=host;x-amz-date, Signature=${SIG}`,
      'Bearer eyJhbGciOiJIUzI1NiJ9.e30.x',
      'Basic dXNlcjpwYXNz',
      '',
    ];
    for (const v of variants) expectFail(await withAuth(v), 'unsupported-algorithm');
  });

  it('rejects malformed component lists', async () => {
    const variants: Array<[string, string]> = [
      ['algorithm only', 'AWS4-HMAC-SHA256'],
      ['algorithm and space only', 'AWS4-HMAC-SHA256 '],
      ['missing Credential', `AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=${SIG}`],
      ['missing SignedHeaders', `AWS4-HMAC-SHA256 Credential=${CRED}, Signature=${SIG}`],
      ['missing Signature', `AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=host;x-amz-date`],
      ['duplicated Credential', `AWS4-HMAC-SHA256 Credential=${CRED}, Credential=${CRED}, Signature=${SIG}`],
      ['duplicated SignedHeaders', `AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, SignedHeaders=host;x-amz-date, Signature=${SIG}`],
      ['duplicated Signature', `AWS4-HMAC-SHA256 Credential=${CRED}, Signature=${SIG}, Signature=${SIG}`],
      ['four components', `AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=host;x-amz-date, Signature=${SIG}, Signature=${SIG}`],
      ['unknown component', `AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=host;x-amz-date, Sig=${SIG}`],
      ['lower-case component name', `AWS4-HMAC-SHA256 credential=${CRED}, SignedHeaders=host;x-amz-date, Signature=${SIG}`],
      ['trailing comma', `AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=host;x-amz-date, Signature=${SIG},`],
      ['empty component', `AWS4-HMAC-SHA256 Credential=${CRED}, , Signature=${SIG}`],
      ['component without =', `AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders, Signature=${SIG}`],
      ['component with empty name', `AWS4-HMAC-SHA256 Credential=${CRED}, =host;x-amz-date, Signature=${SIG}`],
      ['space before =', `AWS4-HMAC-SHA256 Credential =${CRED}, SignedHeaders=host;x-amz-date, Signature=${SIG}`],
      ['semicolon separators', `AWS4-HMAC-SHA256 Credential=${CRED}; SignedHeaders=host;x-amz-date; Signature=${SIG}`],
      ['non-hex signature', `AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=host;x-amz-date, Signature=${'g'.repeat(64)}`],
      ['short signature', `AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=host;x-amz-date, Signature=${'a'.repeat(63)}`],
      ['long signature', `AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=host;x-amz-date, Signature=${'a'.repeat(65)}`],
      ['empty signature', `AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=host;x-amz-date, Signature=`],
      ['base64 signature', `AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=host;x-amz-date, Signature=${Buffer.alloc(32).toString('base64')}`],
      ['empty SignedHeaders', `AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=, Signature=${SIG}`],
      ['empty SignedHeaders name', `AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=host;;x-amz-date, Signature=${SIG}`],
      ['trailing ; in SignedHeaders', `AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=host;x-amz-date;, Signature=${SIG}`],
      ['upper-case SignedHeaders', `AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=Host;X-Amz-Date, Signature=${SIG}`],
      ['non-token SignedHeaders', `AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=host;x amz date, Signature=${SIG}`],
      ['duplicated SignedHeaders name', `AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=host;host;x-amz-date, Signature=${SIG}`],
    ];
    for (const [name, value] of variants) {
      const result = await withAuth(value);
      assert.ok(!result.ok && result.reason === 'malformed-authorization', `${name}: ${JSON.stringify(result)}`);
    }
  });

  it('rejects malformed credential scopes', async () => {
    const variants: Array<[string, string]> = [
      ['four parts', `${AKID}/20240514/us-east-1/kms-xks-proxy`],
      ['six parts', `${AKID}/20240514/us-east-1/kms-xks-proxy/aws4_request/x`],
      ['empty access key id', '/20240514/us-east-1/kms-xks-proxy/aws4_request'],
      ['empty region', `${AKID}/20240514//kms-xks-proxy/aws4_request`],
      ['empty service', `${AKID}/20240514/us-east-1//aws4_request`],
      ['wrong terminator', `${AKID}/20240514/us-east-1/kms-xks-proxy/aws4_requests`],
      ['non-numeric date', `${AKID}/2024O514/us-east-1/kms-xks-proxy/aws4_request`],
      ['short date', `${AKID}/2024514/us-east-1/kms-xks-proxy/aws4_request`],
      ['non-ASCII region', `${AKID}/20240514/us-ëast-1/kms-xks-proxy/aws4_request`],
      ['empty', ''],
    ];
    for (const [name, cred] of variants) {
      const result = await withAuth(`AWS4-HMAC-SHA256 Credential=${cred}, SignedHeaders=host;x-amz-date, Signature=${SIG}`);
      assert.ok(!result.ok && result.reason === 'malformed-credential-scope', `${name}: ${JSON.stringify(result)}`);
    }
  });

  it('requires host and x-amz-date to be signed', async () => {
    expectFail(await withAuth(`AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=x-amz-date, Signature=${SIG}`), 'host-not-signed');
    expectFail(await withAuth(`AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=content-type;x-amz-date, Signature=${SIG}`), 'host-not-signed');
    expectFail(await withAuth(`AWS4-HMAC-SHA256 Credential=${CRED}, SignedHeaders=host, Signature=${SIG}`), 'date-not-signed');
  });

  it('rejects a signed header that the request does not carry', async () => {
    const req = await signRequest({ headers: { 'content-type': 'application/json' } });
    const result = expectFail(verifier().verify(withoutHeader(req, 'content-type'), lookup), 'missing-signed-header');
    assert.match(result.detail, /content-type/);
    const listed = withHeader(req, 'authorization', header(req, 'authorization').replace('x-amz-date', 'x-amz-date;x-not-sent'));
    expectFail(verifier().verify(listed, lookup), 'missing-signed-header');
  });

  it('builds canonical headers in the listed order, so reordering SignedHeaders breaks the signature', async () => {
    const req = await signRequest({ headers: { 'content-type': 'application/json' } });
    const auth = header(req, 'authorization').replace('content-type;host;x-amz-date', 'host;content-type;x-amz-date');
    expectFail(verifier().verify(withHeader(req, 'authorization', auth), lookup), 'signature-mismatch');
  });

  it('uses a valid base request for the variants above', async () => {
    // Sanity: the base request used by withAuth is valid, so the failures above come from the header.
    const req = await signRequest();
    expectOk(verifier().verify(withHeader(req, 'authorization', header(req, 'authorization')), lookup));
    assert.equal(credentialOf(req), CRED);
  });
});

// --- payload hash --------------------------------------------------------------------

describe('SigV4Verifier: x-amz-content-sha256', () => {
  const bodyHash = createHash('sha256').update(BODY).digest('hex');

  it('accepts a matching, signed x-amz-content-sha256', async () => {
    const req = await signRequest({ applyChecksum: true });
    assert.equal(header(req, 'x-amz-content-sha256'), bodyHash);
    const result = expectOk(verifier().verify(req, lookup));
    assert.ok(result.signedHeaders.includes('x-amz-content-sha256'));
  });

  it('accepts a matching, unsigned x-amz-content-sha256', async () => {
    const req = await signRequest();
    expectOk(verifier().verify(withExtraHeaders(req, 'X-Amz-Content-Sha256', bodyHash), lookup));
  });

  it('rejects a signed x-amz-content-sha256 that does not match the body', async () => {
    const otherHash = createHash('sha256').update('something else').digest('hex');
    const req = await signRequest({ headers: { 'x-amz-content-sha256': otherHash } });
    expectFail(verifier().verify(req, lookup), 'payload-hash-mismatch');
  });

  it('rejects an unsigned x-amz-content-sha256 that does not match the body', async () => {
    const req = await signRequest();
    expectFail(verifier().verify(withExtraHeaders(req, 'x-amz-content-sha256', 'ab'.repeat(32)), lookup), 'payload-hash-mismatch');
  });

  it('rejects UNSIGNED-PAYLOAD even when correctly signed', async () => {
    const req = await signRequest({ headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } });
    const result = expectFail(verifier().verify(req, lookup), 'payload-hash-mismatch');
    assert.match(result.detail, /UNSIGNED-PAYLOAD/);
  });

  it('rejects an upper-case or duplicated hash header', async () => {
    const req = await signRequest();
    expectFail(verifier().verify(withExtraHeaders(req, 'x-amz-content-sha256', bodyHash.toUpperCase()), lookup), 'payload-hash-mismatch');
    expectFail(
      verifier().verify(withExtraHeaders(req, 'x-amz-content-sha256', bodyHash, 'x-amz-content-sha256', bodyHash), lookup),
      'payload-hash-mismatch',
    );
  });
});

// --- canonical URI and query -------------------------------------------------------------

describe('SigV4Verifier: canonical query string', () => {
  it('matches the smithy signer for ?b=2&a=1&a=0', async () => {
    const req = await signRequest({ query: { b: '2', a: ['1', '0'] }, rawQuery: 'b=2&a=1&a=0' });
    expectOk(verifier().verify(req, lookup));
    assert.equal(canonicalQueryString('b=2&a=1&a=0'), 'a=0&a=1&b=2');
  });

  it('matches the smithy signer for encoded names, values, "+" and empty values', async () => {
    const query = { 'k y': 'v/w+x', z: '', 'é': '~._-', A: 'upper' };
    for (const rawQuery of ['k%20y=v%2Fw%2Bx&z=&%C3%A9=~._-&A=upper', 'z&A=upper&k%20y=v/w+x&%c3%a9=%7E%2E%5F%2D']) {
      const req = await signRequest({ query, rawQuery });
      expectOk(verifier().verify(req, lookup));
    }
    // '+' is literal: signing 'k y' but sending 'k+y' must fail.
    const req = await signRequest({ query: { 'k y': '1' }, rawQuery: 'k+y=1' });
    expectFail(verifier().verify(req, lookup), 'signature-mismatch');
  });

  it('canonicalises edge cases', () => {
    assert.equal(canonicalQueryString(''), '');
    assert.equal(canonicalQueryString('a+b=c+d'), 'a%2Bb=c%2Bd');
    assert.equal(canonicalQueryString('a=%zz&b=%4'), 'a=%25zz&b=%254');
    assert.equal(canonicalQueryString('&&b=1&&a'), 'a=&b=1');
    assert.equal(canonicalQueryString('x=1=2'), 'x=1%3D2');
    assert.equal(canonicalQueryString('B=1&a=1&_=1'), 'B=1&_=1&a=1'); // byte order, not locale order
    assert.equal(canonicalQueryString('a=%2f%41'), 'a=%2FA');
  });
});

describe('SigV4Verifier: canonical URI', () => {
  it('encodes the AWS way for non-S3 services', () => {
    assert.equal(canonicalUri(''), '/');
    assert.equal(canonicalUri('/'), '/');
    assert.equal(canonicalUri('/kms/xks/v1/keys/k-1_a.b~c/encrypt'), '/kms/xks/v1/keys/k-1_a.b~c/encrypt');
    assert.equal(canonicalUri('/a%20b'), '/a%2520b');
    assert.equal(canonicalUri('/a b:c'), '/a%20b%3Ac');
    assert.equal(canonicalUri('/ሴ'), '/%E1%88%B4');
    assert.equal(canonicalUri('/a//b/'), '/a//b/');
    assert.equal(canonicalUri('/\ud800x'), '/%EF%BF%BDx'); // lone surrogate does not throw
  });

  it('trimAll trims and collapses SP, HTAB, CR and LF only', () => {
    assert.equal(trimAll('  a \t\r\n b  '), 'a b');
    assert.equal(trimAll('plain'), 'plain');
    assert.equal(trimAll('a\u00a0 b'), 'a\u00a0 b');
    assert.equal(trimAll(' \t '), '');
  });
});

// --- logging safety and robustness ---------------------------------------------------------

describe('SigV4Verifier: failure details', () => {
  it('never contain the secret, the signature or body bytes', async () => {
    const req = await signRequest({ headers: { 'content-type': 'application/json' } });
    const sig = signatureOf(req);
    const auth = header(req, 'authorization');
    const t = SIGN_TIME.getTime();
    const bodyHash = createHash('sha256').update(BODY).digest('hex');
    const failures: SigV4Result[] = [
      verifier().verify(withoutHeader(req, 'authorization'), lookup),
      verifier().verify(withExtraHeaders(req, 'Authorization', auth), lookup),
      verifier().verify(withHeader(req, 'authorization', `Bearer ${SECRET}`), lookup),
      verifier().verify(withHeader(req, 'authorization', `AWS4-HMAC-SHA256 Foo=${SECRET}, SignedHeaders=host;x-amz-date, Signature=${sig}`), lookup),
      verifier().verify(withHeader(req, 'authorization', auth.replace(`Signature=${sig}`, `Signature=${sig}0`)), lookup),
      verifier().verify(withHeader(req, 'authorization', auth.replace('kms-xks-proxy', SECRET.slice(0, 20))), lookup),
      verifier().verify(withHeader(req, 'authorization', auth.replace('us-east-1', SECRET.slice(0, 20))), lookup),
      verifier({ allowedRegions: new Set(['eu-west-1']) }).verify(req, lookup),
      verifier().verify(withoutHeader(req, 'content-type'), lookup),
      verifier().verify(withHeader(req, 'x-amz-date', `${SECRET}`), lookup),
      verifier().verify(withoutHeader(req, 'x-amz-date'), lookup),
      verifier({ now: () => t + 3_600_000 }).verify(req, lookup),
      verifier().verify(withExtraHeaders(req, 'x-amz-content-sha256', 'UNSIGNED-PAYLOAD'), lookup),
      verifier().verify(withExtraHeaders(req, 'x-amz-content-sha256', bodyHash.replace(/.$/, '0')), lookup),
      verifier().verify(req, () => undefined),
      verifier().verify(req, () => SECRET_2),
      verifier().verify({ ...req, body: Buffer.from('BODY-MARKER tampered') }, lookup),
    ];
    const reasons = new Set<string>();
    for (const result of failures) {
      assert.equal(result.ok, false);
      if (result.ok) continue;
      reasons.add(result.reason);
      assert.ok(!result.detail.includes(SECRET), result.detail);
      assert.ok(!result.detail.includes(SECRET.slice(0, 20)), result.detail);
      assert.ok(!result.detail.includes(SECRET_2), result.detail);
      assert.ok(!result.detail.toLowerCase().includes(sig.slice(0, 16)), result.detail);
      assert.ok(!result.detail.includes('BODY-MARKER'), result.detail);
      assert.match(result.detail, /^[\x20-\x7e]{1,200}$/, result.detail);
    }
    assert.ok(reasons.size >= 12, `covered reasons: ${[...reasons].join(',')}`);
  });

  it('echo plain access key ids, regions and services but not secret-looking ones', async () => {
    const misplacedSecret = 'q8Zr1Lx+Jv3Kp0Wm7Yt2Hn5Bc9Fg4Ds6Ae8Ui1Ow=';
    const unknown = expectFail(verifier().verify(await signRequest({ accessKeyId: misplacedSecret }), lookup), 'unknown-access-key');
    assert.ok(!unknown.detail.includes(misplacedSecret.slice(0, 8)), unknown.detail);
    assert.match(unknown.detail, /sha256 [0-9a-f]{12}/);
    const plain = expectFail(verifier().verify(await signRequest({ accessKeyId: 'NOSUCHACCESSKEYID2345' }), lookup), 'unknown-access-key');
    assert.match(plain.detail, /NOSUCHACCESSKEYID2345/);
    const mismatch = expectFail(verifier().verify(await signRequest({ secret: SECRET_2 }), lookup), 'signature-mismatch');
    assert.match(mismatch.detail, new RegExp(AKID));
    const region = expectFail(verifier({ allowedRegions: new Set(['us-east-1']) }).verify(await signRequest({ region: 'eu-west-2' }), lookup), 'region-not-allowed');
    assert.match(region.detail, /eu-west-2/);
    const service = expectFail(verifier().verify(await signRequest({ service: misplacedSecret.replace('/', '') }), lookup), 'wrong-service');
    assert.ok(!service.detail.includes(misplacedSecret.slice(0, 8)), service.detail);
  });

  it('keeps hostile input printable and bounded', async () => {
    const req = await signRequest();
    const auth = header(req, 'authorization').replace('us-east-1', 'x'.repeat(5000));
    const result = expectFail(verifier({ allowedRegions: new Set(['us-east-1']) }).verify(withHeader(req, 'authorization', auth), lookup), 'region-not-allowed');
    assert.ok(result.detail.length < 200);
    const ctrl = expectFail(verifier().verify(withHeader(req, 'x-amz-date', '\u0000\u001b[31m\u00ff\u2028'), lookup), 'malformed-date');
    assert.match(ctrl.detail, /^[\x20-\x7e]+$/);
  });
});

describe('SigV4Verifier: robustness', () => {
  // Small deterministic PRNG so failures are reproducible.
  function prng(seed: number): () => number {
    let s = seed >>> 0;
    return () => {
      s = (s + 0x6d2b79f5) >>> 0;
      let t = s;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  const normalise = (s: string): string => s.replace(/[ \t]/g, '').toLowerCase();

  it('never throws on mutated Authorization headers and never accepts a meaningful change', async () => {
    const req = await signRequest({ headers: { 'content-type': 'application/json' } });
    const auth = header(req, 'authorization');
    const alphabet = ['', ' ', ',', '=', '/', ';', '\t', 'a', 'F', '0', '\u0000', '\u00ff', '\ud800', '😀', 'aws4_request', 'Signature='];
    const rnd = prng(0x5eed);
    const v = verifier();
    for (let i = 0; i < 3000; i++) {
      let mutated = auth;
      const edits = 1 + Math.floor(rnd() * 3);
      for (let e = 0; e < edits; e++) {
        const pos = Math.floor(rnd() * (mutated.length + 1));
        const kind = Math.floor(rnd() * 3);
        const piece = alphabet[Math.floor(rnd() * alphabet.length)] as string;
        if (kind === 0) mutated = mutated.slice(0, pos) + mutated.slice(pos + 1);
        else if (kind === 1) mutated = mutated.slice(0, pos) + piece + mutated.slice(pos);
        else mutated = mutated.slice(0, pos) + piece + mutated.slice(pos + 1);
      }
      const result = v.verify(withHeader(req, 'authorization', mutated), lookup);
      if (result.ok) {
        assert.equal(normalise(mutated), normalise(auth), `accepted a changed header: ${JSON.stringify(mutated)}`);
      } else {
        assert.match(result.detail, /^[\x20-\x7e]+$/);
      }
    }
  });

  it('never throws on odd rawHeaders, hostile paths, queries and huge SignedHeaders', async () => {
    const req = await signRequest();
    const v = verifier();
    const many = Array.from({ length: 2000 }, (_, i) => `x-h${i}`).join(';');
    // A dangling header name (Node never produces one) is ignored.
    expectOk(v.verify({ ...req, rawHeaders: [...req.rawHeaders, 'X-Dangling'] }, lookup));
    const cases: SigV4Request[] = [
      { ...req, rawHeaders: [] },
      { ...req, path: '/\udc00/\ud83d/%/%%/%zz/..' },
      { ...req, path: 'http://evil.example.com/x?y' },
      { ...req, query: '%\ud800=%&=&&==&%C3%28=%ff' },
      withHeader(req, 'authorization', header(req, 'authorization').replace('host;x-amz-date', `host;${many};x-amz-date`)),
      withHeader(req, 'host', '\u0000\ud800\u00ff'),
    ];
    for (const c of cases) {
      const result = v.verify(c, lookup);
      assert.equal(result.ok, false);
    }
  });

  it('rejects invalid options at construction (programming errors)', () => {
    assert.throws(() => new SigV4Verifier({ service: '', maxClockSkewMs: 300_000 }), TypeError);
    assert.throws(() => new SigV4Verifier({ service: SERVICE, maxClockSkewMs: -1 }), RangeError);
    assert.throws(() => new SigV4Verifier({ service: SERVICE, maxClockSkewMs: Number.NaN }), RangeError);
    assert.throws(() => new SigV4Verifier({ service: SERVICE, maxClockSkewMs: 1, signingKeyCacheSize: 1.5 }), RangeError);
    assert.throws(() => new SigV4Verifier({ service: SERVICE, maxClockSkewMs: 1, signingKeyCacheSize: -1 }), RangeError);
  });
});
