import { ProxyError } from '../errors/proxy-error.js';
import type { HsmCluster } from '../hsm/cluster.js';
import { HsmError, type HsmErrorKind } from '../hsm/errors.js';
import type { KeyDescription } from '../hsm/protocol.js';
import type { Deadline } from '../lib/deadline.js';
import { objectLabel, type KeyEntry } from './catalog.js';

export const GCM_TAG_BYTES = 16;
export const GCM_IV_BYTES = 12;

export interface HsmAttribution {
  /** The member that answered, for the audit log. */
  readonly member: string;
  readonly attempts: number;
  readonly latencyMs: number;
}

export interface GcmEncryption extends HsmAttribution {
  readonly iv: Buffer;
  readonly ciphertext: Buffer;
  readonly tag: Buffer;
}

export interface GcmDecryption extends HsmAttribution {
  readonly plaintext: Buffer;
}

export interface KeyInspection extends HsmAttribution {
  readonly description: KeyDescription;
}

type Operation = 'encrypt' | 'decrypt' | 'describe';

/**
 * Contract-neutral key operations: AES-256-GCM in the HSM cluster with the AAD
 * the contract adapter built. Adapters own their wire formats; this layer owns
 * key versions and the translation of HSM failures into proxy errors.
 */
export class KeyService {
  private readonly cluster: HsmCluster;

  constructor(cluster: HsmCluster) {
    this.cluster = cluster;
  }

  async encrypt(key: KeyEntry, version: number, aad: Buffer, plaintext: Buffer, deadline: Deadline): Promise<GcmEncryption> {
    try {
      const { result, member, attempts, latencyMs } = await this.cluster.execute(
        { op: 'encrypt', label: objectLabel(key, version), aad: aad.toString('base64'), plaintext: plaintext.toString('base64') },
        deadline,
      );
      const sealed = Buffer.from(result.ciphertext, 'base64');
      const iv = Buffer.from(result.iv, 'base64');
      // Never hand a malformed HSM answer to the client as a ciphertext.
      if (sealed.length !== plaintext.length + GCM_TAG_BYTES || iv.length !== GCM_IV_BYTES) {
        throw new HsmError('internal', `HSM returned ${sealed.length} bytes and a ${iv.length}-byte IV for ${plaintext.length} bytes of plaintext`, { member });
      }
      return {
        iv,
        ciphertext: sealed.subarray(0, sealed.length - GCM_TAG_BYTES),
        tag: sealed.subarray(sealed.length - GCM_TAG_BYTES),
        member,
        attempts,
        latencyMs,
      };
    } catch (error) {
      throw toProxyError(error, 'encrypt');
    }
  }

  async decrypt(key: KeyEntry, version: number, aad: Buffer, iv: Buffer, ciphertext: Buffer, tag: Buffer, deadline: Deadline): Promise<GcmDecryption> {
    try {
      const { result, member, attempts, latencyMs } = await this.cluster.execute(
        {
          op: 'decrypt',
          label: objectLabel(key, version),
          aad: aad.toString('base64'),
          iv: iv.toString('base64'),
          ciphertext: Buffer.concat([ciphertext, tag]).toString('base64'),
        },
        deadline,
      );
      return { plaintext: Buffer.from(result.plaintext, 'base64'), member, attempts, latencyMs };
    } catch (error) {
      throw toProxyError(error, 'decrypt');
    }
  }

  async describe(key: KeyEntry, version: number, deadline: Deadline): Promise<KeyInspection> {
    try {
      const { result, member, attempts, latencyMs } = await this.cluster.execute({ op: 'describe', label: objectLabel(key, version) }, deadline);
      return { description: result, member, attempts, latencyMs };
    } catch (error) {
      throw toProxyError(error, 'describe');
    }
  }
}

const PUBLIC_MESSAGES: Record<HsmErrorKind, string> = {
  data: 'The request was rejected because the specified ciphertext, initialization vector, additional authenticated data or authentication tag is corrupted, missing, or otherwise invalid.',
  'key-usage': 'The request was rejected because the specified key does not support the requested operation.',
  'key-not-found': 'The request was rejected because the specified external key is not found.',
  'key-ambiguous': 'The external key manager holds more than one key object for this key.',
  session: 'The external key manager failed to process the request.',
  device: 'The external key manager failed to process the request.',
  timeout: 'The external key manager did not answer in time.',
  unavailable: 'No external key manager is available to serve the request.',
  misconfigured: 'The external key manager is not configured correctly.',
  internal: 'The proxy failed to process the request.',
};

function toProxyError(error: unknown, operation: Operation): ProxyError {
  if (!(error instanceof HsmError)) {
    return new ProxyError('INTERNAL', PUBLIC_MESSAGES.internal, { cause: error, retryable: false });
  }
  const detail = { hsmKind: error.kind, ckr: error.ckrName, member: error.member, reason: error.message };
  const message = PUBLIC_MESSAGES[error.kind];
  switch (error.kind) {
    case 'data':
      // On encrypt, "data" means the HSM refused the plaintext; on decrypt it is the GCM check failing.
      return operation === 'decrypt'
        ? new ProxyError('INVALID_CIPHERTEXT', message, { cause: error, detail })
        : new ProxyError('VALIDATION', 'The external key manager rejected the input.', { cause: error, detail });
    case 'key-usage':
      return new ProxyError('INVALID_KEY_USAGE', message, { cause: error, detail });
    case 'key-not-found':
      return new ProxyError('KEY_NOT_FOUND', message, { cause: error, detail });
    case 'timeout':
      return new ProxyError('DEPENDENCY_TIMEOUT', message, { cause: error, detail });
    case 'key-ambiguous':
    case 'misconfigured':
    case 'internal':
      return new ProxyError('INTERNAL', message, { cause: error, detail, retryable: false });
    case 'session':
    case 'device':
    case 'unavailable':
      return new ProxyError('INTERNAL', message, { cause: error, detail, retryable: true });
  }
}
