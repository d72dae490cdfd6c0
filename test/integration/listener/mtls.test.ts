import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import type { ConfigInput } from '../../../src/config/schema.js';
import type { PemPair } from '../../../src/dev/pki.js';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { logFile } from '../../helpers/test-env.js';
import {
  DAY_MS,
  captureServerTlsErrors,
  clientCert,
  devCertificateAuthority,
  exchange,
  foreignCertificateAuthority,
  handshake,
  issueTestCertificate,
  selfSignedTestCertificate,
  waitFor,
  withTimeout,
  type ExchangeResult,
  type ServerTlsErrors,
} from '../../helpers/tls-client.js';

/**
 * Client certificate authentication (the XKS spec's mTLS option) against a real
 * running proxy: the chain must end at the configured CA and the subject (CN or
 * SAN DNS name) must be on the allow-list, otherwise the connection is closed
 * before any HTTP byte is read or written.
 *
 * How rejections look on the wire (Node 20, OpenSSL 3.0):
 * - no certificate, mode 'required': OpenSSL fails the handshake with an alert
 *   (TLS 1.2: handshake_failure; TLS 1.3: certificate_required, which the
 *   client only reads after it considers its side of the handshake done);
 * - a presented but untrusted certificate, mode 'required': the handshake
 *   completes inside OpenSSL, then Node checks the chain and destroys the
 *   socket without an alert (TLS 1.2 clients see ECONNRESET before
 *   'secureConnect'; TLS 1.3 clients see 'secureConnect' and then a close);
 * - a trusted certificate with a subject not allowed (either mode) and an
 *   untrusted one in mode 'optional': the proxy's 'secureConnection' hook
 *   destroys the socket and logs 'TLS client rejected'.
 * In every case the client must get no HTTP response at all.
 */

const ALLOWED_CN = 'cks.kms.us-east-1.amazonaws.com';

/** The dev config always has a clientAuth section; this narrows the optional input type. */
function clientAuthOf(config: ConfigInput): NonNullable<ConfigInput['server']['tls']['clientAuth']> {
  const clientAuth = config.server.tls.clientAuth;
  assert.ok(clientAuth !== undefined, 'the dev config has server.tls.clientAuth');
  return clientAuth;
}
const VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
const CALL_TIMEOUT_MS = 5000;

interface LogLine {
  readonly level?: string;
  readonly msg?: string;
  readonly subject?: string;
  readonly reason?: string;
  readonly remote?: string;
}

function logLines(name: string): LogLine[] {
  const file = logFile(name);
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as LogLine);
}

function rejectionLines(name: string): LogLine[] {
  return logLines(name).filter((line) => line.msg === 'TLS client rejected');
}

interface AuditRecord {
  readonly event?: string;
  readonly kmsRequestId?: string;
  readonly clientCertificateSubject?: string;
  readonly status?: number;
  readonly outcome?: string;
}

function auditRecords(fixture: ProxyFixture): AuditRecord[] {
  if (!existsSync(fixture.auditFile)) return [];
  return readFileSync(fixture.auditFile, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as AuditRecord);
}

/** A signed GetHealthStatus with a known kmsRequestId, so its audit record can be found. */
async function signedHealth(fixture: ProxyFixture, certificate: PemPair | { cert: string; key: string } | undefined): Promise<{ status: number; kmsRequestId: string }> {
  const kmsRequestId = randomUUID();
  const clientCertificate = certificate === undefined ? undefined : 'certPem' in certificate ? clientCert(certificate) : certificate;
  const response = await withTimeout(
    fixture.client.post('health', { requestMetadata: { kmsRequestId, kmsOperation: 'KmsHealthCheck' } }, clientCertificate === undefined ? {} : { clientCertificate }),
    CALL_TIMEOUT_MS,
    'signed GetHealthStatus',
  );
  return { status: response.status, kmsRequestId };
}

async function auditRecordFor(fixture: ProxyFixture, kmsRequestId: string): Promise<AuditRecord> {
  let found: AuditRecord | undefined;
  await waitFor(() => {
    found = auditRecords(fixture).find((record) => record.event === 'xks.request' && record.kmsRequestId === kmsRequestId);
    return found !== undefined;
  });
  assert.ok(found !== undefined, `no xks.request audit record with kmsRequestId ${kmsRequestId}`);
  return found;
}

/** The client got no HTTP byte, and the server closed the connection promptly (no hang). */
function assertNoHttpResponse(result: ExchangeResult, version: string | undefined, what: string): void {
  assert.equal(result.timedOut, false, `${what}: the server neither answered nor closed the connection within the timeout`);
  assert.equal(result.closed, true, `${what}: the connection stays open`);
  assert.equal(result.statusCode, undefined, `${what}: got an HTTP response: ${result.received.toString('latin1').slice(0, 80)}`);
  assert.equal(result.received.length, 0, `${what}: the server sent application data: ${result.received.toString('latin1').slice(0, 80)}`);
  if (result.error !== undefined) {
    assert.match(result.error.code ?? '', /^(ECONNRESET|EPIPE|EPROTO|ERR_SSL_)/, `${what}: unexpected error ${result.error.code ?? ''} ${result.error.message}`);
  }
  if (version === 'TLSv1.2') {
    // In TLS 1.2 the server's Finished comes last, so a refused client never completes its handshake.
    assert.equal(result.handshakeCompleted, false, `${what}: a TLS 1.2 client completed the handshake`);
    assert.ok(result.error !== undefined, `${what}: a TLS 1.2 client gets a TLS or connection error`);
  }
}

/** A signed XKS call through the test client (supertest) fails at the connection level: no HTTP status at all. */
async function assertSignedCallRejected(fixture: ProxyFixture, certificate: PemPair | undefined, what: string): Promise<void> {
  let caught: unknown;
  try {
    const response = await signedHealth(fixture, certificate);
    caught = new assert.AssertionError({ message: `${what}: got HTTP ${response.status} instead of a closed connection` });
  } catch (error) {
    caught = error;
  }
  if (caught instanceof assert.AssertionError) throw caught;
  const error = caught as NodeJS.ErrnoException & { status?: unknown; response?: unknown };
  assert.equal(error.status, undefined, `${what}: the error carries an HTTP status`);
  assert.equal(error.response, undefined, `${what}: the error carries an HTTP response`);
  assert.ok(
    /^(ECONNRESET|EPIPE|EPROTO|ERR_SSL_)/.test(error.code ?? '') || /socket hang up|disconnected|alert/i.test(error.message),
    `${what}: expected a connection or TLS error, got ${error.code ?? ''} ${error.message}`,
  );
}

type Evidence =
  | { readonly kind: 'handshake-error'; readonly code: RegExp; readonly authorizationError?: RegExp }
  | { readonly kind: 'log'; readonly reason: RegExp; readonly subject?: string };

interface BadCertificateCase {
  readonly name: string;
  readonly certificate: () => PemPair | undefined;
  /** How the server shows it refused this client (mode 'required'). */
  readonly requiredEvidence: Evidence;
}

async function assertServerRefused(evidence: Evidence, errors: ServerTlsErrors, logName: string, logsBefore: number, what: string): Promise<void> {
  if (evidence.kind === 'handshake-error') {
    const seen = await waitFor(() => errors.errors.length > 0);
    assert.ok(seen, `${what}: the server reported no failed handshake`);
    const [first] = errors.errors;
    assert.ok(first !== undefined);
    assert.match(first.code, evidence.code, `${what}: server-side error`);
    if (evidence.authorizationError !== undefined) {
      assert.match(first.authorizationError ?? '', evidence.authorizationError, `${what}: server-side verification error`);
    }
  } else {
    const seen = await waitFor(() => rejectionLines(logName).length > logsBefore);
    assert.ok(seen, `${what}: no 'TLS client rejected' log line`);
    const line = rejectionLines(logName)[logsBefore];
    assert.ok(line !== undefined);
    assert.equal(line.level, 'warn');
    assert.match(line.reason ?? '', evidence.reason, `${what}: logged reason`);
    if (evidence.subject !== undefined) assert.equal(line.subject, evidence.subject);
    assert.equal(line.remote, '127.0.0.1');
  }
}

describe("mTLS, clientAuth mode 'required'", () => {
  const LOG = 'listener-mtls-required';
  let fixture: ProxyFixture;
  let port: number;
  const certificates = new Map<string, PemPair>();

  before(async () => {
    fixture = await createFixture({
      name: LOG,
      configure: (config) => {
        clientAuthOf(config).mode = 'required';
      },
    });
    port = fixture.proxy?.port ?? 0;
    const ca = devCertificateAuthority(fixture.dev);
    const now = Date.now();
    certificates.set('expired', await issueTestCertificate(ca, { commonName: ALLOWED_CN, usage: 'client', notAfter: new Date(now - DAY_MS) }));
    certificates.set(
      'not yet valid',
      await issueTestCertificate(ca, { commonName: ALLOWED_CN, usage: 'client', notBefore: new Date(now + DAY_MS), notAfter: new Date(now + 30 * DAY_MS) }),
    );
    certificates.set('self-signed', await selfSignedTestCertificate({ commonName: ALLOWED_CN, usage: 'client' }));
    certificates.set('other CA', await issueTestCertificate(await foreignCertificateAuthority(), { commonName: ALLOWED_CN, usage: 'client' }));
    certificates.set('wrong CN', await issueTestCertificate(ca, { commonName: 'cks.kms.eu-west-1.amazonaws.com', usage: 'client' }));
  });
  after(async () => {
    await fixture.close();
  });

  const get = (name: string) => (): PemPair => {
    const certificate = certificates.get(name);
    assert.ok(certificate !== undefined, `certificate '${name}' was not made`);
    return certificate;
  };
  const BAD: readonly BadCertificateCase[] = [
    { name: 'no client certificate', certificate: () => undefined, requiredEvidence: { kind: 'handshake-error', code: /^ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE$/ } },
    {
      name: 'an expired certificate from the right CA',
      certificate: get('expired'),
      requiredEvidence: { kind: 'handshake-error', code: /^ECONNRESET$/, authorizationError: /^CERT_HAS_EXPIRED$/ },
    },
    {
      name: 'a not-yet-valid certificate from the right CA',
      certificate: get('not yet valid'),
      requiredEvidence: { kind: 'handshake-error', code: /^ECONNRESET$/, authorizationError: /^CERT_NOT_YET_VALID$/ },
    },
    {
      name: 'a self-signed certificate with the allowed CN',
      certificate: get('self-signed'),
      requiredEvidence: { kind: 'handshake-error', code: /^ECONNRESET$/, authorizationError: /^DEPTH_ZERO_SELF_SIGNED_CERT$/ },
    },
    {
      name: 'a certificate with the allowed CN from a different CA',
      certificate: get('other CA'),
      requiredEvidence: { kind: 'handshake-error', code: /^ECONNRESET$/, authorizationError: /^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?)$/ },
    },
    {
      name: 'a certificate from the right CA with a CN not on the allow-list',
      certificate: get('wrong CN'),
      requiredEvidence: { kind: 'log', reason: /^client certificate subject not allowed$/, subject: 'CN=cks.kms.eu-west-1.amazonaws.com' },
    },
  ];

  describe('the valid dev client certificate', () => {
    it('makes a signed GetHealthStatus call (200)', async () => {
      const { status } = await signedHealth(fixture, fixture.clientCertificate);
      assert.equal(status, 200);
    });

    for (const version of VERSIONS) {
      it(`is accepted over ${version}`, async () => {
        const result = await exchange(port, fixture.ca, { ...fixture.clientCertificate, minVersion: version, maxVersion: version });
        assert.equal(result.protocol, version);
        assert.equal(result.statusCode, 200, `no 200: ${result.error?.code ?? ''} ${result.received.toString('latin1').slice(0, 80)}`);
      });
    }

    it("the audit record of the call names the client certificate subject", async () => {
      const { status, kmsRequestId } = await signedHealth(fixture, fixture.clientCertificate);
      assert.equal(status, 200);
      const record = await auditRecordFor(fixture, kmsRequestId);
      assert.equal(record.clientCertificateSubject, `CN=${ALLOWED_CN}`);
      assert.equal(record.outcome, 'success');
      assert.equal(record.status, 200);
    });

    for (const version of VERSIONS) {
      it(`a resumed ${version} session is accepted and the server still sees the client certificate`, async () => {
        const options = { ...fixture.clientCertificate, minVersion: version, maxVersion: version };
        const first = await handshake(port, fixture.ca, options, { waitForTicket: true });
        assert.ok(first.ok, 'first handshake');
        const session = version === 'TLSv1.3' ? first.ticket : first.session;
        assert.ok(session !== undefined, 'a resumable session');
        const seen: Array<{ reused: boolean; cn: unknown }> = [];
        const server = fixture.proxy!.server;
        const listener = (socket: TLSSocket): void => {
          seen.push({ reused: socket.isSessionReused(), cn: socket.getPeerCertificate().subject?.CN });
        };
        server.on('secureConnection', listener);
        try {
          const result = await exchange(port, fixture.ca, { ...options, session });
          assert.equal(result.statusCode, 200);
          assert.deepEqual(seen, [{ reused: true, cn: ALLOWED_CN }]);
        } finally {
          server.off('secureConnection', listener);
        }
      });
    }
  });

  describe('every other client gets no HTTP response', () => {
    for (const bad of BAD) {
      for (const version of VERSIONS) {
        it(`${bad.name}, ${version}`, async () => {
          const errors = captureServerTlsErrors(fixture.proxy!.server);
          const logsBefore = rejectionLines(LOG).length;
          try {
            const certificate = bad.certificate();
            const result = await exchange(port, fixture.ca, {
              minVersion: version,
              maxVersion: version,
              ...(certificate === undefined ? {} : clientCert(certificate)),
            });
            assertNoHttpResponse(result, version, `${bad.name} (${version})`);
            await assertServerRefused(bad.requiredEvidence, errors, LOG, logsBefore, `${bad.name} (${version})`);
          } finally {
            errors.stop();
          }
        });
      }
    }

    it('signed XKS calls (test client, default TLS version) fail at the connection level for each of them', async () => {
      for (const bad of BAD) await assertSignedCallRejected(fixture, bad.certificate(), bad.name);
    });

    it('a rejected TLS 1.3 client cannot get in with the session of its rejected connection', async () => {
      const certificate = get('wrong CN')();
      const options = { ...clientCert(certificate), minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;
      const first = await handshake(port, fixture.ca, options, { waitForTicket: true, timeoutMs: 1000 });
      // Whatever session state the client kept (a ticket, if one got out before the close).
      const session = first.ok ? (first.ticket ?? first.session) : undefined;
      for (const attempt of [{ ...options, session }, { minVersion: 'TLSv1.3' as const, session }]) {
        const result = await exchange(port, fixture.ca, attempt);
        assertNoHttpResponse(result, 'TLSv1.3', 'resumption after rejection');
      }
    });

    it('the valid certificate still works after all those rejections', async () => {
      const { status } = await signedHealth(fixture, fixture.clientCertificate);
      assert.equal(status, 200);
    });
  });

  describe('logging of rejected clients', () => {
    it("a subject not on the allow-list is logged as a warn 'TLS client rejected' with subject and reason", async () => {
      const before = rejectionLines(LOG).length;
      const result = await exchange(port, fixture.ca, clientCert(get('wrong CN')()));
      assertNoHttpResponse(result, undefined, 'wrong CN');
      assert.ok(await waitFor(() => rejectionLines(LOG).length > before), 'rejection logged');
      const line = rejectionLines(LOG)[before];
      assert.ok(line !== undefined);
      assert.equal(line.level, 'warn');
      assert.equal(line.subject, 'CN=cks.kms.eu-west-1.amazonaws.com');
      assert.equal(line.reason, 'client certificate subject not allowed');
      assert.equal(line.remote, '127.0.0.1');
    });

    it(
      "an untrusted certificate is logged as a warn 'TLS client rejected' with the verification error",
      async () => {
        const before = rejectionLines(LOG).length;
        const result = await exchange(port, fixture.ca, clientCert(get('expired')()));
        assertNoHttpResponse(result, undefined, 'expired');
        assert.ok(await waitFor(() => rejectionLines(LOG).length > before, 500), "no 'TLS client rejected' line for an expired certificate");
        assert.match(rejectionLines(LOG)[before]?.reason ?? '', /CERT_HAS_EXPIRED/);
      },
    );
  });

  // Last in this suite: it edits the config file (and restores it).
  describe('reload', () => {
    it('a reload that narrows the allow-list applies to new connections at once', async () => {
      const original = fixture.readConfig();
      try {
        const next = fixture.readConfig();
        clientAuthOf(next).allowedSubjects = { commonNames: ['someone-else.example'], dnsNames: [] };
        fixture.writeConfig(next);
        assert.deepEqual(await withTimeout(fixture.proxy!.reload(), CALL_TIMEOUT_MS, 'reload'), { ok: true, issues: [] });
        const before = rejectionLines(LOG).length;
        const result = await exchange(port, fixture.ca, fixture.clientCertificate);
        assertNoHttpResponse(result, undefined, 'dev certificate after the allow-list changed');
        assert.ok(await waitFor(() => rejectionLines(LOG).length > before), 'rejection logged');
        assert.equal(rejectionLines(LOG)[before]?.subject, `CN=${ALLOWED_CN}`);
      } finally {
        fixture.writeConfig(original);
        assert.deepEqual(await withTimeout(fixture.proxy!.reload(), CALL_TIMEOUT_MS, 'reload'), { ok: true, issues: [] });
      }
      assert.equal((await signedHealth(fixture, fixture.clientCertificate)).status, 200, 'the restored allow-list lets the dev client in again');
    });

    it(
      "a reload that changes clientAuth.mode to 'off' (a restart-only setting) leaves mTLS working as before",
      async () => {
        const original = fixture.readConfig();
        try {
          const next = fixture.readConfig();
          clientAuthOf(next).mode = 'off';
          fixture.writeConfig(next);
          assert.deepEqual(await withTimeout(fixture.proxy!.reload(), CALL_TIMEOUT_MS, 'reload'), { ok: true, issues: [] });
          const result = await exchange(port, fixture.ca, fixture.clientCertificate);
          assert.equal(result.statusCode, 200, 'the valid client certificate is still accepted until the restart');
        } finally {
          fixture.writeConfig(original);
          await withTimeout(fixture.proxy!.reload(), CALL_TIMEOUT_MS, 'reload');
        }
      },
    );
  });
});

describe('mTLS allow-list by SAN DNS name (allowedSubjects.dnsNames)', () => {
  const LOG = 'listener-mtls-dns';
  const ALLOWED_DNS = 'kms-client.example';
  let fixture: ProxyFixture;
  let port: number;
  const certificates = new Map<string, PemPair>();

  before(async () => {
    fixture = await createFixture({
      name: LOG,
      configure: (config) => {
        clientAuthOf(config).mode = 'required';
        clientAuthOf(config).allowedSubjects = { commonNames: [], dnsNames: [ALLOWED_DNS] };
      },
    });
    port = fixture.proxy?.port ?? 0;
    const ca = devCertificateAuthority(fixture.dev);
    const issue = async (name: string, commonName: string, dnsNames?: string[]): Promise<void> => {
      certificates.set(name, await issueTestCertificate(ca, dnsNames === undefined ? { commonName, usage: 'client' } : { commonName, dnsNames, usage: 'client' }));
    };
    await issue('san match', 'some-other-client', [ALLOWED_DNS]);
    await issue('san match among others', 'another-client', ['first.example', ALLOWED_DNS]);
    await issue('san match, other case', 'mixed-case-client', ['KMS-Client.Example']);
    await issue('no san', 'some-other-client');
    await issue('cn equals the dns name, no san', ALLOWED_DNS);
    await issue('other san', 'some-other-client', ['other.example']);
    await issue('subdomain san', 'some-other-client', [`sub.${ALLOWED_DNS}`]);
    await issue('wildcard san', 'some-other-client', ['*.example']);
    // Node escapes the comma (DNS:"...\u002c..."), so this single odd name must not parse as two entries.
    await issue('comma injection', 'some-other-client', [`evil.example,DNS:${ALLOWED_DNS},x`]);
    certificates.set('san match, other CA', await issueTestCertificate(await foreignCertificateAuthority(), { commonName: 'x', dnsNames: [ALLOWED_DNS], usage: 'client' }));
  });
  after(async () => {
    await fixture.close();
  });

  const cert = (name: string): PemPair => {
    const certificate = certificates.get(name);
    assert.ok(certificate !== undefined, `certificate '${name}' was not made`);
    return certificate;
  };

  it('accepts a certificate whose CN is something else but whose SAN names the allowed DNS name (signed call, audit subject)', async () => {
    const { status, kmsRequestId } = await signedHealth(fixture, cert('san match'));
    assert.equal(status, 200);
    const record = await auditRecordFor(fixture, kmsRequestId);
    assert.equal(record.clientCertificateSubject, 'CN=some-other-client');
  });

  for (const name of ['san match', 'san match among others', 'san match, other case']) {
    for (const version of VERSIONS) {
      it(`accepts: ${name}, ${version}`, async () => {
        const result = await exchange(port, fixture.ca, { ...clientCert(cert(name)), minVersion: version, maxVersion: version });
        assert.equal(result.statusCode, 200, `${result.error?.code ?? ''}`);
      });
    }
  }

  for (const name of ['no san', 'cn equals the dns name, no san', 'other san', 'subdomain san', 'wildcard san', 'comma injection']) {
    for (const version of VERSIONS) {
      it(`rejects: ${name}, ${version}`, async () => {
        const before = rejectionLines(LOG).length;
        const result = await exchange(port, fixture.ca, { ...clientCert(cert(name)), minVersion: version, maxVersion: version });
        assertNoHttpResponse(result, version, name);
        assert.ok(await waitFor(() => rejectionLines(LOG).length > before), `${name}: rejection logged`);
        assert.equal(rejectionLines(LOG)[before]?.reason, 'client certificate subject not allowed');
      });
    }
  }

  it('rejects the dev client certificate: its CN is not allowed once commonNames is empty', async () => {
    const result = await exchange(port, fixture.ca, fixture.clientCertificate);
    assertNoHttpResponse(result, undefined, 'dev client certificate');
    await assertSignedCallRejected(fixture, { certPem: fixture.clientCertificate.cert, keyPem: fixture.clientCertificate.key }, 'dev client certificate');
  });

  it('rejects the right SAN from a different CA', async () => {
    for (const version of VERSIONS) {
      const result = await exchange(port, fixture.ca, { ...clientCert(cert('san match, other CA')), minVersion: version, maxVersion: version });
      assertNoHttpResponse(result, version, `other CA (${version})`);
    }
  });
});

describe("mTLS, clientAuth mode 'optional'", () => {
  const LOG = 'listener-mtls-optional';
  let fixture: ProxyFixture;
  let port: number;
  const certificates = new Map<string, PemPair>();

  before(async () => {
    // The dev config already uses 'optional'; say it explicitly.
    fixture = await createFixture({
      name: LOG,
      configure: (config) => {
        clientAuthOf(config).mode = 'optional';
      },
    });
    port = fixture.proxy?.port ?? 0;
    const ca = devCertificateAuthority(fixture.dev);
    certificates.set('other CA', await issueTestCertificate(await foreignCertificateAuthority(), { commonName: ALLOWED_CN, usage: 'client' }));
    certificates.set('wrong CN', await issueTestCertificate(ca, { commonName: 'cks.kms.eu-west-1.amazonaws.com', usage: 'client' }));
    certificates.set('expired', await issueTestCertificate(ca, { commonName: ALLOWED_CN, usage: 'client', notAfter: new Date(Date.now() - DAY_MS) }));
    certificates.set('self-signed', await selfSignedTestCertificate({ commonName: ALLOWED_CN, usage: 'client' }));
  });
  after(async () => {
    await fixture.close();
  });

  const cert = (name: string): PemPair => {
    const certificate = certificates.get(name);
    assert.ok(certificate !== undefined, `certificate '${name}' was not made`);
    return certificate;
  };

  it('serves a client without a certificate (signed call 200, no subject in the audit record)', async () => {
    const { status, kmsRequestId } = await signedHealth(fixture, undefined);
    assert.equal(status, 200);
    const record = await auditRecordFor(fixture, kmsRequestId);
    assert.equal(record.clientCertificateSubject, undefined);
    for (const version of VERSIONS) {
      const result = await exchange(port, fixture.ca, { minVersion: version, maxVersion: version });
      assert.equal(result.statusCode, 200, `${version}: ${result.error?.code ?? ''}`);
    }
  });

  it('serves a client with the valid certificate and audits its subject', async () => {
    const { status, kmsRequestId } = await signedHealth(fixture, fixture.clientCertificate);
    assert.equal(status, 200);
    const record = await auditRecordFor(fixture, kmsRequestId);
    assert.equal(record.clientCertificateSubject, `CN=${ALLOWED_CN}`);
  });

  const BAD: ReadonlyArray<{ name: string; reason: RegExp }> = [
    { name: 'other CA', reason: /^client certificate not trusted \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?)\)$/ },
    { name: 'wrong CN', reason: /^client certificate subject not allowed$/ },
    { name: 'expired', reason: /^client certificate not trusted \(CERT_HAS_EXPIRED\)$/ },
    { name: 'self-signed', reason: /^client certificate not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\)$/ },
  ];

  for (const bad of BAD) {
    for (const version of VERSIONS) {
      it(`rejects a presented bad certificate (${bad.name}), ${version}, and logs why`, async () => {
        const errors = captureServerTlsErrors(fixture.proxy!.server);
        const before = rejectionLines(LOG).length;
        try {
          const result = await exchange(port, fixture.ca, { ...clientCert(cert(bad.name)), minVersion: version, maxVersion: version });
          // Checked by the proxy after the handshake, so TLS 1.2 clients may also see it complete.
          assertNoHttpResponse(result, undefined, `${bad.name} (${version})`);
          await assertServerRefused({ kind: 'log', reason: bad.reason }, errors, LOG, before, `${bad.name} (${version})`);
        } finally {
          errors.stop();
        }
      });
    }
  }

  it('signed XKS calls with a bad certificate fail at the connection level', async () => {
    await assertSignedCallRejected(fixture, cert('other CA'), 'other CA');
    await assertSignedCallRejected(fixture, cert('wrong CN'), 'wrong CN');
  });
});
