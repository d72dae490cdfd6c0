import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import request from 'supertest';
import type { OpenApiContract } from '../../src/contract/openapi.js';
import { fromRoot } from '../../src/lib/paths.js';
import { OpenApiContract as Contract } from '../../src/contract/openapi.js';
import { registerSecret } from './test-env.js';

/**
 * A test-side AWS KMS: signs requests with an independent SigV4 implementation
 * (@smithy/signature-v4) and checks EVERY response it receives against the
 * OpenAPI contract, so the suite as a whole checks the contract on each
 * response it produces.
 */

export interface Credential {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

export interface XksResponse {
  readonly status: number;
  readonly body: Record<string, unknown>;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

export interface SendOptions {
  readonly method?: string;
  readonly credential?: Credential;
  readonly region?: string;
  readonly signingDate?: Date;
  /** Extra headers included in the signature (curl signs content-type, for example). */
  readonly signedHeaders?: Readonly<Record<string, string>>;
  /** Headers added after signing (not covered by the signature). */
  readonly unsignedHeaders?: Readonly<Record<string, string>>;
  /** Send without any Authorization header. */
  readonly unsigned?: boolean;
  /** Change the request after signing (to test tampering). */
  readonly tamper?: (parts: { headers: Record<string, string>; body: Buffer; path: string }) => void;
  readonly contentType?: string | null;
  /** Override the validation operation (e.g. for a path that is not an XKS API). */
  readonly expectOperation?: string;
  readonly clientCertificate?: { readonly cert: string; readonly key: string };
}

let contractInstance: OpenApiContract | undefined;
export function xksContract(): OpenApiContract {
  contractInstance ??= Contract.load(fromRoot('contracts', 'aws-xks-v1.openapi.yaml'));
  return contractInstance;
}

let validated = 0;
/** How many responses this process validated against the contract. */
export function validatedResponseCount(): number {
  return validated;
}

const API_BY_SUFFIX: Record<string, string> = { metadata: 'GetKeyMetadata', encrypt: 'Encrypt', decrypt: 'Decrypt', health: 'GetHealthStatus' };

/** The operation whose declared responses must match, derived from the path like the router does. */
export function operationFor(path: string, method: string, status: number): string | undefined {
  const match = /\/kms\/xks\/v1\/(?:keys\/[^/]+\/(metadata|encrypt|decrypt)|(health))$/.exec(path.split('?')[0] ?? '');
  if (path === '/ping') return 'Ping';
  if (path === '/ready') return 'Ready';
  if (match === null) return undefined;
  const api = API_BY_SUFFIX[(match[1] ?? match[2]) as string] as string;
  return status === 405 && method !== 'POST' ? `${api}MethodNotAllowed` : api;
}

/** Asserts that a response conforms to the contract; errors on unknown paths must still be XKS error bodies. */
export function assertConforms(path: string, method: string, status: number, body: unknown): void {
  const contract = xksContract();
  const operation = operationFor(path, method, status);
  const violation =
    operation === undefined ? contract.validateComponent('ErrorResponse', body) : contract.validateResponse(operation, status, body);
  assert.equal(violation, undefined, `response ${method} ${path} -> ${status} breaks the contract: ${JSON.stringify(violation)} body=${JSON.stringify(body)}`);
  validated += 1;
}

export interface ClientOptions {
  readonly baseUrl: string;
  readonly uriPrefix: string;
  readonly credential: Credential;
  readonly ca: string;
  readonly region?: string;
  readonly clientCertificate?: { readonly cert: string; readonly key: string };
}

export function requestMetadata(operation: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    awsPrincipalArn: 'arn:aws:iam::123456789012:user/Alice',
    kmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
    kmsOperation: operation,
    kmsRequestId: randomUUID(),
    kmsViaService: 'ebs',
    ...extra,
  };
}

/** The decrypt inputs carried by an encrypt response. */
/** Asserts the contract's error: status, errorName and a short printable message. */
export function expectXksError(response: XksResponse, status: number, errorName: string): void {
  assert.equal(response.status, status, `expected ${status} ${errorName}, got ${response.status} ${response.text}`);
  assert.equal(response.body['errorName'], errorName);
  const message = response.body['errorMessage'];
  assert.ok(typeof message === 'string' && message.length < 512 && /^[\x20-\x7e]*$/.test(message), 'printable ASCII message under 512 chars');
}

export interface Sealed {
  readonly ciphertext: string;
  readonly iv: string;
  readonly tag: string;
  readonly metadata: string | undefined;
}

export function sealedFrom(response: XksResponse): Sealed {
  assert.equal(response.status, 200, `encrypt failed: ${response.text}`);
  return {
    ciphertext: response.body['ciphertext'] as string,
    iv: response.body['initializationVector'] as string,
    tag: response.body['authenticationTag'] as string,
    metadata: response.body['ciphertextMetadata'] as string | undefined,
  };
}

export class XksTestClient {
  readonly options: ClientOptions;

  constructor(options: ClientOptions) {
    this.options = options;
  }

  apiPath(suffix: string, uriPrefix = this.options.uriPrefix): string {
    return `${uriPrefix}/kms/xks/v1/${suffix}`;
  }

  async send(path: string, payload: unknown, options: SendOptions = {}): Promise<XksResponse> {
    const method = options.method ?? 'POST';
    const body =
      payload === undefined ? Buffer.alloc(0) : Buffer.isBuffer(payload) ? payload : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload));
    const url = new URL(this.options.baseUrl);
    const headers: Record<string, string> = { host: url.host };
    if (options.contentType !== null) headers['content-type'] = options.contentType ?? 'application/json';
    Object.assign(headers, options.signedHeaders ?? {});
    if (options.unsigned !== true) {
      const credential = options.credential ?? this.options.credential;
      const signer = new SignatureV4({
        service: 'kms-xks-proxy',
        region: options.region ?? this.options.region ?? 'us-east-1',
        credentials: credential,
        sha256: Sha256,
      });
      const [pathname, query] = path.split('?', 2);
      const queryParams: Record<string, string> = {};
      for (const [name, value] of new URLSearchParams(query ?? '')) queryParams[name] = value;
      const signed = await signer.sign(
        { method, protocol: 'https:', hostname: url.hostname, port: Number(url.port), path: pathname ?? '/', query: queryParams, headers: { ...headers }, body },
        options.signingDate === undefined ? {} : { signingDate: options.signingDate },
      );
      Object.assign(headers, signed.headers as Record<string, string>);
    }
    const parts = { headers, body, path };
    options.tamper?.(parts);
    Object.assign(parts.headers, options.unsignedHeaders ?? {});
    const agent = request(this.options.baseUrl);
    let call = (agent as unknown as Record<string, (p: string) => request.Test>)[method.toLowerCase()]?.call(agent, parts.path);
    if (call === undefined) throw new Error(`unsupported method ${method}`);
    // Connect to 127.0.0.1 but speak to "localhost", the name in the dev certificate (SNI must not be an IP).
    call = call.connect({ localhost: '127.0.0.1' }).ca(this.options.ca);
    const certificate = options.clientCertificate ?? this.options.clientCertificate;
    if (certificate !== undefined) call = call.key(certificate.key).cert(certificate.cert);
    for (const [name, value] of Object.entries(parts.headers)) if (name !== 'host') call = call.set(name, value);
    call = call.set('host', parts.headers['host'] ?? url.host);
    // superagent would JSON-encode a Buffer under a JSON content type; the exact signed bytes must go out.
    if (parts.body.length > 0 || method === 'POST') call = call.serialize((data: unknown) => data as string).send(parts.body);
    const response = await call.buffer(true).parse((res, done) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => done(null, Buffer.concat(chunks).toString('utf8')));
    });
    const text = response.body as unknown as string;
    let parsed: Record<string, unknown> = {};
    try {
      parsed = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
    } catch {
      assert.fail(`response to ${method} ${path} is not JSON: ${text.slice(0, 200)}`);
    }
    if (options.expectOperation !== undefined) {
      const violation = xksContract().validateResponse(options.expectOperation, response.status, parsed);
      assert.equal(violation, undefined, `response breaks the contract: ${JSON.stringify(violation)}`);
      validated += 1;
    } else {
      assertConforms(parts.path, method, response.status, parsed);
    }
    return { status: response.status, body: parsed, headers: response.headers as Record<string, string>, text };
  }

  post(suffix: string, payload: unknown, options: SendOptions = {}): Promise<XksResponse> {
    return this.send(this.apiPath(suffix), payload, options);
  }

  encrypt(keyId: string, input: { plaintext: Buffer; aad?: Buffer; cdiv?: boolean; kmsOperation?: string }, options: SendOptions = {}): Promise<XksResponse> {
    // Short values could match innocent log text; tests use 12+ bytes where leaks matter.
    if (input.plaintext.length >= 12) registerSecret('plaintext', input.plaintext);
    if (input.aad !== undefined && input.aad.length >= 12) registerSecret('aad', input.aad);
    return this.post(
      `keys/${keyId}/encrypt`,
      {
        requestMetadata: requestMetadata(input.kmsOperation ?? 'Encrypt'),
        plaintext: input.plaintext.toString('base64'),
        encryptionAlgorithm: 'AES_GCM',
        ...(input.aad === undefined ? {} : { additionalAuthenticatedData: input.aad.toString('base64') }),
        ...(input.cdiv === true ? { ciphertextDataIntegrityValueAlgorithm: 'SHA_256' } : {}),
      },
      options,
    );
  }

  decrypt(
    keyId: string,
    input: { ciphertext: string; iv: string; tag: string; metadata?: string | undefined; aad?: Buffer | undefined },
    options: SendOptions = {},
  ): Promise<XksResponse> {
    return this.post(
      `keys/${keyId}/decrypt`,
      {
        requestMetadata: requestMetadata('Decrypt'),
        ciphertext: input.ciphertext,
        initializationVector: input.iv,
        authenticationTag: input.tag,
        encryptionAlgorithm: 'AES_GCM',
        ...(input.metadata === undefined ? {} : { ciphertextMetadata: input.metadata }),
        ...(input.aad === undefined ? {} : { additionalAuthenticatedData: input.aad.toString('base64') }),
      },
      options,
    );
  }

  metadata(keyId: string, options: SendOptions = {}): Promise<XksResponse> {
    return this.post(`keys/${keyId}/metadata`, { requestMetadata: requestMetadata('DescribeKey') }, options);
  }

  health(options: SendOptions = {}): Promise<XksResponse> {
    return this.post('health', { requestMetadata: { kmsRequestId: randomUUID(), kmsOperation: 'KmsHealthCheck' } }, options);
  }

  /** Encrypt then decrypt; returns both responses. */
  async roundTrip(keyId: string, plaintext: Buffer, aad?: Buffer): Promise<{ encrypted: XksResponse; decrypted: XksResponse }> {
    const encrypted = await this.encrypt(keyId, aad === undefined ? { plaintext } : { plaintext, aad });
    const decrypted = await this.decrypt(keyId, { ...sealedFrom(encrypted), aad });
    return { encrypted, decrypted };
  }
}
