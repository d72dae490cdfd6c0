import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { pino, type Logger } from 'pino';
import { fromRoot } from '../../src/lib/paths.js';

/**
 * Where the suite leaves its traces. Every proxy started by a test logs here,
 * and every secret or plaintext a test uses is registered here, so the final
 * secrets-in-logs test can search the logs of the whole run.
 */
export function testOutputDir(): string {
  const dir = process.env['HYOK_TEST_OUTPUT'] ?? fromRoot('test-output');
  mkdirSync(join(dir, 'logs'), { recursive: true });
  mkdirSync(join(dir, 'secrets'), { recursive: true });
  return dir;
}

export function logFile(name: string): string {
  return join(testOutputDir(), 'logs', `${name}-${process.pid}.log`);
}

/** A synchronous file logger, so nothing is lost when a test process exits. */
export function testLogger(name: string, level: pino.LevelWithSilent = 'debug'): Logger {
  return pino(
    { level, base: { test: name }, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } },
    pino.destination({ dest: logFile(name), sync: true, mkdir: true }),
  );
}

export type SecretKind = 'plaintext' | 'aad' | 'sigv4-secret' | 'pin' | 'key-material' | 'signature' | 'private-key';

/** Records something that must never appear in any log. Values shorter than 12 characters could collide with innocent log text and are refused. */
export function registerSecret(kind: SecretKind, value: string | Buffer): void {
  const text = typeof value === 'string' ? value : value.toString('base64');
  if (text.length < 12) throw new Error(`registerSecret: ${kind} is too short to search for reliably`);
  const hex = typeof value === 'string' ? undefined : value.toString('hex');
  appendFileSync(join(testOutputDir(), 'secrets', `${process.pid}.jsonl`), `${JSON.stringify({ kind, text, hex, from: basename(process.argv[1] ?? 'unknown') })}\n`);
}

/** The records of a JSON-lines audit log. */
export function readAuditRecords(file: string): Array<Record<string, unknown>> {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
