import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import type { AddressInfo, Socket } from 'node:net';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import {
  DEFAULT_LEAF_VALID_DAYS,
  OID_CLIENT_AUTH,
  OID_SERVER_AUTH,
  createCertificateAuthority,
  createSelfSignedCertificate,
  issueCertificate,
} from '../../../src/dev/pki.js';
import type { CertificateAuthority, PemPair } from '../../../src/dev/pki.js';

const DAY_MS = 24 * 60 * 60 * 1000;
const CONNECT_TIMEOUT_MS = 3000;

function parse(pem: string): X509Certificate {
  return new X509Certificate(pem);
}

function notBeforeOf(cert: X509Certificate): number {
  return new Date(cert.validFrom).getTime();
}

function notAfterOf(cert: X509Certificate): number {
  return new Date(cert.validTo).getTime();
}

/** Serial number DER content must be exactly 16 bytes with the high bit clear. */
function assertSerial(cert: X509Certificate): void {
  const serial = cert.serialNumber;
  assert.match(serial, /^[0-9A-F]{32}$/i, `serial ${serial} is not 16 bytes`);
  const first = Number.parseInt(serial.slice(0, 2), 16);
  assert.ok(first > 0 && first < 0x80, `serial ${serial} has high bit set or leading zero byte`);
}

function keyMatchesCert(pair: PemPair): boolean {
  const message = Buffer.from('hyok-proxy dev pki key check');
  const key = createPrivateKey(pair.keyPem);
  const signature = sign('sha256', message, key);
  return verify('sha256', message, parse(pair.certPem).publicKey, signature);
}

describe('dev PKI: certificate contents', () => {
  let ca: CertificateAuthority;
  let otherCa: CertificateAuthority;
  let server: PemPair;
  let client: PemPair;

  before(async () => {
    ca = await createCertificateAuthority({ commonName: 'hyok-proxy dev CA' });
    otherCa = await createCertificateAuthority({ commonName: 'someone else CA', validDays: 30 });
    server = await issueCertificate(ca, {
      commonName: 'localhost',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1', '::1'],
      usage: 'server',
    });
    client = await issueCertificate(ca, { commonName: 'xks-client', usage: 'client' });
  });

  it('creates a self-signed P-256 CA with critical CA:true and keyCertSign/cRLSign', () => {
    const cert = parse(ca.certPem);
    assert.equal(cert.ca, true);
    assert.equal(cert.subject, 'CN=hyok-proxy dev CA');
    assert.equal(ca.subject, 'CN=hyok-proxy dev CA');
    assert.equal(cert.issuer, cert.subject);
    assert.equal(cert.checkIssued(cert), true);
    assert.equal(cert.verify(cert.publicKey), true);
    assert.equal(cert.publicKey.asymmetricKeyType, 'ec');
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assertSerial(cert);

    const now = Date.now();
    const nb = notBeforeOf(cert);
    assert.ok(nb <= now - 4 * 60 * 1000 && nb >= now - 6 * 60 * 1000, 'notBefore ~ now - 5 min');
    assert.equal(notAfterOf(cert) - nb, 3650 * DAY_MS);

    const p = new x509.X509Certificate(ca.certPem);
    assert.deepEqual(p.signatureAlgorithm, { name: 'ECDSA', hash: { name: 'SHA-256' } });
    const bc = p.getExtension(x509.BasicConstraintsExtension);
    assert.ok(bc);
    assert.equal(bc.ca, true);
    assert.equal(bc.critical, true);
    const ku = p.getExtension(x509.KeyUsagesExtension);
    assert.ok(ku);
    assert.equal(ku.critical, true);
    assert.equal(ku.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    const ski = p.getExtension(x509.SubjectKeyIdentifierExtension);
    assert.ok(ski);
    assert.match(ski.keyId, /^[0-9a-f]{40}$/);
  });

  it('exports PKCS#8 PEM keys that match their certificates', () => {
    for (const pair of [ca, server, client]) {
      assert.match(pair.keyPem, /^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END PRIVATE KEY-----\n$/);
      assert.match(pair.certPem, /^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n$/);
      const key = createPrivateKey(pair.keyPem);
      assert.equal(key.type, 'private');
      assert.equal(key.asymmetricKeyType, 'ec');
      assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
      assert.equal(keyMatchesCert(pair), true);
      const fromKey = createPublicKey(key).export({ type: 'spki', format: 'der' });
      const fromCert = parse(pair.certPem).publicKey.export({ type: 'spki', format: 'der' });
      assert.deepEqual(fromKey, fromCert);
    }
    // A key does not verify against a different certificate.
    assert.equal(keyMatchesCert({ certPem: client.certPem, keyPem: server.keyPem }), false);
  });

  it('issues a server leaf with SANs, serverAuth EKU, CA:false, chained to the CA', () => {
    const caCert = parse(ca.certPem);
    const cert = parse(server.certPem);
    assert.equal(cert.ca, false);
    assert.equal(cert.subject, 'CN=localhost');
    assert.equal(cert.issuer, caCert.subject);
    assert.equal(cert.checkHost('localhost'), 'localhost');
    assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(cert.checkIP('::1'), '::1');
    assert.equal(cert.checkHost('evil.example'), undefined);
    assert.equal(cert.checkIP('10.0.0.1'), undefined);
    assert.ok(cert.subjectAltName?.includes('DNS:localhost'));
    assert.ok(cert.subjectAltName?.includes('IP Address:127.0.0.1'));
    assert.equal(cert.verify(caCert.publicKey), true);
    assert.equal(cert.checkIssued(caCert), true);
    assert.equal(cert.verify(parse(otherCa.certPem).publicKey), false);
    assert.equal(cert.checkIssued(parse(otherCa.certPem)), false);
    assert.deepEqual(cert.keyUsage, [OID_SERVER_AUTH]);
    assertSerial(cert);
    assert.equal(notAfterOf(cert) - notBeforeOf(cert), DEFAULT_LEAF_VALID_DAYS * DAY_MS);

    const p = new x509.X509Certificate(server.certPem);
    const bc = p.getExtension(x509.BasicConstraintsExtension);
    assert.ok(bc);
    assert.equal(bc.ca, false);
    const ku = p.getExtension(x509.KeyUsagesExtension);
    assert.ok(ku);
    assert.equal(ku.critical, true);
    assert.ok((ku.usages & x509.KeyUsageFlags.digitalSignature) !== 0);
    assert.equal(ku.usages & (x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign), 0);
    const eku = p.getExtension(x509.ExtendedKeyUsageExtension);
    assert.ok(eku);
    assert.deepEqual([...eku.usages], [OID_SERVER_AUTH]);
    const aki = p.getExtension(x509.AuthorityKeyIdentifierExtension);
    const ski = p.getExtension(x509.SubjectKeyIdentifierExtension);
    const caSki = new x509.X509Certificate(ca.certPem).getExtension(x509.SubjectKeyIdentifierExtension);
    assert.ok(aki && ski && caSki);
    assert.equal(aki.keyId, caSki.keyId);
    assert.notEqual(ski.keyId, caSki.keyId);
    const san = p.getExtension(x509.SubjectAlternativeNameExtension);
    assert.ok(san);
    assert.deepEqual(san.names.toJSON(), [
      { type: 'dns', value: 'localhost' },
      { type: 'ip', value: '127.0.0.1' },
      { type: 'ip', value: '::1' },
    ]);
  });

  it('issues a client leaf with clientAuth EKU only', () => {
    const cert = parse(client.certPem);
    assert.equal(cert.ca, false);
    assert.equal(cert.subject, 'CN=xks-client');
    assert.deepEqual(cert.keyUsage, [OID_CLIENT_AUTH]);
    assert.equal(cert.checkIssued(parse(ca.certPem)), true);
    assert.equal(cert.verify(parse(ca.certPem).publicKey), true);
    assert.equal(cert.subjectAltName, undefined);
  });

  it('uses fresh random serial numbers and keys', async () => {
    const again = await issueCertificate(ca, { commonName: 'xks-client', usage: 'client' });
    assert.notEqual(parse(again.certPem).serialNumber, parse(client.certPem).serialNumber);
    assert.notEqual(again.keyPem, client.keyPem);
    assertSerial(parse(again.certPem));
  });

  it('respects explicit validity windows (second precision)', async () => {
    const notBefore = new Date('2030-01-02T03:04:05.678Z');
    const notAfter = new Date('2031-06-07T08:09:10.999Z');
    const pair = await issueCertificate(ca, { commonName: 'future', usage: 'client', notBefore, notAfter });
    const cert = parse(pair.certPem);
    assert.equal(notBeforeOf(cert), Date.parse('2030-01-02T03:04:05Z'));
    assert.equal(notAfterOf(cert), Date.parse('2031-06-07T08:09:10Z'));

    const short = await issueCertificate(ca, { commonName: 'short', usage: 'server', validDays: 1, notBefore });
    const shortCert = parse(short.certPem);
    assert.equal(notAfterOf(shortCert) - notBeforeOf(shortCert), DAY_MS);
  });

  it('builds an expired certificate from a past notAfter alone', async () => {
    const notAfter = new Date(Date.now() - 60 * 60 * 1000);
    const pair = await issueCertificate(ca, { commonName: 'expired', usage: 'client', notAfter, validDays: 2 });
    const cert = parse(pair.certPem);
    assert.ok(notAfterOf(cert) < Date.now());
    assert.equal(notAfterOf(cert), Math.floor(notAfter.getTime() / 1000) * 1000);
    assert.equal(notAfterOf(cert) - notBeforeOf(cert), 2 * DAY_MS);
    assert.equal(cert.checkIssued(parse(ca.certPem)), true);
  });

  it('builds a not-yet-valid certificate', async () => {
    const notBefore = new Date(Date.now() + DAY_MS);
    const pair = await issueCertificate(ca, { commonName: 'later', usage: 'client', notBefore });
    const cert = parse(pair.certPem);
    assert.ok(notBeforeOf(cert) > Date.now());
    assert.equal(notAfterOf(cert) - notBeforeOf(cert), DEFAULT_LEAF_VALID_DAYS * DAY_MS);
  });

  it('creates self-signed leaves that no CA vouches for', async () => {
    const pair = await createSelfSignedCertificate({
      commonName: 'localhost',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    const cert = parse(pair.certPem);
    assert.equal(cert.ca, false);
    assert.equal(cert.issuer, cert.subject);
    // Signed by its own key. (Note: OpenSSL's checkIssued(cert) is false here
    // because the leaf's keyUsage lacks keyCertSign; TLS still classifies it
    // as DEPTH_ZERO_SELF_SIGNED_CERT.)
    assert.equal(cert.verify(cert.publicKey), true);
    const p = new x509.X509Certificate(pair.certPem);
    const aki = p.getExtension(x509.AuthorityKeyIdentifierExtension);
    const ski = p.getExtension(x509.SubjectKeyIdentifierExtension);
    assert.ok(aki && ski);
    assert.equal(aki.keyId, ski.keyId);
    assert.equal(cert.checkIssued(parse(ca.certPem)), false);
    assert.equal(cert.verify(parse(ca.certPem).publicKey), false);
    assert.equal(cert.checkHost('localhost'), 'localhost');
    assert.deepEqual(cert.keyUsage, [OID_SERVER_AUTH]);
    assert.equal(keyMatchesCert(pair), true);
  });

  it('carries special characters in the common name verbatim', async () => {
    const cn = 'Acme, Inc. + "dev" #1 Zürich\\';
    const special = await createCertificateAuthority({ commonName: cn, validDays: 1 });
    const p = new x509.X509Certificate(special.certPem);
    assert.deepEqual(p.subjectName.getField('CN'), [cn]);
    assert.equal(parse(special.certPem).subject, special.subject);
    const leaf = await issueCertificate(special, { commonName: '#leaf=1', usage: 'client' });
    const leafCert = parse(leaf.certPem);
    assert.equal(leafCert.checkIssued(parse(special.certPem)), true);
    assert.deepEqual(new x509.X509Certificate(leaf.certPem).subjectName.getField('CN'), ['#leaf=1']);
  });

  it('rejects invalid input', async () => {
    await assert.rejects(createCertificateAuthority({ commonName: '' }), TypeError);
    await assert.rejects(createCertificateAuthority({ commonName: 'x', validDays: 0 }), RangeError);
    await assert.rejects(issueCertificate(ca, { commonName: 'x', usage: 'server', ipAddresses: ['localhost'] }), TypeError);
    await assert.rejects(issueCertificate(ca, { commonName: 'x', usage: 'server', dnsNames: ['bad name'] }), TypeError);
    await assert.rejects(
      issueCertificate(ca, {
        commonName: 'x',
        usage: 'client',
        notBefore: new Date('2030-01-01T00:00:00Z'),
        notAfter: new Date('2029-01-01T00:00:00Z'),
      }),
      RangeError,
    );
    // A leaf cannot act as an issuer.
    await assert.rejects(
      issueCertificate({ ...server, subject: 'CN=localhost' }, { commonName: 'x', usage: 'client' }),
      /not a CA/,
    );
    // CA key must match the CA certificate.
    await assert.rejects(
      issueCertificate({ ...ca, keyPem: otherCa.keyPem }, { commonName: 'x', usage: 'client' }),
      /does not match/,
    );
  });
});

// ---------------------------------------------------------------------------
// Real TLS handshakes
// ---------------------------------------------------------------------------

type ServerOutcome =
  | { kind: 'secureConnection'; authorized: boolean; peerCommonName: string | undefined }
  | { kind: 'tlsClientError'; error: NodeJS.ErrnoException; authorized: boolean; authorizationError: string | null };

interface ClientOutcome {
  secureConnect: boolean;
  /** Client's verdict on the *server* certificate. */
  authorized: boolean;
  error: NodeJS.ErrnoException | undefined;
  data: string;
}

interface AttemptOptions {
  server: PemPair;
  serverCa: readonly string[];
  client: PemPair | null;
  clientCa: readonly string[];
  /** undefined: connect to 127.0.0.1 without SNI (IP SAN is checked). */
  servername?: string;
  maxVersion: tls.SecureVersion;
  /** Wait for the server verdict too (default true). */
  waitForServer?: boolean;
}

const openServers = new Set<tls.Server>();
const openSockets = new Set<Socket>();

function closeServer(server: tls.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
  });
}

/**
 * One handshake attempt against a fresh mTLS server (so server events cannot
 * be confused between attempts). On success the server writes "OK\n" and
 * closes; on failure the server never emits 'secureConnection'.
 */
async function attempt(options: AttemptOptions): Promise<{ client: ClientOutcome; server: ServerOutcome | undefined }> {
  const server = tls.createServer({
    cert: options.server.certPem,
    key: options.server.keyPem,
    ca: [...options.serverCa],
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
  });
  openServers.add(server);
  server.on('connection', (socket: Socket) => {
    openSockets.add(socket);
    socket.on('close', () => openSockets.delete(socket));
  });

  let serverOutcome: ServerOutcome | undefined;
  let onServerOutcome: (() => void) | undefined;
  const serverDone = new Promise<void>((resolve) => {
    onServerOutcome = resolve;
  });
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    const peer = socket.getPeerCertificate();
    const cn = peer.subject?.CN;
    serverOutcome ??= {
      kind: 'secureConnection',
      authorized: socket.authorized,
      peerCommonName: Array.isArray(cn) ? cn.join(',') : cn,
    };
    onServerOutcome?.();
    socket.end('OK\n');
  });
  server.on('tlsClientError', (error: Error, socket: tls.TLSSocket) => {
    // @types/node declares authorizationError as Error; at runtime it is the
    // OpenSSL verify error code string (or null).
    const authorizationError = socket.authorizationError as unknown as string | null | undefined;
    serverOutcome ??= {
      kind: 'tlsClientError',
      error,
      authorized: socket.authorized,
      authorizationError: authorizationError ?? null,
    };
    onServerOutcome?.();
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  const clientOutcome: ClientOutcome = { secureConnect: false, authorized: false, error: undefined, data: '' };
  let clientSocket: tls.TLSSocket | undefined;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`TLS attempt timed out after ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
  });

  try {
    const clientDone = new Promise<void>((resolve) => {
      const socket = tls.connect({
        host: '127.0.0.1',
        port,
        ...(options.servername !== undefined ? { servername: options.servername } : {}),
        ca: [...options.clientCa],
        ...(options.client !== null ? { cert: options.client.certPem, key: options.client.keyPem } : {}),
        minVersion: 'TLSv1.2',
        maxVersion: options.maxVersion,
        rejectUnauthorized: true,
      });
      clientSocket = socket;
      socket.setEncoding('utf8');
      socket.on('secureConnect', () => {
        clientOutcome.secureConnect = true;
        clientOutcome.authorized = socket.authorized;
      });
      socket.on('data', (chunk: string) => {
        clientOutcome.data += chunk;
      });
      socket.on('error', (error: NodeJS.ErrnoException) => {
        clientOutcome.error ??= error;
      });
      socket.on('close', () => resolve());
    });
    await Promise.race([clientDone, timeout]);
    if (options.waitForServer ?? true) {
      await Promise.race([serverDone, timeout]);
    }
    return { client: clientOutcome, server: serverOutcome };
  } finally {
    clearTimeout(timer);
    clientSocket?.destroy();
    for (const socket of openSockets) socket.destroy();
    await closeServer(server);
    openServers.delete(server);
  }
}

describe('dev PKI: real mTLS handshakes on 127.0.0.1', () => {
  let ca: CertificateAuthority;
  let otherCa: CertificateAuthority;
  let serverPair: PemPair;
  let goodClient: PemPair;
  let expiredClient: PemPair;
  let notYetValidClient: PemPair;
  let selfSignedClient: PemPair;
  let foreignClient: PemPair;

  before(async () => {
    ca = await createCertificateAuthority({ commonName: 'hyok-proxy dev CA' });
    otherCa = await createCertificateAuthority({ commonName: 'hyok-proxy other CA' });
    serverPair = await issueCertificate(ca, {
      commonName: 'localhost',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      usage: 'server',
    });
    goodClient = await issueCertificate(ca, { commonName: 'xks-client', usage: 'client' });
    expiredClient = await issueCertificate(ca, {
      commonName: 'xks-client',
      usage: 'client',
      notBefore: new Date(Date.now() - 10 * DAY_MS),
      notAfter: new Date(Date.now() - DAY_MS),
    });
    notYetValidClient = await issueCertificate(ca, {
      commonName: 'xks-client',
      usage: 'client',
      notBefore: new Date(Date.now() + DAY_MS),
    });
    selfSignedClient = await createSelfSignedCertificate({ commonName: 'xks-client', usage: 'client' });
    foreignClient = await issueCertificate(otherCa, { commonName: 'xks-client', usage: 'client' });
  });

  after(async () => {
    for (const socket of openSockets) socket.destroy();
    await Promise.all([...openServers].map(closeServer));
    openServers.clear();
  });

  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    describe(`maxVersion ${maxVersion}`, () => {
      it('authorizes a good client cert on both sides (servername localhost)', async () => {
        const { client, server } = await attempt({
          server: serverPair,
          serverCa: [ca.certPem],
          client: goodClient,
          clientCa: [ca.certPem],
          servername: 'localhost',
          maxVersion,
        });
        assert.equal(client.error, undefined);
        assert.equal(client.secureConnect, true);
        assert.equal(client.authorized, true);
        assert.equal(client.data, 'OK\n');
        assert.ok(server);
        assert.equal(server.kind, 'secureConnection');
        assert.equal(server.authorized, true);
        assert.equal(server.peerCommonName, 'xks-client');
      });

      it('verifies the IP SAN when connecting to 127.0.0.1 without SNI', async () => {
        const { client, server } = await attempt({
          server: serverPair,
          serverCa: [ca.certPem],
          client: goodClient,
          clientCa: [ca.certPem],
          maxVersion,
        });
        assert.equal(client.error, undefined);
        assert.equal(client.authorized, true);
        assert.equal(client.data, 'OK\n');
        assert.equal(server?.kind, 'secureConnection');
      });

      it('client rejects a server cert that does not match the servername', async () => {
        const { client } = await attempt({
          server: serverPair,
          serverCa: [ca.certPem],
          client: goodClient,
          clientCa: [ca.certPem],
          servername: 'not-localhost.example',
          maxVersion,
          waitForServer: false,
        });
        assert.equal(client.error?.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
        assert.equal(client.data, '');
      });

      it('client rejects a server cert from an untrusted CA', async () => {
        const { client } = await attempt({
          server: serverPair,
          serverCa: [ca.certPem],
          client: goodClient,
          clientCa: [otherCa.certPem],
          servername: 'localhost',
          maxVersion,
          waitForServer: false,
        });
        assert.ok(client.error, 'client must fail');
        assert.equal(client.secureConnect, false);
        assert.equal(client.data, '');
      });

      const negativeCases: ReadonlyArray<{ name: string; pair: () => PemPair; codes: readonly string[] }> = [
        { name: 'expired client cert', pair: () => expiredClient, codes: ['CERT_HAS_EXPIRED'] },
        { name: 'not-yet-valid client cert', pair: () => notYetValidClient, codes: ['CERT_NOT_YET_VALID'] },
        { name: 'self-signed client cert', pair: () => selfSignedClient, codes: ['DEPTH_ZERO_SELF_SIGNED_CERT'] },
        {
          name: 'client cert from a different CA',
          pair: () => foreignClient,
          codes: ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT'],
        },
        {
          name: 'serverAuth-only cert used as client cert',
          pair: () => serverPair,
          codes: ['INVALID_PURPOSE'],
        },
      ];

      for (const testCase of negativeCases) {
        it(`server rejects ${testCase.name}`, async () => {
          const { client, server } = await attempt({
            server: serverPair,
            serverCa: [ca.certPem],
            client: testCase.pair(),
            clientCa: [ca.certPem],
            servername: 'localhost',
            maxVersion,
          });
          // The server never accepted the connection ...
          assert.ok(server, 'server must report an outcome');
          assert.equal(server.kind, 'tlsClientError', 'server must not emit secureConnection');
          assert.equal(server.authorized, false);
          assert.ok(
            server.authorizationError !== null && testCase.codes.includes(server.authorizationError),
            `unexpected authorizationError ${String(server.authorizationError)}`,
          );
          // ... and the client got no application data. In TLS 1.2 the client
          // fails before 'secureConnect'; in TLS 1.3 it may see 'secureConnect'
          // (it has verified the server) and then just a close.
          assert.equal(client.data, '');
          if (maxVersion === 'TLSv1.2') {
            assert.equal(client.secureConnect, false);
            assert.ok(client.error, 'TLS 1.2 client must see an error');
          }
        });
      }

      it('server rejects a client that presents no certificate', async () => {
        const { client, server } = await attempt({
          server: serverPair,
          serverCa: [ca.certPem],
          client: null,
          clientCa: [ca.certPem],
          servername: 'localhost',
          maxVersion,
        });
        assert.equal(server?.kind, 'tlsClientError');
        assert.equal(server.authorized, false);
        assert.equal(server.error.code, 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE');
        assert.equal(client.data, '');
        assert.ok(client.error, 'client receives a handshake alert');
      });
    });
  }
});
