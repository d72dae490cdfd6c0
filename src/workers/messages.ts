import type { MemberControl } from '../hsm/member.js';

/**
 * What worker processes tell each other through the primary. Nothing else is
 * shared between workers: each owns its PKCS#11 contexts, caches and breakers.
 */
export type WorkerMessage =
  /** An operator's drain, fence or restore of an HSM member. */
  | { readonly hyok: 'member-control'; readonly control: MemberControl }
  /** This worker holds fleet state `version`; a worker behind it re-reads the state from the HSMs. */
  | { readonly hyok: 'state-version'; readonly version: number };

/** Sent by a worker to the primary only, once its XKS listener serves. */
export interface WorkerReady {
  readonly hyok: 'worker-ready';
  readonly port: number;
}

export function isWorkerReady(message: unknown): message is WorkerReady {
  return typeof message === 'object' && message !== null && (message as { hyok?: unknown }).hyok === 'worker-ready' && Number.isSafeInteger((message as { port?: unknown }).port);
}

export function isWorkerMessage(message: unknown): message is WorkerMessage {
  if (typeof message !== 'object' || message === null) return false;
  const { hyok } = message as { hyok?: unknown };
  if (hyok === 'state-version') return Number.isSafeInteger((message as { version?: unknown }).version);
  if (hyok !== 'member-control') return false;
  const control = (message as { control?: Partial<MemberControl> }).control;
  return (
    typeof control === 'object' &&
    control !== null &&
    typeof control.member === 'string' &&
    typeof control.actor === 'string' &&
    (control.action === 'drain' || control.action === 'fence' || control.action === 'restore') &&
    (control.reason === undefined || typeof control.reason === 'string')
  );
}

/** Environment variable naming a worker (1..N); absent in a single-process proxy. */
export const WORKER_INDEX_ENV = 'HYOK_WORKER_INDEX';

/** `audit.jsonl` → `audit.worker-2.jsonl`: each worker keeps its own hash chain. */
export function workerAuditFile(file: string, index: number): string {
  const slash = file.lastIndexOf('/');
  const dot = file.lastIndexOf('.');
  return dot > slash + 1 ? `${file.slice(0, dot)}.worker-${index}${file.slice(dot)}` : `${file}.worker-${index}`;
}
