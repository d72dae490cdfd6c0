/**
 * The platform ceiling for benchmarks: a bare Node HTTPS server that does the
 * same AES-256-GCM as the proxy with node:crypto and nothing else (no
 * authentication, HSM, policy, validation or logging), with the same TLS
 * settings. Run as its own process: `node dist/loadtest/baseline-server.js
 * <certFile> <keyFile> [port]`; it prints its port on stdout.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { DEFAULT_TLS_CIPHERS } from '../src/config/schema.js';

const [certFile, keyFile, port = '0'] = process.argv.slice(2);
if (certFile === undefined || keyFile === undefined) throw new Error('usage: baseline-server <certFile> <keyFile> [port]');
const key = randomBytes(32);

const server = createServer(
  { cert: readFileSync(certFile), key: readFileSync(keyFile), minVersion: 'TLSv1.2', ciphers: DEFAULT_TLS_CIPHERS.join(':'), ALPNProtocols: ['http/1.1'] },
  (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { plaintext: string; additionalAuthenticatedData?: string };
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      if (body.additionalAuthenticatedData !== undefined) cipher.setAAD(Buffer.from(body.additionalAuthenticatedData, 'base64'));
      const ciphertext = Buffer.concat([cipher.update(Buffer.from(body.plaintext, 'base64')), cipher.final()]);
      const json = JSON.stringify({
        ciphertext: ciphertext.toString('base64'),
        initializationVector: iv.toString('base64'),
        authenticationTag: cipher.getAuthTag().toString('base64'),
      });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(json) });
      res.end(json);
    });
  },
);
server.keepAliveTimeout = 65_000;
server.listen(Number(port), '127.0.0.1', () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
