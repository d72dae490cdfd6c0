import type { HsmErrorKind } from './errors.js';

export interface KeyUsageFlags {
  readonly encrypt: boolean;
  readonly decrypt: boolean;
}

export type AdminOperation =
  | { op: 'generate'; label: string; usage: KeyUsageFlags }
  | { op: 'import'; label: string; usage: KeyUsageFlags; material: string }
  | { op: 'list' }
  | { op: 'destroy'; label: string };

export interface AdminRequest {
  module: string;
  tokenLabel: string;
  pin: string;
  operations: AdminOperation[];
}

export type AdminResponse = { ok: true; results: unknown[] } | { ok: false; error: { kind: HsmErrorKind; message: string } };

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
