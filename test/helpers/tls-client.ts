import { readFileSync, writeFileSync } from 'node:fs';
import { Agent, request, type RequestOptions } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { join } from 'node:path';
import { connect, type CipherNameAndProtocol, type ConnectionOptions, type PeerCertificate, type TLSSocket } from 'node:tls';
import type { DevEnvironment } from '../../src/dev/bootstrap.js';
import {
  createCertificateAuthority,
  createSelfSignedCertificate,
  issueCertificate,
  type CertificateAuthority,
  type IssueOptions,
  type PemPair,
} from '../../src/dev/pki.js';
import { registerSecret } from './test-env.js';

/**
 * Raw TLS / HTTPS clients for the listener tests: every attempt has a hard
 * timeout so a misbehaving server fails a test instead of hanging the run, and
 * every private key a test makes is registered for the secrets-in-logs check.
 */

export const CONNECT_TIMEOUT_MS = 3000;
/** The name in the dev server certificate; the tests connect to 127.0.0.1 but present this SNI. */
export const SERVER_NAME = 'localhost';
export const LOOPBACK = '127.0.0.1';

export interface HandshakeSuccess {
  readonly ok: true;
  readonly protocol: string | null;
  readonly cipher: CipherNameAndProtocol;
  readonly alpnProtocol: string | false | null;
  readonly sessionReused: boolean;
  readonly authorized: boolean;
  readonly peerCertificate: PeerCertificate;
  /** TLS 1.2: socket.getSession() right after the handshake. */
  readonly session: Buffer | undefined;
  /** The first 'session' event (TLS 1.3 tickets arrive after the handshake), when `waitForTicket` was set. */
  readonly ticket: Buffer | undefined;
}

export interface HandshakeFailure {
  readonly ok: false;
  readonly error: NodeJS.ErrnoException;
}

export type HandshakeResult = HandshakeSuccess | HandshakeFailure;

export interface HandshakeOptions {
  /** Keep the connection open until a session ticket arrives (TLS 1.3 resumption). */
  readonly waitForTicket?: boolean;
  readonly timeoutMs?: number;
}

function baseOptions(port: number, ca: string, options: ConnectionOptions): ConnectionOptions {
  return { host: LOOPBACK, port, servername: SERVER_NAME, ca, ...options };
}

/** One TLS handshake with the proxy; the connection is closed afterwards. Never rejects. */
export function handshake(port: number, ca: string, options: ConnectionOptions = {}, extra: HandshakeOptions = {}): Promise<HandshakeResult> {
  const timeoutMs = extra.timeoutMs ?? CONNECT_TIMEOUT_MS;
  return new Promise((resolve) => {
    let settled = false;
    let ticket: Buffer | undefined;
    let connected: Omit<HandshakeSuccess, 'ticket'> | undefined;
    const socket = connect(baseOptions(port, ca, options));
    const finish = (result: HandshakeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => {
      if (connected !== undefined && extra.waitForTicket === true) {
        finish({ ...connected, ticket });
        return;
      }
      const error: NodeJS.ErrnoException = new Error(`TLS handshake did not finish within ${timeoutMs} ms`);
      error.code = 'ETIMEDOUT';
      finish({ ok: false, error });
    }, timeoutMs);
    socket.on('session', (session: Buffer) => {
      ticket ??= session;
      if (connected !== undefined && extra.waitForTicket === true) finish({ ...connected, ticket });
    });
    socket.on('secureConnect', () => {
      connected = {
        ok: true,
        protocol: socket.getProtocol(),
        cipher: socket.getCipher(),
        alpnProtocol: socket.alpnProtocol,
        sessionReused: socket.isSessionReused(),
        authorized: socket.authorized,
        peerCertificate: socket.getPeerCertificate(),
        session: socket.getSession(),
      };
      if (extra.waitForTicket !== true || ticket !== undefined) finish({ ...connected, ticket });
      // Tickets are processed as the socket reads; keep it flowing.
      else socket.resume();
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (connected !== undefined) finish({ ...connected, ticket });
      else finish({ ok: false, error });
    });
    // The server may close a connection it accepted at the TLS level (e.g. a client certificate it then rejects).
    socket.on('close', () => {
      if (connected !== undefined) finish({ ...connected, ticket });
      else finish({ ok: false, error: Object.assign(new Error('connection closed during the handshake'), { code: 'ECONNRESET' }) });
    });
  });
}

export interface ExchangeResult {
  /** The client saw its side of the handshake complete (in TLS 1.3 this happens before the server checked the client certificate). */
  readonly handshakeCompleted: boolean;
  readonly protocol: string | null | undefined;
  /** Every byte the server sent after the handshake. */
  readonly received: Buffer;
  /** Parsed from the first line of `received`, when it is an HTTP status line. */
  readonly statusCode: number | undefined;
  readonly error: NodeJS.ErrnoException | undefined;
  /** The server closed (or reset) the connection within the timeout. */
  readonly closed: boolean;
  readonly timedOut: boolean;
}

export const PING_REQUEST = `GET /ping HTTP/1.1\r\nHost: ${SERVER_NAME}\r\nConnection: close\r\n\r\n`;

/**
 * Connects, sends one raw HTTP/1.1 request as soon as the client considers
 * the handshake finished, and collects whatever comes back until the
 * connection closes. Never rejects.
 */
export function exchange(port: number, ca: string, options: ConnectionOptions = {}, payload = PING_REQUEST, timeoutMs = CONNECT_TIMEOUT_MS): Promise<ExchangeResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let handshakeCompleted = false;
    let protocol: string | null | undefined;
    let error: NodeJS.ErrnoException | undefined;
    let settled = false;
    const socket = connect(baseOptions(port, ca, options));
    const finish = (closed: boolean, timedOut: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const received = Buffer.concat(chunks);
      const match = /^HTTP\/1\.[01] (\d{3}) /.exec(received.toString('latin1'));
      resolve({
        handshakeCompleted,
        protocol,
        received,
        statusCode: match?.[1] === undefined ? undefined : Number(match[1]),
        error,
        closed,
        timedOut,
      });
    };
    const timer = setTimeout(() => finish(false, true), timeoutMs);
    socket.on('secureConnect', () => {
      handshakeCompleted = true;
      protocol = socket.getProtocol();
      socket.write(payload);
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (caught: NodeJS.ErrnoException) => {
      error ??= caught;
    });
    socket.on('close', () => finish(true, false));
  });
}

export interface HttpsResult {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  readonly reusedSocket: boolean;
  readonly localPort: number | undefined;
}

/** One HTTPS request to the proxy through node:https (servername 'localhost', connecting to 127.0.0.1). */
export function httpsRequest(port: number, ca: string, options: RequestOptions = {}, body?: string, timeoutMs = CONNECT_TIMEOUT_MS): Promise<HttpsResult> {
  return new Promise((resolve, reject) => {
    const req = request({ host: LOOPBACK, port, servername: SERVER_NAME, ca, method: 'GET', path: '/ping', ...options }, (res) => {
      // Read now: a keep-alive socket goes back to its agent (res.socket = null) once the body ends.
      const localPort = res.socket.localPort;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        clearTimeout(timer);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
          reusedSocket: req.reusedSocket,
          localPort,
        });
      });
    });
    const timer = setTimeout(() => req.destroy(Object.assign(new Error(`no response within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs);
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end(body);
  });
}

/** A keep-alive agent for the proxy: one socket at most, so a second request must reuse the first one. */
export function keepAliveAgent(ca: string): Agent {
  return new Agent({ keepAlive: true, maxSockets: 1, ca, servername: SERVER_NAME });
}

/** Rejects after `ms` when `promise` has not settled; for calls (supertest) that have no timeout of their own. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`${what} did not settle within ${ms} ms`), { code: 'ETIMEDOUT' })), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls until `predicate` holds or `timeoutMs` passes; returns whether it held. */
export async function waitFor(predicate: () => boolean, timeoutMs = 1000, intervalMs = 10): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (predicate()) return true;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  return predicate();
}

export interface ServerTlsError {
  readonly code: string;
  /** socket.authorizationError at the time: why Node rejected a client certificate, if it did. */
  readonly authorizationError: string | undefined;
}

export interface ServerTlsErrors {
  readonly errors: ServerTlsError[];
  readonly codes: () => string[];
  stop(): void;
}

/** Records the server's 'tlsClientError' events: evidence that the SERVER refused a handshake, and why. */
export function captureServerTlsErrors(server: HttpsServer): ServerTlsErrors {
  const errors: ServerTlsError[] = [];
  const listener = (error: NodeJS.ErrnoException, socket: TLSSocket): void => {
    const reason: unknown = socket.authorizationError;
    errors.push({ code: error.code ?? error.message, authorizationError: reason === null || reason === undefined ? undefined : String(reason) });
  };
  server.on('tlsClientError', listener);
  return { errors, codes: () => errors.map((entry) => entry.code), stop: () => server.off('tlsClientError', listener) };
}

/** Counts completed TLS handshakes on the server. */
export function countSecureConnections(server: HttpsServer): { readonly count: () => number; stop(): void } {
  let count = 0;
  const listener = (_socket: TLSSocket): void => {
    count += 1;
  };
  server.on('secureConnection', listener);
  return { count: () => count, stop: () => server.off('secureConnection', listener) };
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/** Registers a freshly made private key so the final secrets-in-logs test searches for it too. */
export function registerPrivateKey(keyPem: string): void {
  const line = keyPem.split('\n')[1] ?? '';
  if (line.length >= 12) registerSecret('private-key', line);
}

function registered(pair: PemPair): PemPair {
  registerPrivateKey(pair.keyPem);
  return pair;
}

/** The dev CA of a fixture, rebuilt from its files so tests can issue more certificates from it. */
export function devCertificateAuthority(dev: DevEnvironment): CertificateAuthority {
  return {
    certPem: readFileSync(dev.caFile, 'utf8'),
    keyPem: readFileSync(join(dev.dir, 'pki', 'ca-key.pem'), 'utf8'),
    subject: 'CN=hyok-proxy dev CA',
  };
}

export async function issueTestCertificate(ca: CertificateAuthority, options: IssueOptions): Promise<PemPair> {
  return registered(await issueCertificate(ca, options));
}

export async function selfSignedTestCertificate(options: IssueOptions): Promise<PemPair> {
  return registered(await createSelfSignedCertificate(options));
}

export async function foreignCertificateAuthority(commonName = 'not the hyok-proxy dev CA'): Promise<CertificateAuthority> {
  const ca = await createCertificateAuthority({ commonName });
  registerPrivateKey(ca.keyPem);
  return ca;
}

/** TLS client options presenting `pair` as the client certificate. */
export function clientCert(pair: PemPair): { cert: string; key: string } {
  return { cert: pair.certPem, key: pair.keyPem };
}

export interface ServerCertificateFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

export function devServerCertificateFiles(dev: DevEnvironment): ServerCertificateFiles {
  return { certFile: join(dev.dir, 'pki', 'server.pem'), keyFile: join(dev.dir, 'pki', 'server-key.pem') };
}

export function writeServerCertificate(files: ServerCertificateFiles, certPem: string, keyPem: string): void {
  writeFileSync(files.certFile, certPem);
  writeFileSync(files.keyFile, keyPem, { mode: 0o600 });
}

export const DAY_MS = 24 * 60 * 60 * 1000;
