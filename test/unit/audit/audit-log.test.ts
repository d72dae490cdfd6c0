import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog, hashLine, verifyAuditChain } from '../../../src/audit/audit-log.js';
import type { AuditEvent, XksRequestAudit } from '../../../src/audit/audit-log.js';

// --- fixtures ------------------------------------------------------------------

const GENESIS = '0'.repeat(64);
let dir = '';
let counter = 0;

function freshFile(): string {
  counter += 1;
  return join(dir, `audit-${counter}.log`);
}

function lifecycle(detail: string): AuditEvent {
  return { event: 'proxy.start', detail };
}

function request(n: number): XksRequestAudit {
  return {
    event: 'xks.request',
    requestId: `req-${n}`,
    kmsRequestId: `kms-${n}`,
    keyStore: 'dev',
    uriPrefix: '/dev',
    api: 'Encrypt',
    externalKeyId: 'key-1',
    kmsOperation: 'Encrypt',
    awsPrincipalArn: 'arn:aws:iam::111122223333:role/KeyUser',
    kmsKeyArn: undefined,
    kmsViaService: undefined,
    awsSourceVpc: undefined,
    awsSourceVpce: undefined,
    accessKeyId: 'XKSPROXYTESTACCESSKEY2',
    clientCertificateSubject: undefined,
    sourceIp: '127.0.0.1',
    outcome: 'success',
    status: 200,
    errorName: undefined,
    reason: undefined,
    policyStatement: undefined,
    keyVersion: 1,
    hsmMember: 'hsm-a',
    hsmAttempts: 1,
    hsmLatencyMs: 0.4,
    latencyMs: 3,
  };
}

/** Writes `count` records to a new file and returns the file and its lines. */
function writeLog(count: number): { file: string; lines: string[] } {
  const file = freshFile();
  const log = new AuditLog({ file });
  try {
    for (let i = 1; i <= count; i++) log.write(i % 2 === 0 ? lifecycle(`record ${i}`) : request(i));
  } finally {
    log.close();
  }
  const text = readFileSync(file, 'utf8');
  return { file, lines: text.split('\n').filter((line) => line !== '') };
}

const joinLines = (lines: readonly string[]): string => `${lines.join('\n')}\n`;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'hyok-audit-test-'));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

// --- tests ---------------------------------------------------------------------

describe('AuditLog: writing', () => {
  it('writes one JSON line per write(), newline-terminated', () => {
    const file = freshFile();
    const log = new AuditLog({ file });
    log.write(request(1));
    log.write(lifecycle('second'));
    log.write(request(3));
    log.close();
    const text = readFileSync(file, 'utf8');
    assert.ok(text.endsWith('\n'));
    const lines = text.split('\n').filter((line) => line !== '');
    assert.equal(lines.length, 3);
    const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(records[0]?.['event'], 'xks.request');
    assert.equal(records[0]?.['requestId'], 'req-1');
    assert.equal(records[0]?.['status'], 200);
    assert.equal(records[1]?.['event'], 'proxy.start');
    assert.equal(records[1]?.['detail'], 'second');
    for (const record of records) {
      assert.equal(record['level'], 'info');
      assert.equal(record['msg'], 'audit');
      assert.equal(typeof record['time'], 'string');
    }
  });

  it('numbers records with seq starting at 1', () => {
    const { lines } = writeLog(4);
    assert.deepEqual(
      lines.map((line) => (JSON.parse(line) as { seq: unknown }).seq),
      [1, 2, 3, 4],
    );
  });

  it('chains records: the first prev is 64 zeros, every later prev is the SHA-256 of the line before', () => {
    const { lines } = writeLog(5);
    const prevs = lines.map((line) => (JSON.parse(line) as { prev: unknown }).prev);
    assert.equal(prevs[0], GENESIS);
    for (let i = 1; i < lines.length; i++) {
      const expected = createHash('sha256').update(lines[i - 1] as string).digest('hex');
      assert.equal(prevs[i], expected, `line ${i + 1}`);
      assert.equal(hashLine(lines[i - 1] as string), expected);
    }
  });

  it('writes alerts with level warn, in the same chain', () => {
    const file = freshFile();
    const log = new AuditLog({ file });
    log.write(request(1));
    log.alert(lifecycle('compromised key used'));
    log.close();
    const text = readFileSync(file, 'utf8');
    const records = text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.equal(records[0]?.['level'], 'info');
    assert.equal(records[1]?.['level'], 'warn');
    assert.equal(records[1]?.['detail'], 'compromised key used');
    assert.deepEqual(verifyAuditChain(text), { ok: true, lines: 2 });
  });

  it('creates the file readable and writable by its owner only', () => {
    const { file } = writeLog(1);
    assert.equal(statSync(file).mode & 0o077, 0);
  });

  it('throws from write() when the file descriptor can no longer be written, so callers can fail closed', () => {
    const file = freshFile();
    const log = new AuditLog({ file });
    log.write(request(1));
    log.close();
    assert.throws(() => log.write(request(2)), /audit log is closed/);
    assert.equal(readFileSync(file, 'utf8').split('\n').filter((line) => line !== '').length, 1, 'nothing else was written');
  });
});

describe('AuditLog: writing after close', () => {
  // BUG (src/audit/audit-log.ts, close/write): close() does not mark the log closed, so once the
  // kernel hands the fd number to another file, write() succeeds and puts audit records there.
  it('throws even when the closed fd number has been reused by another file', () => {
    const file = freshFile();
    const other = freshFile();
    const log = new AuditLog({ file });
    log.write(request(1));
    log.close();
    const fd = openSync(other, 'a');
    try {
      assert.throws(() => log.write(request(2)));
      assert.equal(readFileSync(other, 'utf8'), '', 'no audit record lands in an unrelated file');
    } finally {
      closeSync(fd);
    }
  });
});

describe('AuditLog: reopening an existing file', () => {
  it('continues the chain from the last line, so the whole file still verifies', () => {
    const file = freshFile();
    const first = new AuditLog({ file });
    first.write(request(1));
    first.write(request(2));
    first.close();
    const lastOfFirst = readFileSync(file, 'utf8').trimEnd().split('\n').at(-1) as string;

    const second = new AuditLog({ file });
    second.write(lifecycle('restarted'));
    second.alert(request(4));
    second.close();

    const text = readFileSync(file, 'utf8');
    const lines = text.split('\n').filter((line) => line !== '');
    assert.equal(lines.length, 4);
    assert.equal((JSON.parse(lines[2] as string) as { prev: string }).prev, hashLine(lastOfFirst));
    assert.deepEqual(verifyAuditChain(text), { ok: true, lines: 4 });
  });

  it('starts from 64 zeros when the existing file is empty', () => {
    const file = freshFile();
    writeFileSync(file, '');
    const log = new AuditLog({ file });
    log.write(request(1));
    log.close();
    const text = readFileSync(file, 'utf8');
    assert.equal((JSON.parse(text) as { prev: string }).prev, GENESIS);
    assert.equal(verifyAuditChain(text).ok, true);
  });

  it('survives three restarts', () => {
    const file = freshFile();
    for (let run = 0; run < 3; run++) {
      const log = new AuditLog({ file });
      log.write(lifecycle(`run ${run} start`));
      log.write(request(run));
      log.close();
    }
    assert.deepEqual(verifyAuditChain(readFileSync(file, 'utf8')), { ok: true, lines: 6 });
  });
});

describe('verifyAuditChain', () => {
  it('accepts an untouched file', () => {
    const { file } = writeLog(6);
    assert.deepEqual(verifyAuditChain(readFileSync(file, 'utf8')), { ok: true, lines: 6 });
  });

  it('accepts an empty file', () => {
    assert.deepEqual(verifyAuditChain(''), { ok: true, lines: 0 });
  });

  it('detects one edited field in a middle line, at the line after it', () => {
    const { lines } = writeLog(5);
    const edited = [...lines];
    const record = JSON.parse(edited[2] as string) as Record<string, unknown>;
    assert.equal(record['status'], 200);
    edited[2] = (edited[2] as string).replace('"status":200', '"status":403');
    assert.notEqual(edited[2], lines[2]);
    const result = verifyAuditChain(joinLines(edited));
    assert.equal(result.ok, false);
    assert.equal(result.brokenAt, 4);
    assert.equal(result.reason, 'hash chain broken');
    assert.equal(result.lines, 5);
  });

  it('detects an edit that only changes whitespace inside a line', () => {
    const { lines } = writeLog(3);
    const edited = [...lines];
    edited[0] = (edited[0] as string).replace('{', '{ ');
    assert.equal(verifyAuditChain(joinLines(edited)).brokenAt, 2);
  });

  it('detects a deleted line, at the line that followed it', () => {
    const { lines } = writeLog(5);
    const deleted = lines.filter((_, index) => index !== 2);
    const result = verifyAuditChain(joinLines(deleted));
    assert.equal(result.ok, false);
    assert.equal(result.brokenAt, 3);
  });

  it('detects deletion of the first line', () => {
    const { lines } = writeLog(3);
    const result = verifyAuditChain(joinLines(lines.slice(1)));
    assert.equal(result.ok, false);
    assert.equal(result.brokenAt, 1);
  });

  it('detects reordered lines, at the first line out of place', () => {
    const { lines } = writeLog(5);
    const reordered = [lines[0], lines[2], lines[1], lines[3], lines[4]] as string[];
    const result = verifyAuditChain(joinLines(reordered));
    assert.equal(result.ok, false);
    assert.equal(result.brokenAt, 2);
  });

  it('detects a forged line inserted with a correct prev, at the genuine line after it', () => {
    const { lines } = writeLog(4);
    const forged = JSON.stringify({ level: 'info', time: '2024-01-01T00:00:00.000Z', seq: 99, prev: hashLine(lines[1] as string), event: 'proxy.start', detail: 'forged', msg: 'audit' });
    const tampered = [lines[0], lines[1], forged, lines[2], lines[3]] as string[];
    const result = verifyAuditChain(joinLines(tampered));
    assert.equal(result.ok, false);
    assert.equal(result.brokenAt, 4);
  });

  it('detects a forged line inserted with a wrong prev, at the forged line', () => {
    const { lines } = writeLog(4);
    const forged = JSON.stringify({ seq: 3, prev: GENESIS, event: 'proxy.start', detail: 'forged' });
    const tampered = [lines[0], lines[1], forged, lines[2], lines[3]] as string[];
    const result = verifyAuditChain(joinLines(tampered));
    assert.equal(result.ok, false);
    assert.equal(result.brokenAt, 3);
  });

  it('reports a line that is not JSON', () => {
    const { lines } = writeLog(3);
    const tampered = [lines[0], 'garbage', lines[1], lines[2]] as string[];
    assert.deepEqual(verifyAuditChain(joinLines(tampered)), { ok: false, lines: 4, brokenAt: 2, reason: 'not JSON' });
  });

  it('rejects a first line whose prev is not 64 zeros', () => {
    const { lines } = writeLog(2);
    const tampered = [...lines];
    tampered[0] = (tampered[0] as string).replace(GENESIS, '1'.repeat(64));
    assert.equal(verifyAuditChain(joinLines(tampered)).brokenAt, 1);
  });

  it('rejects a line without prev', () => {
    assert.equal(verifyAuditChain(`${JSON.stringify({ seq: 1, event: 'proxy.start' })}\n`).brokenAt, 1);
  });

  it('accepts a file without a trailing newline and ignores blank lines', () => {
    const { lines } = writeLog(3);
    assert.equal(verifyAuditChain(lines.join('\n')).ok, true);
    assert.equal(verifyAuditChain(`${lines.join('\n\n')}\n\n`).ok, true);
  });
});

describe('AuditLog: recent records for the console', () => {
  it('returns the newest records first, the same objects as the file holds, at most 200', () => {
    const file = freshFile();
    const log = new AuditLog({ file });
    assert.deepEqual(log.recent(10), []);
    for (let n = 1; n <= 3; n++) log.write(request(n));
    assert.deepEqual(log.recent(10).map((record) => record['seq']), [3, 2, 1]);
    for (let n = 4; n <= 250; n++) log.write(request(n));
    log.close();
    const recent = log.recent(1000);
    assert.equal(recent.length, 200);
    assert.deepEqual(recent.slice(0, 3).map((record) => record['seq']), [250, 249, 248]);
    assert.equal(recent.at(-1)?.['seq'], 51);
    const lines = readFileSync(file, 'utf8').split('\n').filter((line) => line !== '');
    assert.deepEqual(recent[0], JSON.parse(lines.at(-1) as string));
    assert.deepEqual(log.recent(2).map((record) => record['seq']), [250, 249]);
  });
});
