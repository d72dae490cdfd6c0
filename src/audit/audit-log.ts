import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import type { LogDestination } from '../config/schema.js';

/**
 * The audit trail: one JSON line per request or admin action, written
 * synchronously (a crash must not lose records that clients already got answers
 * for) and hash-chained: every line carries the SHA-256 of the line before it,
 * so an edited, inserted or deleted line breaks `hyok-proxy audit verify`.
 * Limits: the chain is unkeyed and nothing follows the last line, so truncating
 * the tail, or rewriting a line and every line after it, is only caught by
 * shipping records off the host as they are written. `seq` restarts per process.
 *
 * Records carry identifiers and outcomes only: never plaintext, AAD, key
 * material, PINs, secrets or signatures.
 */

export interface XksRequestAudit {
  readonly event: 'xks.request';
  readonly requestId: string;
  readonly kmsRequestId: string | undefined;
  readonly keyStore: string | undefined;
  readonly uriPrefix: string | undefined;
  readonly api: string;
  readonly externalKeyId: string | undefined;
  readonly kmsOperation: string | undefined;
  readonly awsPrincipalArn: string | undefined;
  readonly kmsKeyArn: string | undefined;
  readonly kmsViaService: string | undefined;
  readonly awsSourceVpc: string | undefined;
  readonly awsSourceVpce: string | undefined;
  readonly accessKeyId: string | undefined;
  readonly clientCertificateSubject: string | undefined;
  readonly sourceIp: string | undefined;
  readonly outcome: 'success' | 'failure' | 'aborted';
  readonly status: number;
  readonly errorName: string | undefined;
  /** Why, for operators (e.g. which SigV4 check failed); fixed text, never client bytes. */
  readonly reason: string | undefined;
  readonly policyStatement: string | undefined;
  readonly keyVersion: number | undefined;
  readonly hsmMember: string | undefined;
  readonly hsmAttempts: number | undefined;
  /** Time spent in the HSM cluster, retries included. */
  readonly hsmLatencyMs: number | undefined;
  readonly latencyMs: number;
}

export interface ProxyLifecycleAudit {
  readonly event: 'proxy.start' | 'proxy.stop' | 'config.reload' | 'config.reload.rejected' | 'tls.reload';
  readonly detail: string;
}

/** Every admin action, allowed or not, with who asked. */
export interface AdminActionAudit {
  readonly event: 'admin.action';
  /** JWT subject or client-certificate CN; "anonymous" when authentication failed. */
  readonly actor: string;
  readonly via: 'mtls' | 'jwt' | 'none';
  readonly roles: readonly string[];
  /** e.g. "member.drain". */
  readonly action: string;
  readonly target: string | undefined;
  readonly outcome: 'success' | 'denied' | 'failure';
  readonly reason: string | undefined;
  readonly sourceIp: string | undefined;
}

export type AuditEvent = XksRequestAudit | ProxyLifecycleAudit | AdminActionAudit;

const GENESIS = '0'.repeat(64);

export function hashLine(line: string): string {
  return createHash('sha256').update(line).digest('hex');
}

/** Writes all of `text`, retrying on EAGAIN (non-blocking pipes), and throws on any other error. */
function writeFully(fd: number, text: string): void {
  let buffer = Buffer.from(text, 'utf8');
  let spins = 0;
  while (buffer.length > 0) {
    try {
      const written = writeSync(fd, buffer);
      buffer = buffer.subarray(written);
      spins = 0;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN' || ++spins > 1000) throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

/** The last line of an existing audit file, so the chain continues across restarts. */
function lastLineOf(fd: number): string | undefined {
  const size = fstatSync(fd).size;
  if (size === 0) return undefined;
  const length = Math.min(size, 1 << 20);
  const buffer = Buffer.alloc(length);
  readSync(fd, buffer, 0, length, size - length);
  const text = buffer.toString('utf8').replace(/\n+$/, '');
  const start = text.lastIndexOf('\n');
  return text.slice(start + 1);
}

/** How many recent records the console can show; the file keeps everything. */
const RECENT_RECORDS = 200;

export class AuditLog {
  private readonly fd: number;
  /** The last lines as written (records are secret-free by construction), oldest first once the ring wraps. */
  private readonly recentLines: string[] = [];
  private recentNext = 0;
  private readonly ownsFd: boolean;
  private previousHash: string;
  private sequence = 0;
  private closed = false;

  constructor(destination: LogDestination) {
    if (destination === 'stdout' || destination === 'stderr') {
      this.fd = destination === 'stdout' ? 1 : 2;
      this.ownsFd = false;
      this.previousHash = GENESIS;
    } else {
      this.fd = openSync(destination.file, 'a+', 0o600);
      this.ownsFd = true;
      const last = lastLineOf(this.fd);
      this.previousHash = last === undefined ? GENESIS : hashLine(last);
    }
  }

  /** Throws if the record cannot be written; callers fail the request rather than serve it unaudited. */
  write(event: AuditEvent): void {
    this.append('info', event);
  }

  /** Alert-level records (e.g. use of a compromised key) are still audit records, with a higher level. */
  alert(event: AuditEvent): void {
    this.append('warn', event);
  }

  /**
   * One line in the layout pino gave these records (level, time, seq, prev,
   * the event's fields, msg), built directly: on the XKS hot path pino's
   * generic serializer cost more than the rest of the audit write (docs/performance.md).
   */
  private append(level: 'info' | 'warn', event: AuditEvent): void {
    this.assertOpen();
    const fields = JSON.stringify(event);
    const record = `{"level":"${level}","time":"${new Date().toISOString()}","seq":${this.sequence + 1},"prev":"${this.previousHash}",${fields.slice(1, -1)},"msg":"audit"}`;
    writeFully(this.fd, `${record}\n`);
    this.sequence += 1;
    this.previousHash = hashLine(record);
    this.remember(record);
  }

  /** The newest `limit` records, newest first (this process's only). */
  recent(limit: number): Record<string, unknown>[] {
    const count = Math.min(limit, this.recentLines.length);
    const records: Record<string, unknown>[] = [];
    for (let i = 1; i <= count; i++) {
      const index = (this.recentNext - i + RECENT_RECORDS) % RECENT_RECORDS;
      records.push(JSON.parse(this.recentLines[index] as string) as Record<string, unknown>);
    }
    return records;
  }

  private remember(record: string): void {
    this.recentLines[this.recentNext] = record;
    this.recentNext = (this.recentNext + 1) % RECENT_RECORDS;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsFd) closeSync(this.fd);
  }

  /** A closed fd number may already belong to another file: never write through it. */
  private assertOpen(): void {
    if (this.closed) throw new Error('audit log is closed');
  }
}

export interface ChainVerification {
  readonly ok: boolean;
  readonly lines: number;
  /** 1-based line number of the first break, when not ok. */
  readonly brokenAt?: number;
  readonly reason?: string;
}

/** Checks that every line names the hash of the line before it (a new file starts from zeros). */
export function verifyAuditChain(text: string): ChainVerification {
  const lines = text.split('\n').filter((line) => line !== '');
  let previous = GENESIS;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    let record: { prev?: unknown };
    try {
      record = JSON.parse(line) as { prev?: unknown };
    } catch {
      return { ok: false, lines: lines.length, brokenAt: i + 1, reason: 'not JSON' };
    }
    if (record.prev !== previous) return { ok: false, lines: lines.length, brokenAt: i + 1, reason: 'hash chain broken' };
    previous = hashLine(line);
  }
  return { ok: true, lines: lines.length };
}
