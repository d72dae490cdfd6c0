import type { Deadline } from '../../lib/deadline.js';
import type { HealthMonitor } from '../../hsm/health.js';
import type { KeyEntry, KeyStore } from '../../keys/catalog.js';
import type { HsmAttribution, KeyService } from '../../keys/key-service.js';
import type { Authorizer } from '../../policy/authorizer.js';
import type { KeyLifecycle } from '../../state/key-lifecycle.js';
import { ProxyError } from '../../errors/proxy-error.js';
import type { components } from './openapi-types.js';

export type RequestMetadata = components['schemas']['BaseRequestMetadata'];

/** What the listener established about the caller before the adapter runs. */
export interface CallerIdentity {
  readonly accessKeyId: string | undefined;
  readonly sigv4Region: string | undefined;
  readonly clientCertificateSubject: string | undefined;
}

/** Facts gathered while handling one request, for its audit record. */
export interface AuditNotes {
  hsmMember?: string;
  hsmAttempts?: number;
  hsmLatencyMs?: number;
  keyVersion?: number;
  policyStatement?: string;
  reason?: string;
  /** A compromised key was used under an override: the audit record is written at alert level. */
  alert?: boolean;
}

export interface XksCall {
  readonly requestId: string;
  readonly deadline: Deadline;
  readonly store: KeyStore;
  readonly externalKeyId: string | undefined;
  readonly identity: CallerIdentity;
  readonly audit: AuditNotes;
}

export interface ProxyIdentity {
  readonly vendor: string;
  readonly model: string;
  readonly fleetSize: number;
  readonly ekmVendor: string;
}

export interface XksDependencies {
  readonly keys: KeyService;
  readonly lifecycle: KeyLifecycle;
  readonly health: HealthMonitor;
  readonly authorizer: () => Authorizer;
  readonly limits: { readonly maxPlaintextBytes: number; readonly maxAadBytes: number };
  readonly proxy: ProxyIdentity;
}

/** Records which member served the call, after how many attempts and how long, for the audit record. */
export function noteHsm(call: XksCall, served: HsmAttribution): void {
  call.audit.hsmMember = served.member;
  call.audit.hsmAttempts = served.attempts;
  call.audit.hsmLatencyMs = Math.round(served.latencyMs * 1000) / 1000;
}

export function requireKey(call: XksCall): KeyEntry {
  const key = call.externalKeyId === undefined ? undefined : call.store.keys.get(call.externalKeyId);
  if (key === undefined) {
    throw new ProxyError('KEY_NOT_FOUND', 'The request was rejected because the specified external key is not found.');
  }
  return key;
}

/** Account and region from "arn:aws:kms:<region>:<account>:key/..." style ARNs. */
function arnParts(arn: string | undefined): { region: string | undefined; account: string | undefined } {
  if (arn === undefined) return { region: undefined, account: undefined };
  const parts = arn.split(':');
  if (parts.length < 6 || parts[0] !== 'arn') return { region: undefined, account: undefined };
  return { region: parts[3] === '' ? undefined : parts[3], account: parts[4] === '' ? undefined : parts[4] };
}

/** Checks secondary authorization; records the deciding statement for the audit log. */
export async function authorize(call: XksCall, deps: XksDependencies, action: string, metadata: RequestMetadata): Promise<void> {
  const keyArn = arnParts(metadata.kmsKeyArn);
  const principal = arnParts(metadata.awsPrincipalArn);
  const decision = await deps.authorizer().authorize({
    action,
    keyStore: call.store.name,
    externalKeyId: call.externalKeyId,
    attributes: {
      awsPrincipalArn: metadata.awsPrincipalArn,
      awsPrincipalAccount: principal.account,
      kmsKeyArn: metadata.kmsKeyArn,
      kmsKeyAccount: keyArn.account,
      kmsKeyRegion: keyArn.region,
      kmsOperation: metadata.kmsOperation,
      kmsViaService: metadata.kmsViaService,
      awsSourceVpc: metadata.awsSourceVpc,
      awsSourceVpce: metadata.awsSourceVpce,
      sigv4AccessKeyId: call.identity.accessKeyId,
      sigv4Region: call.identity.sigv4Region,
      clientCertificateSubject: call.identity.clientCertificateSubject,
    },
  });
  if (decision.statementId !== undefined) call.audit.policyStatement = decision.statementId;
  if (!decision.allowed) {
    call.audit.reason = decision.reason;
    throw new ProxyError('ACCESS_DENIED', 'The request was rejected because the operation is not authorized based on request metadata.');
  }
}

export function requireAesGcm(algorithm: string): void {
  if (algorithm !== 'AES_GCM') {
    throw new ProxyError('UNSUPPORTED_OPERATION', 'The specified encryptionAlgorithm is not implemented; XKS v1 supports AES_GCM.');
  }
}

/**
 * The checks every Encrypt and Decrypt makes before touching key material, in
 * an order that leaks least: algorithm, key existence, authorization, key state.
 */
export async function admitCryptoCall(
  call: XksCall,
  deps: XksDependencies,
  action: string,
  request: { readonly encryptionAlgorithm: string; readonly requestMetadata: RequestMetadata },
): Promise<KeyEntry> {
  requireAesGcm(request.encryptionAlgorithm);
  const key = requireKey(call);
  await authorize(call, deps, action, request.requestMetadata);
  requireEnabled(key);
  return key;
}

export function requireEnabled(key: KeyEntry): void {
  if (!key.enabled) {
    throw new ProxyError('INVALID_STATE', 'The request was rejected because the specified external key is disabled.');
  }
}
