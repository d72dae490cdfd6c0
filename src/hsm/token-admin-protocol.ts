import type { HsmErrorKind } from './errors.js';

export interface KeyUsageFlags {
  readonly encrypt: boolean;
  readonly decrypt: boolean;
}

export type AdminOperation =
  | { op: 'generate'; label: string; usage: KeyUsageFlags }
  | { op: 'import'; label: string; usage: KeyUsageFlags; material: string }
  | { op: 'list' }
  | { op: 'destroy'; label: string }
  /**
   * Stores a versioned JSON document as a private data object, compare-and-set:
   * refused (conflict) when the token already holds a document whose top-level
   * "version" is >= `version`. The old objects are destroyed after the new one exists.
   */
  | { op: 'putData'; label: string; value: string; version: number };

export interface AdminRequest {
  module: string;
  tokenLabel: string;
  pin: string;
  operations: AdminOperation[];
}

export type AdminResponse = { ok: true; results: unknown[] } | { ok: false; error: { kind: HsmErrorKind; message: string } };

export type PutDataResult = { written: true } | { written: false; conflictVersion: number };

export interface TokenKey {
  label: string;
  keyType: string;
  valueLength: number | undefined;
  encrypt: boolean;
  decrypt: boolean;
  sensitive: boolean;
  extractable: boolean;
  checkValue: string | undefined;
}
