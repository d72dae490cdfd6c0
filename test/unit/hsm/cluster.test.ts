import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { countsAgainstMember, createMemberBreaker } from '../../../src/hsm/breaker.js';
import { HsmCluster } from '../../../src/hsm/cluster.js';
import { HsmError, type HsmErrorKind } from '../../../src/hsm/errors.js';
import type { HsmMember } from '../../../src/hsm/member.js';
import type { AgentOperation } from '../../../src/hsm/protocol.js';
import { Deadline } from '../../../src/lib/deadline.js';

const silent = pino({ level: 'silent' });

interface FakeMember {
  id: string;
  loadValue: number;
  calls: Array<{ operation: AgentOperation; budget: number }>;
  behaviour: (operation: AgentOperation) => unknown;
}

function fake(id: string, loadValue: number, behaviour: FakeMember['behaviour'] = () => ({ ok: id })): FakeMember {
  return { id, loadValue, calls: [], behaviour };
}

function clusterOf(...members: FakeMember[]): HsmCluster {
  const shaped = members.map(
    (member) =>
      ({
        id: member.id,
        load: () => member.loadValue,
        health: () => (member.loadValue === Number.POSITIVE_INFINITY ? 'UNAVAILABLE' : 'ACTIVE'),
        snapshot: () => ({ id: member.id }),
        async execute(operation: AgentOperation, budget: number) {
          member.calls.push({ operation, budget });
          return member.behaviour(operation);
        },
      }) as unknown as HsmMember,
  );
  return new HsmCluster(shaped, silent);
}

const ENCRYPT: AgentOperation = { op: 'encrypt', label: 'k', aad: '', plaintext: '' };

function failing(kind: HsmErrorKind): () => never {
  return () => {
    throw new HsmError(kind, `${kind} failure`);
  };
}

describe('HsmCluster routing', () => {
  it('sends work to the member with the lowest load (outstanding work per weight)', async () => {
    const busy = fake('busy', 5);
    const idle = fake('idle', 1);
    const result = await clusterOf(busy, idle).execute(ENCRYPT, Deadline.after(200));
    assert.equal(result.member, 'idle');
    assert.equal(busy.calls.length, 0);
  });

  it('spreads work evenly across equally loaded members', async () => {
    const members = [fake('a', 1), fake('b', 1), fake('c', 1)];
    const cluster = clusterOf(...members);
    for (let i = 0; i < 30; i++) await cluster.execute(ENCRYPT, Deadline.after(200));
    assert.deepEqual(members.map((member) => member.calls.length), [10, 10, 10]);
  });

  it('never picks a member that cannot serve (infinite load)', async () => {
    const down = fake('down', Number.POSITIVE_INFINITY);
    const up = fake('up', 3);
    for (let i = 0; i < 5; i++) assert.equal((await clusterOf(down, up).execute(ENCRYPT, Deadline.after(200))).member, 'up');
    assert.equal(down.calls.length, 0);
  });

  it('answers at once with "unavailable" when no member can serve', async () => {
    await assert.rejects(clusterOf(fake('a', Number.POSITIVE_INFINITY)).execute(ENCRYPT, Deadline.after(200)), (error: unknown) => {
      assert.ok(error instanceof HsmError);
      assert.equal(error.kind, 'unavailable');
      return true;
    });
  });
});

describe('HsmCluster retry policy', () => {
  for (const kind of ['device', 'session', 'timeout', 'unavailable'] as const) {
    it(`retries once on another member after a ${kind} failure`, async () => {
      const bad = fake('bad', 1, failing(kind));
      const good = fake('good', 2);
      const result = await clusterOf(bad, good).execute(ENCRYPT, Deadline.after(200));
      assert.equal(result.member, 'good');
      assert.equal(result.attempts, 2);
    });
  }

  it('retries a key missing on one member (provisioning in progress) on another', async () => {
    const result = await clusterOf(fake('missing', 1, failing('key-not-found')), fake('has-it', 2)).execute(ENCRYPT, Deadline.after(200));
    assert.equal(result.member, 'has-it');
  });

  for (const kind of ['data', 'key-usage', 'key-ambiguous', 'misconfigured', 'internal'] as const) {
    it(`does not retry a ${kind} failure`, async () => {
      const first = fake('first', 1, failing(kind));
      const second = fake('second', 2);
      await assert.rejects(clusterOf(first, second).execute(ENCRYPT, Deadline.after(200)), (error: unknown) => error instanceof HsmError && error.kind === kind);
      assert.equal(second.calls.length, 0);
    });
  }

  it('retries only once: two failing members end the request', async () => {
    const a = fake('a', 1, failing('device'));
    const b = fake('b', 2, failing('device'));
    const c = fake('c', 3);
    await assert.rejects(clusterOf(a, b, c).execute(ENCRYPT, Deadline.after(200)));
    assert.equal(c.calls.length, 0);
  });

  it('keeps half of the budget for the retry on the first attempt', async () => {
    const a = fake('a', 1, failing('timeout'));
    const b = fake('b', 2);
    await clusterOf(a, b).execute(ENCRYPT, Deadline.after(200));
    assert.ok((a.calls[0]?.budget ?? 0) <= 100.5, `first attempt got ${a.calls[0]?.budget}`);
    assert.ok((b.calls[0]?.budget ?? 0) > 90, `retry got ${b.calls[0]?.budget}`);
  });

  it('gives the whole budget to the only member', async () => {
    const only = fake('only', 1);
    await clusterOf(only).execute(ENCRYPT, Deadline.after(200));
    assert.ok((only.calls[0]?.budget ?? 0) > 190);
  });

  it('does not retry when the remaining budget is too small to finish', async () => {
    const a = fake('a', 1, () => {
      const until = Date.now() + 15;
      while (Date.now() < until) {
        // Burn the budget.
      }
      throw new HsmError('device', 'slow failure');
    });
    const b = fake('b', 2);
    await assert.rejects(clusterOf(a, b).execute(ENCRYPT, Deadline.after(12)));
    assert.equal(b.calls.length, 0);
  });
});

describe('member circuit breaker policy', () => {
  it('counts only failures that blame the member', () => {
    for (const kind of ['device', 'session', 'timeout', 'misconfigured'] as const) assert.equal(countsAgainstMember(new HsmError(kind, 'x')), true, kind);
    for (const kind of ['data', 'key-usage', 'key-not-found', 'unavailable', 'internal'] as const) assert.equal(countsAgainstMember(new HsmError(kind, 'x')), false, kind);
    assert.equal(countsAgainstMember(new Error('plain')), false);
  });

  const settings = { errorThresholdPercentage: 50, volumeThreshold: 4, resetTimeoutMs: 100, rollingWindowMs: 10_000 };
  const failingWith = (kind: HsmErrorKind) =>
    createMemberBreaker('test', async () => {
      throw new HsmError(kind, 'x');
    }, settings);

  it('never opens for client faults, however many', async () => {
    const breaker = failingWith('data');
    try {
      for (let i = 0; i < 50; i++) await breaker.fire().catch(() => undefined);
      assert.equal(breaker.opened, false);
    } finally {
      breaker.shutdown();
    }
  });

  it('opens once the volume threshold is met, rejects fast while open, then allows exactly one trial', async () => {
    const breaker = failingWith('device');
    try {
      for (let i = 0; i < 3; i++) await breaker.fire().catch(() => undefined);
      assert.equal(breaker.opened, false, 'below the volume threshold an early failure cannot open it');
      await breaker.fire().catch(() => undefined);
      assert.equal(breaker.opened, true);
      await assert.rejects(breaker.fire(), (error: unknown) => (error as { code?: string }).code === 'EOPENBREAKER');
      await new Promise((resolve) => setTimeout(resolve, 150));
      assert.equal(breaker.halfOpen, true);
      assert.equal(breaker.pendingClose, true, 'the next call is the trial');
      await breaker.fire().catch(() => undefined);
      assert.equal(breaker.opened, true, 'a failed trial opens it again');
    } finally {
      breaker.shutdown();
    }
  });
});
