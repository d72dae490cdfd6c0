/**
 * Development PKI: a throw-away certificate authority plus server and client
 * leaf certificates for local mTLS, and helpers to build deliberately invalid
 * certificates (expired, not yet valid, self-signed, foreign CA) for negative
 * tests.
 *
 * NOT for production use: keys are generated in memory and returned as
 * unencrypted PKCS#8 PEM.
 *
 * Keys are ECDSA P-256, signatures ECDSA with SHA-256. Certificates are built
 * with @peculiar/x509 on top of the Node WebCrypto implementation.
 */
import { createPrivateKey, createPublicKey, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';

export interface PemPair {
  /** PEM encoded certificate ('-----BEGIN CERTIFICATE-----'). */
  certPem: string;
  /** PKCS#8 PEM encoded, unencrypted private key ('-----BEGIN PRIVATE KEY-----'). */
  keyPem: string;
}

export interface CertificateAuthority extends PemPair {
  /** Subject distinguished name of the CA certificate, e.g. 'CN=hyok-proxy dev CA'. */
  subject: string;
}

export interface IssueOptions {
  commonName: string;
  dnsNames?: readonly string[];
  ipAddresses?: readonly string[];
  usage: 'server' | 'client';
  /**
   * Default: now - 5 minutes. If only `notAfter` is given and it lies before
   * that default, `notBefore` defaults to `notAfter - validDays` instead, so that
   * an expired certificate can be built by passing just a past `notAfter`.
   */
  notBefore?: Date;
  /** Default: notBefore + validDays. */
  notAfter?: Date;
  /** Default 825 for leaves. Ignored when both notBefore and notAfter are given. */
  validDays?: number;
}

export interface CreateCertificateAuthorityOptions {
  commonName: string;
  /** Default 3650. */
  validDays?: number;
  /** Default: now - 5 minutes. */
  notBefore?: Date;
}

/** Default lifetime of a CA certificate, in days. */
export const DEFAULT_CA_VALID_DAYS = 3650;
/** Default lifetime of a leaf certificate, in days. */
export const DEFAULT_LEAF_VALID_DAYS = 825;
/** Default backdating of notBefore, to tolerate small clock skew. */
export const DEFAULT_BACKDATE_MS = 5 * 60 * 1000;

export const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
export const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

const DAY_MS = 24 * 60 * 60 * 1000;

type Crypto = webcrypto.Crypto;
type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
type Algorithm = webcrypto.Algorithm;
type EcdsaParams = webcrypto.EcdsaParams;
type EcKeyGenParams = webcrypto.EcKeyGenParams;

const EC_KEY_ALGORITHM: EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING_ALGORITHM: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

// ---------------------------------------------------------------------------
// WebCrypto provider
// ---------------------------------------------------------------------------

let providerReady = false;

function getCrypto(): Crypto {
  const candidate: unknown = (globalThis as { crypto?: unknown }).crypto;
  if (candidate !== undefined && candidate !== null && typeof (candidate as Crypto).subtle === 'object') {
    return candidate as Crypto;
  }
  return webcrypto;
}

/** Registers the WebCrypto provider with @peculiar/x509 (idempotent). */
function ensureCryptoProvider(): Crypto {
  const crypto = getCrypto();
  if (!providerReady) {
    x509.cryptoProvider.set(crypto);
    providerReady = true;
  }
  return crypto;
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

function toPem(der: ArrayBuffer | Uint8Array, label: string): string {
  const b64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/**
 * 16 random bytes, high bit cleared (positive INTEGER) and first byte non-zero
 * (so the DER encoding is exactly 16 bytes and minimal), as hex.
 */
export function randomSerialNumber(): string {
  const bytes = getCrypto().getRandomValues(new Uint8Array(16));
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return Buffer.from(bytes).toString('hex');
}

/**
 * Builds the name `CN=<commonName>` with the value carried verbatim as a
 * UTF8String, so no RFC 4514 escaping / parsing of the common name happens
 * (commas, '+', '#', quotes, backslashes and non-ASCII are all safe).
 */
function commonNameToName(commonName: string): x509.Name {
  const json: x509.JsonNameParams = [{ CN: [{ utf8String: commonName }] }];
  return new x509.Name(json);
}

function assertCommonName(commonName: unknown): asserts commonName is string {
  if (typeof commonName !== 'string' || commonName.length === 0) {
    throw new TypeError('commonName must be a non-empty string');
  }
  if (commonName.length > 64) {
    // RFC 5280 ub-common-name
    throw new RangeError('commonName must be at most 64 characters');
  }
}

function assertValidDays(validDays: number): void {
  if (!Number.isFinite(validDays) || validDays <= 0) {
    throw new RangeError(`validDays must be a positive finite number, got ${String(validDays)}`);
  }
}

function assertDate(value: Date, name: string): void {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
    throw new TypeError(`${name} must be a valid Date`);
  }
}

interface Validity {
  notBefore: Date;
  notAfter: Date;
}

function resolveValidity(
  notBefore: Date | undefined,
  notAfter: Date | undefined,
  validDays: number,
): Validity {
  assertValidDays(validDays);
  if (notBefore !== undefined) assertDate(notBefore, 'notBefore');
  if (notAfter !== undefined) assertDate(notAfter, 'notAfter');
  const lifetime = validDays * DAY_MS;

  let nb: Date;
  if (notBefore !== undefined) {
    nb = notBefore;
  } else {
    const defaultNb = Date.now() - DEFAULT_BACKDATE_MS;
    nb = notAfter !== undefined && notAfter.getTime() <= defaultNb
      ? new Date(notAfter.getTime() - lifetime)
      : new Date(defaultNb);
  }
  const na = notAfter ?? new Date(nb.getTime() + lifetime);
  if (na.getTime() <= nb.getTime()) {
    throw new RangeError('notAfter must be later than notBefore');
  }
  // Certificates carry whole seconds; truncate so that what callers compute
  // from the returned options matches what ends up in the certificate.
  return {
    notBefore: new Date(Math.floor(nb.getTime() / 1000) * 1000),
    notAfter: new Date(Math.floor(na.getTime() / 1000) * 1000),
  };
}

/** Normalises an IP literal for the SAN encoder; rejects non-IP input. */
function normalizeIp(ip: string): string {
  const version = isIP(ip);
  if (version === 4) return ip;
  if (version === 6) {
    if (ip.includes('%')) throw new TypeError(`IPv6 zone identifiers are not allowed in certificates: ${ip}`);
    // Convert an embedded dotted quad (e.g. ::ffff:127.0.0.1) to two hex groups.
    const m = /^(.*:)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
    if (m) {
      const [, head = '', a = '0', b = '0', c = '0', d = '0'] = m;
      const hi = ((Number(a) << 8) | Number(b)).toString(16);
      const lo = ((Number(c) << 8) | Number(d)).toString(16);
      return `${head}${hi}:${lo}`;
    }
    return ip.toLowerCase();
  }
  throw new TypeError(`not an IP address: ${JSON.stringify(ip)}`);
}

function assertDnsName(name: string): void {
  if (typeof name !== 'string' || name.length === 0 || name.length > 253) {
    throw new TypeError(`invalid DNS name: ${JSON.stringify(name)}`);
  }
  // IA5String, no whitespace or control characters.
  if (!/^[\x21-\x7e]+$/.test(name)) {
    throw new TypeError(`invalid DNS name (must be printable ASCII, use punycode for IDNs): ${JSON.stringify(name)}`);
  }
}

function subjectAltNames(options: IssueOptions): x509.JsonGeneralNames {
  const names: x509.JsonGeneralNames = [];
  for (const dns of options.dnsNames ?? []) {
    assertDnsName(dns);
    names.push({ type: 'dns', value: dns });
  }
  for (const ip of options.ipAddresses ?? []) {
    names.push({ type: 'ip', value: normalizeIp(ip) });
  }
  return names;
}

async function generateKeyPair(crypto: Crypto): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(EC_KEY_ALGORITHM, true, ['sign', 'verify']);
}

async function exportPrivateKeyPem(crypto: Crypto, key: CryptoKey): Promise<string> {
  const der = await crypto.subtle.exportKey('pkcs8', key);
  return toPem(der, 'PRIVATE KEY');
}

/**
 * Imports a PKCS#8 PEM private key as a WebCrypto signing key, choosing the
 * signature algorithm from the key type (ECDSA P-256/384/521 or RSA).
 */
async function importSigningKey(
  crypto: Crypto,
  keyPem: string,
): Promise<{ key: CryptoKey; signingAlgorithm: Algorithm | EcdsaParams }> {
  const keyObject = createPrivateKey(keyPem);
  const der = keyObject.export({ type: 'pkcs8', format: 'der' });
  const type = keyObject.asymmetricKeyType;
  if (type === 'ec') {
    const curve = keyObject.asymmetricKeyDetails?.namedCurve;
    const map: Record<string, { namedCurve: string; hash: string }> = {
      prime256v1: { namedCurve: 'P-256', hash: 'SHA-256' },
      secp384r1: { namedCurve: 'P-384', hash: 'SHA-384' },
      secp521r1: { namedCurve: 'P-521', hash: 'SHA-512' },
    };
    const params = curve === undefined ? undefined : map[curve];
    if (params === undefined) throw new Error(`unsupported CA key curve: ${String(curve)}`);
    const key = await crypto.subtle.importKey(
      'pkcs8', der, { name: 'ECDSA', namedCurve: params.namedCurve }, false, ['sign'],
    );
    return { key, signingAlgorithm: { name: 'ECDSA', hash: params.hash } };
  }
  if (type === 'rsa') {
    const key = await crypto.subtle.importKey(
      'pkcs8', der, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['sign'],
    );
    return { key, signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5' } };
  }
  throw new Error(`unsupported CA key type: ${String(type)}`);
}

function leafExtensions(
  options: IssueOptions,
  subjectKeyId: x509.SubjectKeyIdentifierExtension,
  authorityKeyId: string,
): x509.Extension[] {
  if (options.usage !== 'server' && options.usage !== 'client') {
    throw new TypeError(`usage must be 'server' or 'client', got ${JSON.stringify(options.usage)}`);
  }
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement,
      true,
    ),
    new x509.ExtendedKeyUsageExtension(
      [options.usage === 'server' ? OID_SERVER_AUTH : OID_CLIENT_AUTH],
      false,
    ),
    subjectKeyId,
    new x509.AuthorityKeyIdentifierExtension(authorityKeyId, false),
  ];
  const sans = subjectAltNames(options);
  if (sans.length > 0) {
    extensions.push(new x509.SubjectAlternativeNameExtension(sans, false));
  }
  return extensions;
}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/** Creates a self-signed root CA (ECDSA P-256, default 3650 days). */
export async function createCertificateAuthority(
  options: CreateCertificateAuthorityOptions,
): Promise<CertificateAuthority> {
  const crypto = ensureCryptoProvider();
  assertCommonName(options.commonName);
  const { notBefore, notAfter } = resolveValidity(
    options.notBefore,
    undefined,
    options.validDays ?? DEFAULT_CA_VALID_DAYS,
  );
  const keys = await generateKeyPair(crypto);
  const name = commonNameToName(options.commonName);
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto);
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerialNumber(),
      subject: name,
      issuer: name,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: keys.privateKey,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
          true,
        ),
        ski,
        new x509.AuthorityKeyIdentifierExtension(ski.keyId, false),
      ],
    },
    crypto,
  );
  return {
    certPem: toPem(cert.rawData, 'CERTIFICATE'),
    keyPem: await exportPrivateKeyPem(crypto, keys.privateKey),
    subject: cert.subject,
  };
}

/**
 * Issues a leaf certificate (server or client) signed by `ca`. The CA's
 * certificate must have BasicConstraints CA:true and `ca.keyPem` must be the
 * private key matching `ca.certPem`.
 */
export async function issueCertificate(
  ca: CertificateAuthority,
  options: IssueOptions,
): Promise<PemPair> {
  const crypto = ensureCryptoProvider();
  assertCommonName(options.commonName);
  const { notBefore, notAfter } = resolveValidity(
    options.notBefore,
    options.notAfter,
    options.validDays ?? DEFAULT_LEAF_VALID_DAYS,
  );

  const caCert = new x509.X509Certificate(ca.certPem);
  const bc = caCert.getExtension(x509.BasicConstraintsExtension);
  if (bc === null || !bc.ca) {
    throw new Error('issuer certificate is not a CA (BasicConstraints CA:true missing)');
  }
  const caPublicSpki = createPublicKey(ca.certPem).export({ type: 'spki', format: 'der' });
  const keyPublicSpki = createPublicKey(createPrivateKey(ca.keyPem)).export({ type: 'spki', format: 'der' });
  if (!caPublicSpki.equals(keyPublicSpki)) {
    throw new Error('CA private key does not match the CA certificate');
  }
  const caSki = caCert.getExtension(x509.SubjectKeyIdentifierExtension);
  const authorityKeyId = caSki !== null
    ? caSki.keyId
    : (await x509.SubjectKeyIdentifierExtension.create(caCert.publicKey, false, crypto)).keyId;

  const { key: caSigningKey, signingAlgorithm } = await importSigningKey(crypto, ca.keyPem);
  const keys = await generateKeyPair(crypto);
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto);

  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerialNumber(),
      subject: commonNameToName(options.commonName),
      // Copy the CA subject DER verbatim so issuer/subject match byte for byte.
      issuer: new x509.Name(caCert.subjectName.toArrayBuffer()),
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: caSigningKey,
      signingAlgorithm,
      extensions: leafExtensions(options, ski, authorityKeyId),
    },
    crypto,
  );
  return {
    certPem: toPem(cert.rawData, 'CERTIFICATE'),
    keyPem: await exportPrivateKeyPem(crypto, keys.privateKey),
  };
}

/**
 * Creates a leaf certificate (CA:false, server/client EKU, SANs) that is
 * signed by its own key. No CA vouches for it, so peers must reject it; use
 * it for negative tests.
 */
export async function createSelfSignedCertificate(options: IssueOptions): Promise<PemPair> {
  const crypto = ensureCryptoProvider();
  assertCommonName(options.commonName);
  const { notBefore, notAfter } = resolveValidity(
    options.notBefore,
    options.notAfter,
    options.validDays ?? DEFAULT_LEAF_VALID_DAYS,
  );
  const keys = await generateKeyPair(crypto);
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto);
  const name = commonNameToName(options.commonName);
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerialNumber(),
      subject: name,
      issuer: name,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: keys.privateKey,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: leafExtensions(options, ski, ski.keyId),
    },
    crypto,
  );
  return {
    certPem: toPem(cert.rawData, 'CERTIFICATE'),
    keyPem: await exportPrivateKeyPem(crypto, keys.privateKey),
  };
}
