import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.js';
import { objectLabel, type KeyCatalog } from '../keys/catalog.js';
import type { StateDocument } from './document.js';
import type { HsmStateStore } from './hsm-store.js';
import { initialRecord } from './lifecycle.js';
import { rotateKey, type RotationContext } from './rotation.js';
import type { StateService } from './service.js';

const ROTATION_CHECK_MS = 60 * 60_000;

/**
 * Background lifecycle work: finishing crypto-erase on members that were down
 * when a key was destroyed, and scheduled rotations (on the replica chosen
 * with state.rotationScheduler).
 */
export class LifecycleMaintenance {
  private readonly state: StateService;
  private readonly store: HsmStateStore;
  private readonly catalog: () => KeyCatalog;
  private readonly rotation: RotationContext | undefined;
  private readonly logger: Logger;
  private readonly audit: AuditLog | undefined;
  private readonly intervalMs: number;
  private timers: NodeJS.Timeout[] = [];
  private erasing = false;

  constructor(options: {
    state: StateService;
    store: HsmStateStore;
    catalog: () => KeyCatalog;
    rotation: RotationContext | undefined;
    intervalMs: number;
    logger: Logger;
    /** Scheduled rotations and finished crypto-erases are the proxy's own acts: audited as actor "proxy". */
    audit?: AuditLog;
  }) {
    this.state = options.state;
    this.store = options.store;
    this.catalog = options.catalog;
    this.rotation = options.rotation;
    this.intervalMs = options.intervalMs;
    this.logger = options.logger;
    this.audit = options.audit;
  }

  private record(action: string, target: string, outcome: 'success' | 'failure', reason: string): void {
    try {
      this.audit?.write({ event: 'admin.action', actor: 'proxy', via: 'none', roles: [], action, target, outcome, reason: reason.slice(0, 500), sourceIp: undefined });
    } catch (error) {
      this.logger.error({ err: (error as Error).message, action, target }, 'maintenance action not audited');
    }
  }

  start(): void {
    this.state.onChange((document) => {
      if (hasPendingErase(document)) void this.eraseTick();
    });
    const erase = setInterval(() => void this.eraseTick(), this.intervalMs);
    erase.unref();
    this.timers.push(erase);
    if (this.rotation !== undefined) {
      const rotate = setInterval(() => void this.rotationTick(), ROTATION_CHECK_MS);
      rotate.unref();
      this.timers.push(rotate);
      void this.rotationTick();
    }
  }

  stop(): void {
    for (const timer of this.timers) clearInterval(timer);
  }

  /** Retries the erase of destroyed keys on members that still hold them. */
  async eraseTick(): Promise<void> {
    if (this.erasing || !hasPendingErase(this.state.current)) return;
    this.erasing = true;
    try {
      for (const [ref, record] of Object.entries(this.state.current.keys)) {
        const pending = record.erasePending ?? [];
        if (pending.length === 0) continue;
        const [keyStore = '', keyId = ''] = ref.split('/');
        const entry = this.catalog().stores().find((store) => store.name === keyStore)?.keys.get(keyId);
        const label = entry?.label ?? keyId;
        const labels = Object.keys(record.versions).map((version) => objectLabel({ id: keyId, label, enabled: false, checkValue: undefined, rotationPeriodDays: undefined }, Number(version)));
        const erased: string[] = [];
        for (const member of pending) if (await this.store.erase(member, labels)) erased.push(member);
        if (erased.length === 0) continue;
        await this.state.mutate('crypto-erase', (draft) => {
          const current = draft.keys[ref];
          if (current === undefined) return;
          const left = (current.erasePending ?? []).filter((member) => !erased.includes(member));
          if (left.length === 0) delete current.erasePending;
          else current.erasePending = left;
        });
        this.logger.warn({ key: ref, members: erased }, 'key material crypto-erased');
        this.record('key.crypto-erase', `keystore/${keyStore}/key/${keyId}`, 'success', `erased on ${erased.join(', ')} after they came back`);
      }
    } catch (error) {
      this.logger.error({ err: (error as Error).message }, 'crypto-erase round failed; will retry');
    } finally {
      this.erasing = false;
    }
  }

  /** Rotates keys whose current version is older than their rotation period. */
  async rotationTick(now: number = Date.now()): Promise<void> {
    const rotation = this.rotation;
    if (rotation === undefined) return;
    for (const store of this.catalog().stores()) {
      for (const key of store.keys.values()) {
        if (key.rotationPeriodDays === undefined) continue;
        const ref = `${store.name}/${key.id}`;
        const record = this.state.current.keys[ref];
        if (record === undefined) {
          // Provisioned before lifecycle management: its age is unknown, so the cryptoperiod starts now.
          await this.state
            .mutate('rotation-scheduler', (draft) => {
              draft.keys[ref] ??= initialRecord(new Date(now).toISOString(), 'rotation-scheduler');
            })
            .catch((error: unknown) => this.logger.error({ key: ref, err: (error as Error).message }, 'could not start the cryptoperiod'));
          continue;
        }
        const createdAt = record.versions[String(record.currentVersion)]?.createdAt;
        if (createdAt === undefined || now - Date.parse(createdAt) < key.rotationPeriodDays * 86_400_000) continue;
        try {
          const version = await rotateKey(rotation, store.name, key, 'rotation-scheduler');
          this.logger.info({ keyStore: store.name, key: key.id, version }, 'scheduled rotation');
          this.record('key.rotate.scheduled', `keystore/${store.name}/key/${key.id}`, 'success', `version ${version} is current (rotation period ${key.rotationPeriodDays} days)`);
        } catch (error) {
          this.logger.error({ keyStore: store.name, key: key.id, err: (error as Error).message }, 'scheduled rotation failed');
          this.record('key.rotate.scheduled', `keystore/${store.name}/key/${key.id}`, 'failure', (error as Error).message);
        }
      }
    }
  }
}

function hasPendingErase(document: StateDocument): boolean {
  return Object.values(document.keys).some((record) => (record.erasePending?.length ?? 0) > 0);
}
