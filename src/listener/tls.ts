import { readFileSync } from 'node:fs';
import { createSecureContext, type PeerCertificate, type SecureContextOptions, type TLSSocket } from 'node:tls';
import type { Config } from '../config/schema.js';

type TlsConfig = Config['server']['tls'];

export interface ServerTlsSettings extends SecureContextOptions {
  requestCert: boolean;
  rejectUnauthorized: boolean;
}

/** Reads the certificate files into the options of a TLS server (or of setSecureContext on reload). */
export function loadSecureContextOptions(tls: TlsConfig): SecureContextOptions {
  const options: SecureContextOptions = {
    cert: readFileSync(tls.certFile),
    key: readFileSync(tls.keyFile),
    minVersion: tls.minVersion,
    ciphers: tls.ciphers.join(':'),
    honorCipherOrder: true,
  };
  if (tls.clientAuth.mode !== 'off' && tls.clientAuth.caFile !== undefined) options.ca = readFileSync(tls.clientAuth.caFile);
  // Fails here, not on a client's handshake, when the key does not match the certificate.
  createSecureContext(options);
  return options;
}

export function serverTlsSettings(tls: TlsConfig): ServerTlsSettings {
  return {
    ...loadSecureContextOptions(tls),
    // "optional": ask for a certificate and check any presented one ourselves; "required": OpenSSL rejects a missing or unchained one.
    requestCert: tls.clientAuth.mode !== 'off',
    rejectUnauthorized: tls.clientAuth.mode === 'required',
  };
}

export interface ClientCertificateVerdict {
  readonly accepted: boolean;
  /** "CN=..." of the presented certificate, for audit records. */
  readonly subject: string | undefined;
  readonly reason?: string;
}

function commonNames(certificate: PeerCertificate): string[] {
  const cn: unknown = certificate.subject?.CN;
  if (typeof cn === 'string') return [cn];
  if (Array.isArray(cn)) return cn.filter((value): value is string => typeof value === 'string');
  return [];
}

function dnsNames(certificate: PeerCertificate): string[] {
  return (certificate.subjectaltname ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4).toLowerCase());
}

/**
 * The spec's mTLS rule: the chain must end at the configured CA (OpenSSL checks
 * that) AND the subject must be the configured one (checked here, the moment
 * the handshake completes and before any HTTP byte is read).
 */
export function checkClientCertificate(socket: TLSSocket, clientAuth: TlsConfig['clientAuth']): ClientCertificateVerdict {
  if (clientAuth.mode === 'off') return { accepted: true, subject: undefined };
  const certificate = socket.getPeerCertificate();
  const presented = certificate !== null && Object.keys(certificate).length > 0;
  if (!presented) {
    return clientAuth.mode === 'optional'
      ? { accepted: true, subject: undefined }
      : { accepted: false, subject: undefined, reason: 'no client certificate' };
  }
  const cns = commonNames(certificate);
  const subject = cns.length > 0 ? `CN=${cns.join('+')}` : undefined;
  if (!socket.authorized) {
    return { accepted: false, subject, reason: `client certificate not trusted (${String(socket.authorizationError)})` };
  }
  const allowedCns = new Set(clientAuth.allowedSubjects.commonNames);
  const allowedDns = new Set(clientAuth.allowedSubjects.dnsNames.map((name) => name.toLowerCase()));
  const allowed = cns.some((cn) => allowedCns.has(cn)) || dnsNames(certificate).some((name) => allowedDns.has(name));
  return allowed ? { accepted: true, subject } : { accepted: false, subject, reason: 'client certificate subject not allowed' };
}
