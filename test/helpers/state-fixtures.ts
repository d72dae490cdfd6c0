import type { KeyRecord, KeyState } from '../../src/state/document.js';

export const MINUTE = 60_000;
export const DAY = 24 * 60 * MINUTE;
export const iso = (ms: number): string => new Date(ms).toISOString();

/** A key record changed a day before `now`, rotated once: version 1 decrypt-only, version 2 current. */
export function rotatedKeyRecord(state: KeyState, now: number, extra: Partial<KeyRecord> = {}): KeyRecord {
  return {
    state,
    changedAt: iso(now - DAY),
    changedBy: 'setup',
    currentVersion: 2,
    versions: { '1': { state: 'decrypt-only', createdAt: iso(now - 2 * DAY) }, '2': { state: 'active', createdAt: iso(now - DAY) } },
    ...extra,
  };
}
