import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import sjson from 'secure-json-parse';
import type { AuditLog, XksRequestAudit } from '../../audit/audit-log.js';
import type { SigV4Verifier } from '../../auth/sigv4.js';
import type { CredentialStore } from '../../auth/credentials.js';
import { EXTERNAL_KEY_ID_PATTERN } from '../../config/schema.js';
import { ProxyError } from '../../errors/proxy-error.js';
import type { KeyCatalog, KeyStore } from '../../keys/catalog.js';
import { Deadline } from '../../lib/deadline.js';
import { RequestAbortedError, readBody } from '../../listener/body.js';
import type { ProxyMetrics } from '../../observability/metrics.js';
import type { OpenApiContract } from '../openapi.js';
import type { AuditNotes, CallerIdentity, RequestMetadata, XksCall, XksDependencies } from './context.js';
import { renderXksError } from './errors.js';
import { decrypt } from './ops/decrypt.js';
import { encrypt } from './ops/encrypt.js';
import { getHealthStatus } from './ops/get-health-status.js';
import { getKeyMetadata } from './ops/get-key-metadata.js';
import type { components } from './openapi-types.js';
import { TokenBucket } from '../../lib/token-bucket.js';

type Schemas = components['schemas'];

/** The four XKS APIs, by the operationId the contract gives them. */
export type XksApi = 'GetKeyMetadata' | 'Encrypt' | 'Decrypt' | 'GetHealthStatus';

interface XksRoute {
  readonly uriPrefix: string;
  readonly api: XksApi;
  readonly externalKeyId: string | undefined;
}

/** A Map, not an object literal: "constructor" or "__proto__" in a path must not find anything. */
const OPERATION_BY_SUFFIX: ReadonlyMap<string, XksApi> = new Map([
  ['metadata', 'GetKeyMetadata'],
  ['encrypt', 'Encrypt'],
  ['decrypt', 'Decrypt'],
]);

const XKS_PATH = /^(.*)\/kms\/xks\/v1\/(?:keys\/([^/]*)\/([^/]*)|health)$/;

/** Recognises "<prefix>/kms/xks/v1/keys/<id>/<op>" and "<prefix>/kms/xks/v1/health". */
export function matchXksPath(path: string): XksRoute | { readonly uriPrefix: string; readonly invalid: true } | undefined {
  const match = XKS_PATH.exec(path);
  if (match === null) return path.includes('/kms/xks/v1') ? { uriPrefix: '', invalid: true } : undefined;
  const [, uriPrefix = '', keyId, suffix] = match;
  if (keyId === undefined) return { uriPrefix, api: 'GetHealthStatus', externalKeyId: undefined };
  const api = suffix === undefined ? undefined : OPERATION_BY_SUFFIX.get(suffix);
  if (api === undefined || !EXTERNAL_KEY_ID_PATTERN.test(keyId)) return { uriPrefix, invalid: true };
  return { uriPrefix, api, externalKeyId: keyId };
}

export interface XksRouterOptions {
  readonly deps: XksDependencies;
  readonly catalog: () => KeyCatalog;
  readonly credentials: () => CredentialStore;
  readonly verifier: SigV4Verifier;
  readonly contract: OpenApiContract;
  readonly audit: AuditLog;
  readonly logger: Logger;
  readonly metrics: ProxyMetrics;
  readonly limits: { readonly maxBodyBytes: number; readonly maxInFlightRequests: number; readonly requestBudgetMs: number };
  readonly clientCertificateSubject: (req: IncomingMessage) => string | undefined;
  /** Sent on every XKS response (the security headers helmet would set). */
  readonly responseHeaders: ReadonlyArray<readonly [string, string]>;
}

/** Answers an XKS path and returns true, or returns false for anything else (ping, ready, not found). */
export type XksHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

const INVALID_URI = (): ProxyError => new ProxyError('INVALID_URI_PATH', 'The request was rejected because the specified URI path is not valid.');
const AUTH_FAILED = (): ProxyError => new ProxyError('AUTHENTICATION_FAILED', 'The request was rejected due to an invalid AWS SigV4 signature.');

function isJsonContentType(value: string | undefined): boolean {
  if (value === undefined) return false;
  const type = value.split(';', 1)[0]?.trim().toLowerCase();
  return type === 'application/json';
}

/**
 * The XKS request path, in the order that leaks least: route and key store
 * (404), method (405), load shedding (429), body size, SigV4 (401), quota (429),
 * JSON and schema (400), then the operation itself, which authorizes before it
 * touches any key. Every request, answered or aborted, leaves one audit record.
 */
export function createXksRouter(options: XksRouterOptions): XksHandler {
  const { deps, verifier, contract, audit, logger, metrics, limits } = options;
  // Raw header list for writeHead: no per-request setHeader validation or header map.
  const baseHeaders: readonly string[] = [...options.responseHeaders.flat(), 'Content-Type', 'application/json', 'Cache-Control', 'no-store'];
  const send = (res: ServerResponse, status: number, body: unknown, extra: readonly string[] = []): void => {
    const json = JSON.stringify(body);
    res.writeHead(status, [...baseHeaders, 'Content-Length', String(Buffer.byteLength(json)), ...extra]);
    res.end(json);
  };
  const buckets = new Map<string, TokenBucket>();
  let inFlight = 0;

  const bucketFor = (store: KeyStore): TokenBucket | undefined => {
    if (store.rateLimit.requestsPerSecond <= 0) return undefined;
    let bucket = buckets.get(store.name);
    if (bucket === undefined || !bucket.sameShape(store.rateLimit.requestsPerSecond, store.rateLimit.burst)) {
      bucket = new TokenBucket(store.rateLimit.requestsPerSecond, store.rateLimit.burst);
      buckets.set(store.name, bucket);
    }
    return bucket;
  };

  async function handle(req: IncomingMessage, res: ServerResponse, route: XksRoute | { uriPrefix: string; invalid: true }): Promise<void> {
    const startedAt = performance.now();
    const requestId = randomUUID();
    const notes: AuditNotes = {};
    const api: XksApi | 'Unknown' = 'api' in route ? route.api : 'Unknown';
    let store: KeyStore | undefined;
    let metadata: RequestMetadata | undefined;
    let identity: CallerIdentity = { accessKeyId: undefined, sigv4Region: undefined, clientCertificateSubject: options.clientCertificateSubject(req) };
    let status = 200;
    let body: unknown;
    let aborted = false;
    let allowPostOnly = false;
    let failure: ProxyError | undefined;
    inFlight += 1;
    try {
      if ('invalid' in route) throw INVALID_URI();
      store = options.catalog().storeForPrefix(route.uriPrefix);
      if (store === undefined) throw INVALID_URI();
      if (req.method !== 'POST') {
        allowPostOnly = true;
        throw new ProxyError('METHOD_NOT_ALLOWED', `XKS APIs accept POST only, not ${req.method === 'GET' ? 'GET' : 'this method'}.`);
      }
      if (inFlight > limits.maxInFlightRequests) {
        notes.reason = 'too many requests in flight';
        throw new ProxyError('THROTTLED', 'The request was rejected because the request rate is too high.');
      }
      const deadline = Deadline.after(limits.requestBudgetMs);
      const raw = await readBody(req, limits.maxBodyBytes);

      const [path = '', query = ''] = (req.url ?? '').split('?', 2);
      const uriPrefix = store.uriPrefix;
      const verdict = verifier.verify({ method: req.method, path, query, rawHeaders: req.rawHeaders, body: raw }, (accessKeyId) =>
        options.credentials().lookup(uriPrefix, accessKeyId),
      );
      if (!verdict.ok) {
        notes.reason = `sigv4 ${verdict.reason}: ${verdict.detail}`;
        throw AUTH_FAILED();
      }
      identity = { ...identity, accessKeyId: verdict.accessKeyId, sigv4Region: verdict.region };
      if (store.regions !== undefined && !store.regions.has(verdict.region)) {
        notes.reason = 'sigv4 region not allowed for this key store';
        throw AUTH_FAILED();
      }
      if (bucketFor(store)?.take() === false) {
        notes.reason = 'key store quota exceeded';
        throw new ProxyError('THROTTLED', 'The request was rejected because the key store exceeded its request quota.');
      }
      if (!isJsonContentType(req.headers['content-type'])) {
        throw new ProxyError('VALIDATION', 'Content-Type must be application/json.');
      }
      let parsed: unknown;
      try {
        parsed = sjson.parse(raw.toString('utf8'), undefined, { protoAction: 'error', constructorAction: 'error' });
      } catch {
        throw new ProxyError('VALIDATION', 'The request body is not valid JSON.');
      }
      const violation = contract.validateRequest(route.api, parsed);
      if (violation !== undefined) throw new ProxyError('VALIDATION', `Invalid request: ${violation.field} ${violation.expected}.`);
      metadata = (parsed as { requestMetadata: RequestMetadata }).requestMetadata;

      const call: XksCall = { requestId, deadline, store, externalKeyId: route.externalKeyId, identity, audit: notes };
      switch (route.api) {
        case 'Encrypt':
          body = await encrypt(call, parsed as Schemas['EncryptRequest'], deps);
          break;
        case 'Decrypt':
          body = await decrypt(call, parsed as Schemas['DecryptRequest'], deps);
          break;
        case 'GetKeyMetadata':
          body = await getKeyMetadata(call, parsed as Schemas['GetKeyMetadataRequest'], deps);
          break;
        case 'GetHealthStatus':
          body = await getHealthStatus(call, deps);
          break;
      }
    } catch (error) {
      if (error instanceof RequestAbortedError) {
        aborted = true;
      } else {
        failure = error instanceof ProxyError ? error : new ProxyError('INTERNAL', 'The proxy failed to process the request.', { cause: error });
        const rendered = renderXksError(failure);
        status = rendered.status;
        body = rendered.body;
        if (failure.detail?.['reason'] !== undefined && notes.reason === undefined) notes.reason = String(failure.detail['reason']);
        if (status >= 500 && status !== 501) {
          logger.error({ requestId, api, err: failure.cause ?? failure, detail: failure.detail }, 'XKS request failed');
        }
      }
    } finally {
      inFlight -= 1;
    }

    const errorName = failure === undefined ? undefined : (body as { errorName: string }).errorName;
    const record: XksRequestAudit = {
      event: 'xks.request',
      requestId,
      kmsRequestId: metadata?.kmsRequestId?.slice(0, 256),
      keyStore: store?.name,
      uriPrefix: store?.uriPrefix,
      api,
      externalKeyId: 'externalKeyId' in route ? route.externalKeyId : undefined,
      kmsOperation: metadata?.kmsOperation?.slice(0, 256),
      awsPrincipalArn: metadata?.awsPrincipalArn,
      kmsKeyArn: metadata?.kmsKeyArn,
      kmsViaService: metadata?.kmsViaService,
      awsSourceVpc: metadata?.awsSourceVpc,
      awsSourceVpce: metadata?.awsSourceVpce,
      accessKeyId: identity.accessKeyId,
      clientCertificateSubject: identity.clientCertificateSubject,
      sourceIp: req.socket.remoteAddress,
      outcome: aborted ? 'aborted' : failure === undefined ? 'success' : 'failure',
      status: aborted ? 0 : status,
      errorName,
      reason: notes.reason,
      policyStatement: notes.policyStatement,
      keyVersion: notes.keyVersion,
      hsmMember: notes.hsmMember,
      hsmAttempts: notes.hsmAttempts,
      hsmLatencyMs: notes.hsmLatencyMs,
      latencyMs: Math.round((performance.now() - startedAt) * 1000) / 1000,
    };
    try {
      if (notes.alert === true) audit.alert(record);
      else audit.write(record);
    } catch (error) {
      // Never serve a result that was not audited.
      logger.error({ err: error, requestId }, 'audit write failed; failing the request');
      const rendered = renderXksError(new ProxyError('INTERNAL', 'The proxy could not record the request.'));
      status = rendered.status;
      body = rendered.body;
    }
    metrics.observeRequest('aws-xks', api, store?.name ?? 'unknown', errorName ?? (aborted ? 'aborted' : 'success'), performance.now() - startedAt);
    if (aborted || res.writableEnded) return;
    const extra = [...(allowPostOnly ? ['Allow', 'POST'] : []), ...(failure?.detail?.['reason'] === 'body too large' ? ['Connection', 'close'] : [])];
    send(res, status, body, extra);
  }

  return (req, res) => {
    const path = (req.url ?? '').split('?', 1)[0] ?? '';
    const route = matchXksPath(path);
    if (route === undefined) return false;
    handle(req, res, route).catch((error: unknown) => {
      logger.error({ err: error }, 'unhandled error in the XKS router');
      if (!res.headersSent) {
        const rendered = renderXksError(error);
        send(res, rendered.status, rendered.body);
      }
    });
    return true;
  };
}
