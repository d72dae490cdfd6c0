import { ProxyError } from '../errors/proxy-error.js';
import type { KeyEntry } from '../keys/catalog.js';
import { effectiveKey, keyStatus, mayDecrypt, mayEncrypt, type EffectiveKey } from './lifecycle.js';
import type { StateService } from './service.js';

/**
 * What the request path asks the lifecycle: which key version to encrypt with,
 * whether a version may decrypt, what KMS sees as the key status. Reads the
 * in-memory state only; never waits for an HSM or Redis.
 */
export class KeyLifecycle {
  private readonly state: StateService | undefined;

  constructor(state: StateService | undefined) {
    this.state = state;
  }

  effective(keyStore: string, key: KeyEntry): EffectiveKey | undefined {
    return this.state === undefined ? undefined : effectiveKey(this.state.current, keyStore, key.id);
  }

  /** The version to encrypt with, or InvalidStateException. */
  encryptVersion(keyStore: string, key: KeyEntry): number {
    const effective = this.effective(keyStore, key);
    if (effective === undefined) return 1;
    const permission = mayEncrypt(effective);
    if (!permission.allowed) throw new ProxyError('INVALID_STATE', 'The request was rejected because the specified external key is disabled, deactivated or blocked.', { detail: { reason: permission.reason } });
    return permission.version;
  }

  /** Whether `version` may decrypt; `alert` is true for a compromised key used under an approved override. */
  checkDecrypt(keyStore: string, key: KeyEntry, version: number): { alert: boolean } {
    const effective = this.effective(keyStore, key);
    if (effective === undefined) {
      if (version !== 1) throw new ProxyError('INVALID_CIPHERTEXT', 'The ciphertext refers to a key version that does not exist.');
      return { alert: false };
    }
    const permission = mayDecrypt(effective, version);
    if (!permission.allowed) {
      if (effective.versionState(version) === undefined) throw new ProxyError('INVALID_CIPHERTEXT', 'The ciphertext refers to a key version that does not exist.');
      throw new ProxyError('INVALID_STATE', 'The request was rejected because the specified external key is disabled, deactivated or blocked.', { detail: { reason: permission.reason } });
    }
    return { alert: permission.alert };
  }

  /** The version GetKeyMetadata describes, and the status KMS sees. */
  metadata(keyStore: string, key: KeyEntry): { version: number; status: 'ENABLED' | 'DISABLED'; destroyed: boolean } {
    const effective = this.effective(keyStore, key);
    if (effective === undefined) return { version: 1, status: 'ENABLED', destroyed: false };
    return { version: effective.currentVersion, status: keyStatus(effective), destroyed: effective.state === 'destroyed' };
  }
}
