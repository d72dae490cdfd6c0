import { randomBytes } from 'node:crypto';
import { objectLabel, type KeyEntry } from '../keys/catalog.js';
import type { KeyService } from '../keys/key-service.js';
import { Deadline } from '../lib/deadline.js';
import { keyRef } from './document.js';
import type { HsmStateStore } from './hsm-store.js';
import { effectiveKey, initialRecord, LifecycleError } from './lifecycle.js';
import type { StateService } from './service.js';

export interface RotationContext {
  readonly state: StateService;
  readonly store: HsmStateStore;
  readonly keys: KeyService;
}

/**
 * Transparent rotation: a new version (a new key object with identical
 * material on every member) becomes the one encrypted with; the previous one
 * stays decrypt-only, so every existing ciphertext keeps decrypting.
 */
export async function rotateKey(context: RotationContext, keyStore: string, key: KeyEntry, actor: string): Promise<number> {
  const effective = effectiveKey(context.state.current, keyStore, key.id);
  if (effective.state !== 'active') throw new LifecycleError('forbidden', `only an active key rotates; this one is ${effective.state}`);
  const previous = effective.currentVersion;
  const next = previous + 1;
  // The new version keeps the usage of the one it replaces (an encrypt-only key stays encrypt-only).
  const { description } = await context.keys.describe(key, previous, Deadline.after(5000));
  const label = objectLabel(key, next);
  const material = randomBytes(32);
  try {
    await context.store.importEverywhere(label, material, { encrypt: description.usage.encrypt, decrypt: description.usage.decrypt });
  } finally {
    material.fill(0);
  }
  const now = new Date().toISOString();
  await context.state.mutate(actor, (draft) => {
    const ref = keyRef(keyStore, key.id);
    const record = draft.keys[ref] ?? initialRecord(now, actor);
    if (record.currentVersion !== previous) throw new LifecycleError('forbidden', 'the key was rotated concurrently');
    const old = record.versions[String(previous)];
    if (old !== undefined) record.versions[String(previous)] = { ...old, state: 'decrypt-only' };
    record.versions[String(next)] = { state: 'active', createdAt: now };
    record.currentVersion = next;
    record.changedAt = now;
    record.changedBy = actor;
    draft.keys[ref] = record;
  });
  return next;
}
