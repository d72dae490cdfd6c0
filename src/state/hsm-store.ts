import type { Logger } from 'pino';
import type { HsmCluster } from '../hsm/cluster.js';
import { runTokenAdmin, type TokenTarget } from '../hsm/token-admin.js';
import type { PutDataResult } from '../hsm/token-admin-protocol.js';
import { parseState, serializeState, type StateDocument } from './document.js';

export const STATE_LABEL = 'hyok-proxy-state';

/** How to open a read-write session on a member's token (the serving agents only hold read-only ones). */
export interface MemberAccess {
  readonly id: string;
  readonly target: () => TokenTarget;
}

export interface StateWriteResult {
  readonly written: readonly string[];
  readonly conflicts: ReadonlyArray<{ readonly member: string; readonly version: number }>;
  readonly failed: readonly string[];
}

/** Reads and writes the state document on every HSM member (ADR 0004). */
export class HsmStateStore {
  private readonly cluster: HsmCluster;
  private readonly members: readonly MemberAccess[];
  private readonly timeoutMs: number;
  private readonly logger: Logger;

  constructor(cluster: HsmCluster, members: readonly MemberAccess[], timeoutMs: number, logger: Logger) {
    this.cluster = cluster;
    this.members = members;
    this.timeoutMs = timeoutMs;
    this.logger = logger;
  }

  memberIds(): string[] {
    return this.members.map((member) => member.id);
  }

  /** Per member: its newest valid document, null when it has none, undefined when it could not be read. */
  async read(): Promise<Map<string, StateDocument | null | undefined>> {
    const out = new Map<string, StateDocument | null | undefined>();
    await Promise.all(
      this.members.map(async ({ id }) => {
        try {
          const values = (await this.cluster.member(id)?.readData(STATE_LABEL, this.timeoutMs)) ?? [];
          const documents = values.map((value) => parseState(Buffer.from(value, 'base64'))).filter((doc): doc is StateDocument => doc !== undefined);
          if (values.length > 0 && documents.length === 0) this.logger.error({ member: id }, 'state object on the token is not a valid state document');
          out.set(id, documents.reduce<StateDocument | null>((best, doc) => (best === null || doc.version > best.version ? doc : best), null));
        } catch (error) {
          this.logger.debug({ member: id, err: (error as Error).message }, 'state not readable on member');
          out.set(id, undefined);
        }
      }),
    );
    return out;
  }

  /** Writes the document to the given members (all by default), compare-and-set on its version. */
  async write(document: StateDocument, only?: readonly string[]): Promise<StateWriteResult> {
    const value = serializeState(document).toString('base64');
    const written: string[] = [];
    const conflicts: Array<{ member: string; version: number }> = [];
    const failed: string[] = [];
    await Promise.all(
      this.members
        .filter((member) => only === undefined || only.includes(member.id))
        .map(async (member) => {
          try {
            const [result] = (await runTokenAdmin(member.target(), [{ op: 'putData', label: STATE_LABEL, value, version: document.version }], this.timeoutMs * 20)) as [
              PutDataResult,
            ];
            if (result.written) written.push(member.id);
            else conflicts.push({ member: member.id, version: result.conflictVersion });
          } catch (error) {
            this.logger.warn({ member: member.id, err: (error as Error).message }, 'state write failed on member');
            failed.push(member.id);
          }
        }),
    );
    return { written, conflicts, failed };
  }

  /** Crypto-erase: deletes the key objects from one member; false when the member was unreachable. */
  async erase(memberId: string, labels: readonly string[]): Promise<boolean> {
    const member = this.members.find((candidate) => candidate.id === memberId);
    if (member === undefined) return false;
    try {
      await runTokenAdmin(
        member.target(),
        labels.map((label) => ({ op: 'destroy', label })),
        this.timeoutMs * 20,
      );
      return true;
    } catch (error) {
      this.logger.warn({ member: memberId, err: (error as Error).message }, 'key erase failed on member; will retry');
      return false;
    }
  }

  /** Imports identical material for a new key version into every member; all or nothing. */
  async importEverywhere(label: string, material: Buffer, usage: { encrypt: boolean; decrypt: boolean }): Promise<void> {
    const done: MemberAccess[] = [];
    try {
      for (const member of this.members) {
        await runTokenAdmin(member.target(), [{ op: 'import', label, usage, material: material.toString('base64') }], this.timeoutMs * 20);
        done.push(member);
      }
    } catch (error) {
      // A version on only some members would make ciphertexts undecryptable elsewhere: roll back.
      for (const member of done) await runTokenAdmin(member.target(), [{ op: 'destroy', label }], this.timeoutMs * 20).catch(() => undefined);
      throw error;
    }
  }
}
