import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ProxyError, type ProxyErrorCode } from '../../../src/errors/proxy-error.js';
import type { HsmCluster } from '../../../src/hsm/cluster.js';
import { HSM_ERROR_KINDS, HsmError, type HsmErrorKind } from '../../../src/hsm/errors.js';
import type { AgentOperation, KeyDescription } from '../../../src/hsm/protocol.js';
import { objectLabel, type KeyEntry } from '../../../src/keys/catalog.js';
import { GCM_TAG_BYTES, KeyService } from '../../../src/keys/key-service.js';
import { Deadline } from '../../../src/lib/deadline.js';

// --- fixtures ------------------------------------------------------------------

const KEY: KeyEntry = { id: 'key-1', label: 'hsm-label-1', enabled: true, checkValue: undefined, rotationPeriodDays: undefined };

interface Call {
  readonly operation: AgentOperation;
  readonly deadline: Deadline;
}

/** A stand-in for HsmCluster: records calls and answers with `respond`. */
function fakeCluster(respond: (operation: AgentOperation) => unknown): { cluster: HsmCluster; calls: Call[] } {
  const calls: Call[] = [];
  const fake = {
    async execute(operation: AgentOperation, deadline: Deadline): Promise<{ result: unknown; member: string; attempts: number; latencyMs: number }> {
      calls.push({ operation, deadline });
      const result = respond(operation);
      return { result, member: 'hsm-b', attempts: 2, latencyMs: 1.5 };
    },
  };
  return { cluster: fake as unknown as HsmCluster, calls };
}

function failingCluster(error: unknown): HsmCluster {
  return fakeCluster(() => {
    throw error;
  }).cluster;
}

const DESCRIPTION: KeyDescription = {
  keyType: 'AES',
  valueLength: 32,
  usage: { encrypt: true, decrypt: true, wrap: false, unwrap: false, sign: false, verify: false, derive: false },
  checkValue: 'a1b2c3',
};

async function rejection(promise: Promise<unknown>): Promise<ProxyError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ProxyError, `expected a ProxyError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected a rejection');
}

type Operation = 'encrypt' | 'decrypt' | 'describe';

function run(service: KeyService, operation: Operation): Promise<unknown> {
  const deadline = Deadline.after(100);
  switch (operation) {
    case 'encrypt':
      return service.encrypt(KEY, 1, Buffer.from('aad'), Buffer.from('plaintext'), deadline);
    case 'decrypt':
      return service.decrypt(KEY, 1, Buffer.from('aad'), randomBytes(12), randomBytes(20), randomBytes(16), deadline);
    case 'describe':
      return service.describe(KEY, 1, deadline);
  }
}

// --- tests ---------------------------------------------------------------------

describe('objectLabel', () => {
  it('uses the configured label for version 1 and "<label>.v<n>" for later versions', () => {
    assert.equal(objectLabel(KEY, 1), 'hsm-label-1');
    assert.equal(objectLabel(KEY, 2), 'hsm-label-1.v2');
    assert.equal(objectLabel(KEY, 17), 'hsm-label-1.v17');
  });
});

describe('KeyService.encrypt', () => {
  it("splits the HSM's ciphertext||tag into the ciphertext and a 16-byte tag", async () => {
    const iv = randomBytes(12);
    const ciphertext = randomBytes(37);
    const tag = randomBytes(16);
    const { cluster } = fakeCluster(() => ({ iv: iv.toString('base64'), ciphertext: Buffer.concat([ciphertext, tag]).toString('base64') }));
    const result = await new KeyService(cluster).encrypt(KEY, 1, Buffer.from('aad'), Buffer.alloc(37, 1), Deadline.after(100));
    assert.equal(GCM_TAG_BYTES, 16);
    assert.deepEqual(result.iv, iv);
    assert.deepEqual(result.ciphertext, ciphertext);
    assert.deepEqual(result.tag, tag);
    assert.equal(result.tag.length, 16);
    assert.equal(result.member, 'hsm-b');
    assert.equal(result.attempts, 2);
  });

  it('returns an empty ciphertext and the tag for an empty plaintext', async () => {
    const tag = randomBytes(16);
    const { cluster } = fakeCluster(() => ({ iv: randomBytes(12).toString('base64'), ciphertext: tag.toString('base64') }));
    const result = await new KeyService(cluster).encrypt(KEY, 1, Buffer.alloc(0), Buffer.alloc(0), Deadline.after(100));
    assert.equal(result.ciphertext.length, 0);
    assert.deepEqual(result.tag, tag);
  });

  it('sends the object label, the AAD and the plaintext in Base64, with the caller deadline', async () => {
    const plaintext = Buffer.from('hello world');
    const { cluster, calls } = fakeCluster(() => ({ iv: randomBytes(12).toString('base64'), ciphertext: randomBytes(plaintext.length + 16).toString('base64') }));
    const service = new KeyService(cluster);
    const aad = Buffer.from([0, 3, 1, 2, 3, 0]);
    const deadline = Deadline.after(150);
    await service.encrypt(KEY, 1, aad, plaintext, deadline);
    await service.encrypt(KEY, 2, aad, plaintext, deadline);
    assert.deepEqual(calls[0]?.operation, { op: 'encrypt', label: 'hsm-label-1', aad: aad.toString('base64'), plaintext: plaintext.toString('base64') });
    assert.equal(calls[0]?.deadline, deadline);
    assert.deepEqual(calls[1]?.operation, { op: 'encrypt', label: 'hsm-label-1.v2', aad: aad.toString('base64'), plaintext: plaintext.toString('base64') });
  });

  it('uses the label, not the external key id', async () => {
    const { cluster, calls } = fakeCluster(() => ({ iv: randomBytes(12).toString('base64'), ciphertext: randomBytes(16).toString('base64') }));
    await new KeyService(cluster).encrypt({ id: 'external-id', label: 'object-label', enabled: true, checkValue: undefined, rotationPeriodDays: undefined }, 3, Buffer.alloc(3), Buffer.alloc(0), Deadline.after(100));
    assert.equal((calls[0]?.operation as { label: string }).label, 'object-label.v3');
  });

  // Regression: a reply shorter than the tag was once sliced with a negative end into an overlapping ciphertext and tag.
  it('fails instead of returning a short tag when the HSM reply is shorter than 16 bytes', async () => {
    const { cluster } = fakeCluster(() => ({ iv: randomBytes(12).toString('base64'), ciphertext: randomBytes(10).toString('base64') }));
    const error = await rejection(new KeyService(cluster).encrypt(KEY, 1, Buffer.alloc(3), Buffer.alloc(0), Deadline.after(100)));
    assert.equal(error.code, 'INTERNAL');
  });
});

describe('KeyService.decrypt', () => {
  it('sends ciphertext||tag, the IV and the AAD in Base64 and returns the plaintext', async () => {
    const plaintext = Buffer.from('the plaintext');
    const { cluster, calls } = fakeCluster(() => ({ plaintext: plaintext.toString('base64') }));
    const aad = Buffer.from('framed aad');
    const iv = randomBytes(12);
    const ciphertext = randomBytes(13);
    const tag = randomBytes(16);
    const deadline = Deadline.after(100);
    const result = await new KeyService(cluster).decrypt(KEY, 2, aad, iv, ciphertext, tag, deadline);
    assert.deepEqual(result.plaintext, plaintext);
    assert.equal(result.member, 'hsm-b');
    assert.equal(result.attempts, 2);
    assert.deepEqual(calls[0]?.operation, {
      op: 'decrypt',
      label: 'hsm-label-1.v2',
      aad: aad.toString('base64'),
      iv: iv.toString('base64'),
      ciphertext: Buffer.concat([ciphertext, tag]).toString('base64'),
    });
    assert.equal(calls[0]?.deadline, deadline);
  });
});

describe('KeyService.describe', () => {
  it('asks for the versioned label and returns the description', async () => {
    const { cluster, calls } = fakeCluster(() => DESCRIPTION);
    const result = await new KeyService(cluster).describe(KEY, 1, Deadline.after(100));
    assert.deepEqual(result.description, DESCRIPTION);
    assert.equal(result.member, 'hsm-b');
    assert.deepEqual(calls[0]?.operation, { op: 'describe', label: 'hsm-label-1' });
  });
});

describe('KeyService: HSM failures become proxy errors', () => {
  const expectations: { kind: HsmErrorKind; operation: Operation; code: ProxyErrorCode; retryable: boolean }[] = [
    { kind: 'data', operation: 'decrypt', code: 'INVALID_CIPHERTEXT', retryable: false },
    { kind: 'data', operation: 'encrypt', code: 'VALIDATION', retryable: false },
    { kind: 'key-usage', operation: 'encrypt', code: 'INVALID_KEY_USAGE', retryable: false },
    { kind: 'key-usage', operation: 'decrypt', code: 'INVALID_KEY_USAGE', retryable: false },
    { kind: 'key-not-found', operation: 'encrypt', code: 'KEY_NOT_FOUND', retryable: false },
    { kind: 'key-not-found', operation: 'describe', code: 'KEY_NOT_FOUND', retryable: false },
    { kind: 'timeout', operation: 'encrypt', code: 'DEPENDENCY_TIMEOUT', retryable: true },
    { kind: 'timeout', operation: 'decrypt', code: 'DEPENDENCY_TIMEOUT', retryable: true },
    { kind: 'device', operation: 'encrypt', code: 'INTERNAL', retryable: true },
    { kind: 'unavailable', operation: 'decrypt', code: 'INTERNAL', retryable: true },
    { kind: 'session', operation: 'describe', code: 'INTERNAL', retryable: true },
    { kind: 'key-ambiguous', operation: 'encrypt', code: 'INTERNAL', retryable: false },
    { kind: 'misconfigured', operation: 'decrypt', code: 'INTERNAL', retryable: false },
    { kind: 'internal', operation: 'encrypt', code: 'INTERNAL', retryable: false },
  ];

  it('covers every HSM error kind', () => {
    assert.deepEqual([...new Set(expectations.map((entry) => entry.kind))].sort(), [...HSM_ERROR_KINDS].sort());
  });

  for (const { kind, operation, code, retryable } of expectations) {
    it(`${kind} on ${operation} -> ${code} (retryable ${retryable})`, async () => {
      const cause = new HsmError(kind, `${operation} failed: CKR_SOMETHING`, { ckr: 0x30, ckrName: 'CKR_SOMETHING', member: 'hsm-a' });
      const error = await rejection(run(new KeyService(failingCluster(cause)), operation));
      assert.equal(error.code, code);
      assert.equal(error.retryable, retryable);
      assert.equal(error.cause, cause);
      assert.equal(error.detail?.['hsmKind'], kind);
      assert.equal(error.detail?.['member'], 'hsm-a');
      assert.equal(error.detail?.['ckr'], 'CKR_SOMETHING');
      assert.ok(!error.publicMessage.includes('CKR_'), 'the public message does not carry HSM internals');
      assert.ok(!error.publicMessage.includes('hsm-a'));
    });
  }

  it('makes a non-HsmError INTERNAL and not retryable, keeping it as the cause only', async () => {
    const cause = new TypeError('LEAK-MARKER undefined is not a function');
    const error = await rejection(run(new KeyService(failingCluster(cause)), 'encrypt'));
    assert.equal(error.code, 'INTERNAL');
    assert.equal(error.retryable, false);
    assert.equal(error.cause, cause);
    assert.ok(!error.publicMessage.includes('LEAK-MARKER'));
  });

  it('makes a thrown non-Error INTERNAL', async () => {
    const error = await rejection(run(new KeyService(failingCluster('string thrown')), 'decrypt'));
    assert.equal(error.code, 'INTERNAL');
    assert.equal(error.retryable, false);
  });

  it('does not tell the client that the plaintext was the problem on decrypt', async () => {
    const error = await rejection(run(new KeyService(failingCluster(new HsmError('data', 'decrypt failed: CKR_GENERAL_ERROR'))), 'decrypt'));
    assert.match(error.publicMessage, /ciphertext/);
  });
});
