import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { emptyState, StateDocumentSchema, type StateDocument } from './document.js';
import type { HsmStateStore } from './hsm-store.js';

/** Spreads "the state changed" across replicas (Redis pub/sub); replicas then reload from the HSMs. */
export interface StateNotifier {
  publish(version: number): void;
  /** `version` is undefined when changes may have been missed (e.g. after a reconnect). */
  subscribe(listener: (version: number | undefined) => void): void;
  close(): Promise<void>;
}

export class StateConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateConflictError';
  }
}

export interface StateServiceSettings {
  readonly syncIntervalMs: number;
}

const WRITE_ATTEMPTS = 5;

/**
 * The document to adopt from what the members hold: the highest version; when
 * members disagree on that version's content (a writer that lost a race may
 * leave its copy on a minority), the content most members hold, then the
 * smallest digest, so every replica makes the same choice.
 */
export function chooseNewest(documents: Iterable<StateDocument | null | undefined>): StateDocument | undefined {
  const candidates = new Map<string, { document: StateDocument; holders: number }>();
  let top = -1;
  for (const document of documents) {
    if (document === undefined || document === null || document.version < top) continue;
    if (document.version > top) {
      top = document.version;
      candidates.clear();
    }
    const digest = createHash('sha256').update(JSON.stringify(document)).digest('hex');
    const entry = candidates.get(digest);
    candidates.set(digest, { document, holders: (entry?.holders ?? 0) + 1 });
  }
  const ranked = [...candidates].sort(([digestA, a], [digestB, b]) => b.holders - a.holders || (digestA < digestB ? -1 : 1));
  return ranked[0]?.[1].document;
}

/**
 * The replica's copy of the fleet state (ADR 0004). Requests read `current`
 * (in memory); admin actions go through `mutate`, which writes a new version
 * to the HSM members compare-and-set and tells the other replicas.
 */
export class StateService {
  private readonly store: HsmStateStore;
  private readonly settings: StateServiceSettings;
  private readonly notifier: StateNotifier | undefined;
  private readonly logger: Logger;
  private document: StateDocument = emptyState();
  private readonly listeners: Array<(document: StateDocument) => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private followUp: Promise<void> | undefined;
  /** Serialises this replica's own writes. */
  private writeChain: Promise<unknown> = Promise.resolve();

  constructor(store: HsmStateStore, settings: StateServiceSettings, notifier: StateNotifier | undefined, logger: Logger) {
    this.store = store;
    this.settings = settings;
    this.notifier = notifier;
    this.logger = logger;
  }

  get current(): StateDocument {
    return this.document;
  }

  onChange(listener: (document: StateDocument) => void): void {
    this.listeners.push(listener);
  }

  async start(): Promise<void> {
    await this.sync();
    this.notifier?.subscribe((version) => {
      if (version === undefined || version > this.document.version) void this.sync();
    });
    this.timer = setInterval(() => void this.sync(), this.settings.syncIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * Adopts the newest document found on any member and rewrites members that lag behind it. A sync asked for
   * while one runs gets a fresh one afterwards: the running one may have read the members before the change landed.
   */
  sync(): Promise<void> {
    if (this.syncing === undefined) {
      this.syncing = this.doSync().finally(() => {
        this.syncing = undefined;
      });
      return this.syncing;
    }
    this.followUp ??= this.syncing
      .catch(() => undefined)
      .then(() => {
        this.followUp = undefined;
        return this.sync();
      });
    return this.followUp;
  }

  private async doSync(): Promise<void> {
    const byMember = await this.store.read();
    const newest = chooseNewest(byMember.values());
    if (newest !== undefined && newest.version > this.document.version) this.apply(newest);
    const lagging = [...byMember].filter(([, document]) => document !== undefined && (document === null || document.version < this.document.version)).map(([id]) => id);
    if (lagging.length > 0 && this.document.version > 0) {
      const result = await this.store.write(this.document, lagging);
      if (result.written.length > 0) this.logger.info({ members: result.written, version: this.document.version }, 'state repaired on lagging members');
    }
  }

  /**
   * Applies `change` to a copy of the newest state and writes it as the next
   * version. `change` may throw to refuse (its error propagates). Retries when
   * another replica wrote first.
   */
  mutate(actor: string, change: (draft: StateDocument) => void | Promise<void>): Promise<StateDocument> {
    const run = async (): Promise<StateDocument> => {
      for (let attempt = 1; attempt <= WRITE_ATTEMPTS; attempt++) {
        await this.sync();
        const draft = structuredClone(this.document);
        await change(draft);
        draft.version = this.document.version + 1;
        draft.updatedAt = new Date().toISOString();
        draft.updatedBy = actor;
        const valid = StateDocumentSchema.parse(draft);
        const result = await this.store.write(valid);
        const members = this.store.memberIds().length;
        const majority = result.written.length * 2 > members;
        // Without a rival, a write that reached only some members (the others unreachable) still stands: it is the
        // newest document anywhere, every replica adopts it at its next sync, and the sync repairs the members when
        // they return. A kill switch must work while most HSMs are down.
        if (majority || (result.written.length > 0 && result.conflicts.length === 0)) {
          if (!majority) this.logger.warn({ version: valid.version, written: result.written, failed: result.failed }, 'state written on a minority of HSM members; the others are repaired when they return');
          this.apply(valid);
          this.notifier?.publish(valid.version);
          return valid;
        }
        if (result.conflicts.length === 0) {
          throw new StateConflictError(`the state could not be written on any of the ${members} HSM members`);
        }
        this.logger.info({ attempt, conflicts: result.conflicts }, 'another replica changed the state first; retrying');
        // Jitter: two replicas that collided should not collide again.
        await sleep(Math.floor(Math.random() * 40 * attempt));
      }
      throw new StateConflictError('the state kept changing under this write; try again');
    };
    const next = this.writeChain.then(run, run);
    this.writeChain = next.catch(() => undefined);
    return next;
  }

  private apply(document: StateDocument): void {
    this.document = document;
    for (const listener of this.listeners) {
      try {
        listener(document);
      } catch (error) {
        this.logger.error({ err: error }, 'state listener failed');
      }
    }
  }
}
