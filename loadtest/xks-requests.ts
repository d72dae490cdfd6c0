import { randomBytes, randomUUID } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';

/**
 * Builds real, signed XKS requests for the load generator. They are signed
 * ahead of time and replayed: SigV4 has no nonce, so a signed request stays
 * valid for the proxy's 5-minute window, and the generator spends no CPU on
 * signing. Each scenario signs a fresh batch right before it runs.
 */

export interface Credential {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

export interface PreparedRequest {
  readonly method: 'POST';
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: string;
}

export interface Target {
  readonly host: string;
  readonly port: number;
  readonly uriPrefix: string;
  readonly credential: Credential;
  readonly region?: string;
}

export function metadata(operation: string): Record<string, string> {
  return {
    awsPrincipalArn: 'arn:aws:iam::123456789012:user/loadtest',
    kmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
    kmsOperation: operation,
    kmsRequestId: randomUUID(),
  };
}

export async function signRequest(target: Target, suffix: string, payload: unknown): Promise<PreparedRequest> {
  const path = `${target.uriPrefix}/kms/xks/v1/${suffix}`;
  const body = JSON.stringify(payload);
  const signer = new SignatureV4({ service: 'kms-xks-proxy', region: target.region ?? 'us-east-1', credentials: target.credential, sha256: Sha256 });
  const host = `${target.host}:${target.port}`;
  const signed = await signer.sign({
    method: 'POST',
    protocol: 'https:',
    hostname: target.host,
    port: target.port,
    path,
    query: {},
    headers: { host, 'content-type': 'application/json' },
    body,
  });
  return { method: 'POST', path, headers: signed.headers as Record<string, string>, body };
}

export interface EncryptShape {
  readonly plaintextBytes: number;
  readonly aadBytes: number;
}

export function encryptPayload(shape: EncryptShape): Record<string, unknown> {
  return {
    requestMetadata: metadata('GenerateDataKey'),
    plaintext: randomBytes(shape.plaintextBytes).toString('base64'),
    ...(shape.aadBytes > 0 ? { additionalAuthenticatedData: randomBytes(shape.aadBytes).toString('base64') } : {}),
    encryptionAlgorithm: 'AES_GCM',
  };
}

export async function signMany(count: number, build: (index: number) => Promise<PreparedRequest>): Promise<PreparedRequest[]> {
  const out: PreparedRequest[] = [];
  for (let i = 0; i < count; i++) out.push(await build(i));
  return out;
}

/** Sends one prepared request (dev certificates: not verified) and returns its JSON answer; non-200 rejects. */
export function sendOnce(target: Pick<Target, 'host' | 'port'>, prepared: PreparedRequest): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: target.host, port: target.port, path: prepared.path, method: 'POST', headers: prepared.headers, rejectUnauthorized: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body) as Record<string, unknown>) : reject(new Error(`${res.statusCode}: ${body}`))));
      },
    );
    req.on('error', reject);
    req.end(prepared.body);
  });
}

/** Real ciphertexts to decrypt, made through the proxy itself. */
export async function sealCiphertexts(target: Target, count: number): Promise<Array<Record<string, unknown>>> {
  const sealed: Array<Record<string, unknown>> = [];
  for (let i = 0; i < count; i++) sealed.push(await sendOnce(target, await signRequest(target, 'keys/foo/encrypt', encryptPayload({ plaintextBytes: 32, aadBytes: 0 }))));
  return sealed;
}

/** A decrypt request body for one answer of sealCiphertexts. */
export function decryptPayload(sealed: Record<string, unknown>): Record<string, unknown> {
  return {
    requestMetadata: metadata('Decrypt'),
    ciphertext: sealed['ciphertext'],
    ciphertextMetadata: sealed['ciphertextMetadata'],
    initializationVector: sealed['initializationVector'],
    authenticationTag: sealed['authenticationTag'],
    encryptionAlgorithm: 'AES_GCM',
  };
}
