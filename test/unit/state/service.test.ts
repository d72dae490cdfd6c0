import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { pino } from 'pino';
import { emptyState, parseState, serializeState, type StateDocument } from '../../../src/state/document.js';
import type { HsmStateStore, StateWriteResult } from '../../../src/state/hsm-store.js';
import { StateConflictError, StateService, type StateNotifier } from '../../../src/state/service.js';

// --- fixtures ------------------------------------------------------------------

const MEMBERS = ['hsm-a', 'hsm-b', 'hsm-c'];
const SETTINGS = { syncIntervalMs: 3_600_000 };
const logger = pino({ level: 'silent' });

interface WriteCall {
  readonly version: number;
  readonly updatedBy: string;
  readonly only: readonly string[] | undefined;
  readonly result: StateWriteResult;
}

/**
 * An in-memory stand-in for HsmStateStore, shared by several StateService
 * instances. Each member holds serialized bytes (so replicas share no
 * objects) and applies putData's compare-and-set: a member that already holds
 * a version >= the written one refuses with a conflict. A write is applied to
 * all its members at once, after one turn of the event loop.
 */
class FakeStateStore {
  private readonly held = new Map<string, Buffer | null>();
  readonly writes: WriteCall[] = [];
  reads = 0;
  /** Members whose writes fail (unreachable). */
  readonly failing = new Set<string>();
  /** Members that cannot be read. */
  readonly unreadable = new Set<string>();
  /** Runs before a write is applied: a rival replica may slip its own write in here. */
  beforeWrite: ((document: StateDocument) => void) | undefined;
  private gate: { size: number; waiting: Array<() => void> } | undefined;

  constructor(members: readonly string[]) {
    for (const id of members) this.held.set(id, null);
  }

  /** The next `size` reads wait for each other, so that many replicas start from the same version. */
  holdReads(size: number): void {
    this.gate = { size, waiting: [] };
  }

  /** Puts a document on members directly (another writer, or a restore). */
  put(document: StateDocument, members: readonly string[] = [...this.held.keys()]): void {
    for (const id of members) this.held.set(id, serializeState(document));
  }

  holding(member: string): StateDocument | null | undefined {
    const bytes = this.held.get(member);
    return bytes === null || bytes === undefined ? bytes : parseState(bytes);
  }

  memberIds(): string[] {
    return [...this.held.keys()];
  }

  async read(): Promise<Map<string, StateDocument | null | undefined>> {
    this.reads++;
    const gate = this.gate;
    if (gate !== undefined) {
      await new Promise<void>((resolve) => {
        gate.waiting.push(resolve);
        if (gate.waiting.length === gate.size) {
          this.gate = undefined;
          for (const release of gate.waiting) release();
        }
      });
    }
    await tick();
    return new Map([...this.held].map(([id]) => [id, this.unreadable.has(id) ? undefined : this.holding(id)]));
  }

  async write(document: StateDocument, only?: readonly string[]): Promise<StateWriteResult> {
    await tick();
    this.beforeWrite?.(document);
    const written: string[] = [];
    const conflicts: Array<{ member: string; version: number }> = [];
    const failed: string[] = [];
    for (const id of this.held.keys()) {
      if (only !== undefined && !only.includes(id)) continue;
      if (this.failing.has(id)) {
        failed.push(id);
        continue;
      }
      const current = this.holding(id);
      if (current !== null && current !== undefined && current.version >= document.version) {
        conflicts.push({ member: id, version: current.version });
        continue;
      }
      this.held.set(id, serializeState(document));
      written.push(id);
    }
    const result = { written, conflicts, failed };
    this.writes.push({ version: document.version, updatedBy: document.updatedBy, only, result });
    return result;
  }

  /** The document every reader would adopt (they all agree in these tests). */
  newest(): StateDocument | undefined {
    const documents = this.memberIds()
      .map((id) => this.holding(id))
      .filter((document): document is StateDocument => document !== null && document !== undefined);
    return documents.sort((a, b) => b.version - a.version)[0];
  }

  conflicted(): WriteCall[] {
    return this.writes.filter((call) => call.result.conflicts.length > 0);
  }
}

function service(store: FakeStateStore, notifier?: StateNotifier): StateService {
  return new StateService(store as unknown as HsmStateStore, SETTINGS, notifier, logger);
}

/** A change that stops one key store: easy to see in the final document. */
function stop(keyStore: string): (draft: StateDocument) => void {
  return (draft) => {
    draft.killedStores[keyStore] = { at: '2030-01-01T00:00:00.000Z', by: `test:${keyStore}` };
  };
}

class FakeNotifier implements StateNotifier {
  readonly published: number[] = [];
  listener: ((version: number) => void) | undefined;

  publish(version: number): void {
    this.published.push(version);
  }

  subscribe(listener: (version: number) => void): void {
    this.listener = listener;
  }

  async close(): Promise<void> {}
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail('expected a rejection');
}

// --- tests ---------------------------------------------------------------------

describe('StateService.mutate: one replica', () => {
  it('writes the change as the next version to every member and adopts it', async () => {
    const store = new FakeStateStore(MEMBERS);
    const state = service(store);
    const before = Date.now();
    const written = await state.mutate('mtls:alice', stop('prod'));
    assert.equal(written.version, 1);
    assert.equal(written.updatedBy, 'mtls:alice');
    const updatedAt = Date.parse(written.updatedAt);
    assert.ok(updatedAt >= before - 1000 && updatedAt <= Date.now() + 1000, written.updatedAt);
    assert.deepEqual(Object.keys(written.killedStores), ['prod']);
    assert.equal(state.current, written);
    for (const member of MEMBERS) assert.deepEqual(store.holding(member), written, member);
    assert.deepEqual(store.writes.map((call) => call.result), [{ written: MEMBERS, conflicts: [], failed: [] }]);
  });

  it('gives the change a copy: a change that throws leaves the current state untouched and writes nothing', async () => {
    const store = new FakeStateStore(MEMBERS);
    const state = service(store);
    await state.mutate('a', stop('prod'));
    const refusal = new Error('refused by the change');
    const error = await rejection(
      state.mutate('b', (draft) => {
        delete draft.killedStores['prod'];
        draft.killedStores['dev'] = { at: '2030-01-01T00:00:00.000Z', by: 'b' };
        throw refusal;
      }),
    );
    assert.equal(error, refusal);
    assert.deepEqual(Object.keys(state.current.killedStores), ['prod']);
    assert.equal(state.current.version, 1);
    assert.equal(store.writes.length, 1);
  });

  it('refuses a change that makes the document invalid, before writing', async () => {
    const store = new FakeStateStore(MEMBERS);
    const state = service(store);
    const error = await rejection(
      state.mutate('a', (draft) => {
        (draft.killedStores as Record<string, unknown>)['prod'] = { at: 'not a time', by: 'a' };
      }),
    );
    assert.equal((error as Error).name, 'ZodError');
    assert.equal(store.writes.length, 0);
    assert.equal(state.current.version, 0);
  });

  it('serialises its own concurrent writes: each change sees the previous one, and none conflicts', async () => {
    const store = new FakeStateStore(MEMBERS);
    const state = service(store);
    const seen: string[][] = [];
    const changes = ['s1', 's2', 's3'].map((name) =>
      state.mutate(name, (draft) => {
        seen.push(Object.keys(draft.killedStores));
        stop(name)(draft);
      }),
    );
    const results = await Promise.all(changes);
    assert.deepEqual(
      results.map((document) => document.version),
      [1, 2, 3],
    );
    assert.deepEqual(seen, [[], ['s1'], ['s1', 's2']]);
    assert.deepEqual(store.conflicted(), []);
  });

  it('keeps going after a failed mutate (the write chain does not stay rejected)', async () => {
    const store = new FakeStateStore(MEMBERS);
    const state = service(store);
    const failed = state.mutate('a', () => {
      throw new Error('no');
    });
    const next = state.mutate('b', stop('prod'));
    await rejection(failed);
    assert.equal((await next).version, 1);
  });

  it('publishes the new version and tells the listeners; a failing listener does not fail the write', async () => {
    const store = new FakeStateStore(MEMBERS);
    const notifier = new FakeNotifier();
    const state = service(store, notifier);
    const heard: number[] = [];
    state.onChange(() => {
      throw new Error('listener bug');
    });
    state.onChange((document) => heard.push(document.version));
    await state.mutate('a', stop('prod'));
    await state.mutate('a', stop('dev'));
    assert.deepEqual(notifier.published, [1, 2]);
    assert.deepEqual(heard, [1, 2]);
  });

  it('succeeds with a majority of members and leaves the lagging one to repair', async () => {
    const store = new FakeStateStore(MEMBERS);
    store.failing.add('hsm-c');
    const state = service(store);
    const written = await state.mutate('a', stop('prod'));
    assert.equal(written.version, 1);
    assert.equal(store.holding('hsm-c'), null);
    store.failing.clear();
    await state.sync();
    assert.deepEqual(store.holding('hsm-c'), written, 'the next sync rewrites the lagging member');
    assert.deepEqual(store.writes.at(-1)?.only, ['hsm-c']);
  });

  it('without a rival, a write that reached only a minority (the others unreachable) stands: a kill switch works while most HSMs are down', async () => {
    const store = new FakeStateStore(MEMBERS);
    store.failing.add('hsm-b');
    store.failing.add('hsm-c');
    const notifier = new FakeNotifier();
    const state = service(store, notifier);
    const written = await state.mutate('a', stop('prod'));
    assert.equal(written.version, 1);
    assert.equal(state.current.version, 1, 'the replica applies it');
    assert.deepEqual(notifier.published, [1], 'and tells the others');
    assert.equal(store.writes.length, 1, 'no retry without a conflict');
  });

  it('the minority copy reaches the members that were down at the next sync', async () => {
    const store = new FakeStateStore(['m1', 'm2', 'm3', 'm4']);
    store.failing.add('m3');
    store.failing.add('m4');
    const state = service(store);
    await state.mutate('a', stop('prod'));
    store.failing.clear();
    await state.sync();
    const held = await store.read();
    assert.deepEqual([...held.values()].map((document) => document?.version), [1, 1, 1, 1]);
  });

  it('fails with StateConflictError when no member took the write', async () => {
    const store = new FakeStateStore(MEMBERS);
    for (const member of MEMBERS) store.failing.add(member);
    const state = service(store);
    const error = await rejection(state.mutate('a', stop('prod')));
    assert.ok(error instanceof StateConflictError, String(error));
    assert.match(error.message, /could not be written on any of the 3 HSM members/);
    assert.equal(state.current.version, 0);
  });
});

describe('StateService.mutate: compare-and-set against other replicas', () => {
  it('on a conflict, re-reads the newest state, re-applies the change on top of it and writes the next version', async () => {
    const store = new FakeStateStore(MEMBERS);
    const state = service(store);
    // Another replica writes version 1 between this replica's read and its write.
    let rivalWrote = false;
    store.beforeWrite = (document) => {
      if (rivalWrote) return;
      rivalWrote = true;
      assert.equal(document.version, 1);
      const rival: StateDocument = { ...emptyState(), version: 1, updatedAt: '2030-01-01T00:00:00.000Z', updatedBy: 'rival', killedStores: { rival: { at: '2030-01-01T00:00:00.000Z', by: 'rival' } } };
      store.put(rival);
    };
    const drafts: Array<{ version: number; stores: string[] }> = [];
    const written = await state.mutate('mine', (draft) => {
      drafts.push({ version: draft.version, stores: Object.keys(draft.killedStores) });
      stop('mine')(draft);
    });
    assert.deepEqual(drafts, [
      { version: 0, stores: [] },
      { version: 1, stores: ['rival'] },
    ]);
    assert.equal(written.version, 2);
    assert.deepEqual(Object.keys(written.killedStores).sort(), ['mine', 'rival']);
    assert.equal(store.reads, 2, 'one read per attempt');
    assert.deepEqual(
      store.writes.map((call) => [call.version, call.result.written.length, call.result.conflicts.length]),
      [
        [1, 0, 3],
        [2, 3, 0],
      ],
    );
    assert.deepEqual(store.newest(), written);
  });

  it('two replicas changing the state at the same moment lose neither change', async () => {
    const store = new FakeStateStore(MEMBERS);
    const a = service(store);
    const b = service(store);
    store.holdReads(2);
    const [fromA, fromB] = await Promise.all([a.mutate('replica-a', stop('store-a')), b.mutate('replica-b', stop('store-b'))]);
    // Both started from version 0: exactly one of the two version-1 writes lost and was redone as version 2.
    assert.deepEqual([fromA.version, fromB.version].sort(), [1, 2]);
    assert.equal(store.conflicted().length, 1);
    assert.equal(store.conflicted()[0]?.version, 1);
    const final = store.newest();
    assert.equal(final?.version, 2);
    assert.deepEqual(Object.keys(final?.killedStores ?? {}).sort(), ['store-a', 'store-b']);
    for (const member of MEMBERS) assert.deepEqual(store.holding(member), final, member);
    await Promise.all([a.sync(), b.sync()]);
    assert.deepEqual(a.current, final);
    assert.deepEqual(b.current, final);
  });

  it('several replicas each making several changes concurrently: every change survives', async () => {
    const store = new FakeStateStore(MEMBERS);
    const replicas = ['r1', 'r2', 'r3'].map((name) => ({ name, state: service(store) }));
    store.holdReads(replicas.length);
    await Promise.all(
      replicas.map(async ({ name, state }) => {
        for (let index = 0; index < 3; index++) await state.mutate(name, stop(`${name}-${index}`));
      }),
    );
    const final = store.newest();
    assert.equal(final?.version, 9);
    assert.deepEqual(Object.keys(final?.killedStores ?? {}).sort(), ['r1-0', 'r1-1', 'r1-2', 'r2-0', 'r2-1', 'r2-2', 'r3-0', 'r3-1', 'r3-2']);
    assert.ok(store.conflicted().length >= 2, 'the replicas did collide');
    // Versions were taken one at a time: every successful write was a distinct version.
    const successful = store.writes.filter((call) => call.only === undefined && call.result.written.length > 0).map((call) => call.version);
    assert.deepEqual(successful, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('gives up with StateConflictError after five attempts that all conflict', async (t) => {
    t.mock.method(Math, 'random', () => 0); // no jitter: keep the test fast
    const store = new FakeStateStore(MEMBERS);
    const state = service(store);
    // A rival always writes the same version first.
    store.beforeWrite = (document) => store.put({ ...document, updatedBy: 'rival', killedStores: {} });
    let calls = 0;
    const error = await rejection(
      state.mutate('mine', (draft) => {
        calls++;
        stop('mine')(draft);
      }),
    );
    assert.ok(error instanceof StateConflictError, String(error));
    assert.match(error.message, /kept changing/);
    assert.equal(calls, 5);
    assert.deepEqual(
      store.writes.map((call) => call.version),
      [1, 2, 3, 4, 5],
    );
    assert.equal(store.newest()?.updatedBy, 'rival');
    assert.equal(state.current.killedStores['mine'], undefined);
  });
});

describe('StateService.sync', () => {
  it('adopts the highest version, repairs members that lag or hold nothing, and leaves unreadable ones alone', async () => {
    const store = new FakeStateStore(['hsm-a', 'hsm-b', 'hsm-c', 'hsm-d']);
    const v3: StateDocument = { ...emptyState(), version: 3, updatedBy: 'x' };
    const v1: StateDocument = { ...emptyState(), version: 1, updatedBy: 'x' };
    store.put(v3, ['hsm-a']);
    store.put(v1, ['hsm-c']);
    store.unreadable.add('hsm-d');
    const state = service(store);
    const heard: number[] = [];
    state.onChange((document) => heard.push(document.version));
    await state.sync();
    assert.deepEqual(state.current, v3);
    assert.deepEqual(heard, [3]);
    assert.deepEqual(store.writes.map((call) => call.only), [['hsm-b', 'hsm-c']]);
    for (const member of ['hsm-a', 'hsm-b', 'hsm-c']) assert.deepEqual(store.holding(member), v3, member);
    assert.equal(store.holding('hsm-d'), null);
  });

  it('never goes back to an older version, and rewrites members that went back', async () => {
    const store = new FakeStateStore(MEMBERS);
    const state = service(store);
    await state.mutate('a', stop('prod'));
    await state.mutate('a', stop('dev'));
    const older: StateDocument = { ...emptyState(), version: 1, updatedBy: 'restored-backup' };
    store.put(older);
    await state.sync();
    assert.equal(state.current.version, 2);
    for (const member of MEMBERS) assert.equal(store.holding(member)?.version, 2, member);
  });

  it('writes nothing while there is no state at all', async () => {
    const store = new FakeStateStore(MEMBERS);
    await service(store).sync();
    assert.deepEqual(store.writes, []);
  });

  it('start() loads the state, and a notification of a newer version makes the replica re-read', async () => {
    const store = new FakeStateStore(MEMBERS);
    const writer = service(store);
    await writer.mutate('w', stop('prod'));
    const notifier = new FakeNotifier();
    const reader = service(store, notifier);
    await reader.start();
    try {
      assert.equal(reader.current.version, 1);
      await writer.mutate('w', stop('dev'));
      assert.equal(reader.current.version, 1, 'nothing changes before the notification');
      const reads = store.reads;
      notifier.listener?.(1);
      assert.equal(store.reads, reads, 'a notification of a version it already has is ignored');
      notifier.listener?.(2);
      await reader.sync();
      assert.equal(reader.current.version, 2);
      assert.deepEqual(Object.keys(reader.current.killedStores).sort(), ['dev', 'prod']);
    } finally {
      reader.stop();
    }
  });
});
