import { readSecret } from '../config/load.js';
import type { Config } from '../config/schema.js';

/**
 * SigV4 secrets per key store, resolved from their references. Immutable: a
 * reload (SIGHUP or a watched secret file) builds a new store and swaps it in,
 * so requests in flight finish with the credentials they started with.
 */
export class CredentialStore {
  private readonly secrets: ReadonlyMap<string, ReadonlyMap<string, string>>;

  private constructor(secrets: ReadonlyMap<string, ReadonlyMap<string, string>>) {
    this.secrets = secrets;
  }

  static fromConfig(config: Config, env: Readonly<Record<string, string | undefined>> = process.env): CredentialStore {
    const secrets = new Map<string, Map<string, string>>();
    config.keyStores.forEach((store, s) => {
      const byAccessKey = new Map<string, string>();
      store.credentials.forEach((credential, c) => {
        byAccessKey.set(credential.accessKeyId, readSecret(credential.secretAccessKey, `keyStores[${s}].credentials[${c}].secretAccessKey`, env));
      });
      secrets.set(store.uriPrefix, byAccessKey);
    });
    return new CredentialStore(secrets);
  }

  /** The secret for an access key id, only within the key store it belongs to. */
  lookup(uriPrefix: string, accessKeyId: string): string | undefined {
    return this.secrets.get(uriPrefix)?.get(accessKeyId);
  }

  accessKeyIds(uriPrefix: string): string[] {
    return [...(this.secrets.get(uriPrefix)?.keys() ?? [])];
  }
}
