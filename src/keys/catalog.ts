import type { Config } from '../config/schema.js';

/** One external key as a key store exposes it. */
export interface KeyEntry {
  readonly id: string;
  /** CKA_LABEL of the key object on every HSM member. */
  readonly label: string;
  readonly enabled: boolean;
  /** Pinned KCV (hex) the HSM members must report for this key's object. */
  readonly checkValue: string | undefined;
  /** Scheduled rotation: a new version when the current one is older than this. */
  readonly rotationPeriodDays: number | undefined;
}

/** A logical key store: one URI prefix with its own credentials and its own keys. */
export interface KeyStore {
  readonly name: string;
  readonly uriPrefix: string;
  readonly keys: ReadonlyMap<string, KeyEntry>;
  /** When set, only SigV4 scopes naming these regions are accepted. */
  readonly regions: ReadonlySet<string> | undefined;
  readonly rateLimit: { readonly requestsPerSecond: number; readonly burst: number };
}

/** Key stores by URI prefix. Immutable: a reload builds a new catalog and swaps it in. */
export class KeyCatalog {
  private readonly byPrefix: ReadonlyMap<string, KeyStore>;

  private constructor(stores: readonly KeyStore[]) {
    this.byPrefix = new Map(stores.map((store) => [store.uriPrefix, store]));
  }

  static fromConfig(config: Config): KeyCatalog {
    return new KeyCatalog(
      config.keyStores.map((store) => ({
        name: store.name,
        uriPrefix: store.uriPrefix,
        keys: new Map(
          store.keys.map((key) => [
            key.id,
            { id: key.id, label: key.label ?? key.id, enabled: key.enabled, checkValue: key.checkValue, rotationPeriodDays: key.rotationPeriodDays },
          ]),
        ),
        regions: store.regions === undefined ? undefined : new Set(store.regions),
        rateLimit: store.rateLimit,
      })),
    );
  }

  storeForPrefix(uriPrefix: string): KeyStore | undefined {
    return this.byPrefix.get(uriPrefix);
  }

  stores(): KeyStore[] {
    return [...this.byPrefix.values()];
  }
}

/**
 * The HSM object label of one version of a key. Version 1 is the configured
 * label itself, so keys provisioned before versioning need no renaming.
 */
export function objectLabel(key: KeyEntry, version: number): string {
  return version === 1 ? key.label : `${key.label}.v${version}`;
}
