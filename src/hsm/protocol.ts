import type { HsmErrorKind } from './errors.js';

/**
 * Messages between the proxy and an HSM agent process (Node IPC, JSON).
 * Byte strings travel as Base64 because JSON has no binary type.
 */

export interface AgentInit {
  module: string;
  tokenLabel: string;
  pin: string;
}

export interface KeyDescription {
  /** 'AES' or the CKK_ name of another type. */
  keyType: string;
  /** CKA_VALUE_LEN in bytes, when the token reports it. */
  valueLength: number | undefined;
  usage: {
    encrypt: boolean;
    decrypt: boolean;
    wrap: boolean;
    unwrap: boolean;
    sign: boolean;
    verify: boolean;
    derive: boolean;
  };
  /** CKA_CHECK_VALUE as hex, when the token supports it. */
  checkValue: string | undefined;
}

export type AgentOperation =
  | { op: 'encrypt'; label: string; aad: string; plaintext: string }
  | { op: 'decrypt'; label: string; aad: string; iv: string; ciphertext: string }
  | { op: 'describe'; label: string }
  | { op: 'fingerprint'; labels: string[]; fixedVectorLabel: string }
  | { op: 'readData'; label: string }
  | { op: 'ping' };

export interface AgentResults {
  encrypt: { iv: string; ciphertext: string };
  decrypt: { plaintext: string };
  describe: KeyDescription;
  /** Per label: "kcv:<hex>", "gcm:<hex>" (fixed-vector fallback), "unknown", or null when the key is missing. */
  fingerprint: Record<string, string | null>;
  /** Every CKO_DATA object with the label (two while a write swaps them), Base64. */
  readData: { values: string[] };
  ping: { slotDescription: string };
}

export type AgentOperationName = AgentOperation['op'];

export type ParentMessage = { id: number; init: AgentInit } | { id: number; call: AgentOperation };

export interface AgentFailure {
  kind: HsmErrorKind;
  message: string;
  ckr?: number;
  ckrName?: string;
}

export type AgentLogLevel = 'debug' | 'info' | 'warn' | 'error';

export type AgentMessage =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: AgentFailure }
  | { log: { level: AgentLogLevel; msg: string; fields?: Record<string, string | number | boolean> } };
