import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import type { MemberView } from '../admin/server.js';

export interface AdminClientOptions {
  readonly url: string;
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly tokenFile?: string;
}

export interface AdminResponse {
  readonly status: number;
  readonly body: unknown;
}

/** One admin API call; a bearer token comes from --token-file or HYOK_ADMIN_TOKEN, a client certificate from --cert/--key. */
export function adminRequest(options: AdminClientOptions, method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<AdminResponse> {
  const url = new URL(path, options.url);
  const token = options.tokenFile !== undefined ? readFileSync(options.tokenFile, 'utf8').trim() : process.env['HYOK_ADMIN_TOKEN'];
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        ...(options.ca === undefined ? {} : { ca: readFileSync(options.ca) }),
        ...(options.cert === undefined ? {} : { cert: readFileSync(options.cert) }),
        ...(options.key === undefined ? {} : { key: readFileSync(options.key) }),
        headers: {
          accept: 'application/json',
          ...(token === undefined || token === '' ? {} : { authorization: `Bearer ${token}` }),
          ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
        },
        timeout: 10_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : (JSON.parse(text) as unknown) });
          } catch {
            resolve({ status: res.statusCode ?? 0, body: text });
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('admin API did not answer within 10 s')));
    req.on('error', reject);
    req.end(payload);
  });
}

/** One key as GET /admin/v1/keys lists it (the fields the table shows). */
export interface KeyRow {
  readonly keyStore: string;
  readonly id: string;
  readonly state: string;
  readonly currentVersion: number;
  readonly storeKilled: boolean;
  readonly expireAt: string | null;
}

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0))).join('  ')).join('\n');
}

export function formatKeys(keys: readonly KeyRow[]): string {
  return table([
    ['KEY STORE', 'KEY', 'STATE', 'VERSION', 'EXPIRES'],
    ...keys.map((key) => [key.keyStore, key.id, key.storeKilled ? `${key.state} (store stopped)` : key.state, String(key.currentVersion), key.expireAt ?? '-']),
  ]);
}

/** A fixed-width table of members for terminals. */
export function formatMembers(members: readonly MemberView[]): string {
  return table([
    ['ID', 'HEALTH', 'MODE', 'BREAKER', 'IN-FLIGHT', 'LATENCY', 'LAST ERROR'],
    ...members.map((member) => [
      member.id,
      member.health,
      member.mode,
      member.breaker,
      String(member.inFlight),
      member.latencyMs === null ? '-' : `${member.latencyMs.toFixed(2)} ms`,
      member.fence !== null ? `fenced: ${member.fence.reason}` : (member.lastError?.message ?? '-'),
    ]),
  ]);
}
