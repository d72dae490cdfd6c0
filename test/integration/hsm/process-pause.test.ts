import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';

/** Blocks this process's event loop, as a GC pause or CPU throttling (a container's CFS quota) would. */
function freezeEventLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy: nothing else runs
  }
}

/**
 * A pause of the proxy process itself is not an HSM failure: calls that were
 * answered while the process could not read the answers must not make every
 * member look stalled (which answered 500 "no HSM member can serve" with budget
 * left), and the watchdog must not kill agents for it.
 */
describe('a paused proxy process', () => {
  let fixture: ProxyFixture;
  before(async () => {
    fixture = await createFixture({
      name: 'process-pause',
      configure: (config) => {
        // The budget covers the pause, so only a wrong "stalled" verdict can fail a request.
        config.server.limits = { ...config.server.limits, requestBudgetMs: 1500 };
      },
    });
  });
  after(async () => {
    await fixture.close();
  });

  it('fails no request and restarts no agent', async () => {
    const restartsBefore = fixture.proxy?.cluster.snapshot().map((member) => member.lastError) ?? [];
    const failures: string[] = [];
    let stop = false;
    const worker = async (): Promise<void> => {
      while (!stop) {
        const response = await fixture.client.encrypt('foo', { plaintext: randomBytes(16) });
        if (response.status !== 200) failures.push(`${response.status} ${response.text}`);
      }
    };
    const workers = Array.from({ length: 12 }, () => worker());
    for (let pause = 0; pause < 4; pause++) {
      await sleep(300);
      freezeEventLoop(600);
    }
    await sleep(300);
    stop = true;
    await Promise.all(workers);
    assert.deepEqual(failures.slice(0, 5), [], `${failures.length} failed`);
    const after = fixture.proxy?.cluster.snapshot() ?? [];
    for (const [index, member] of after.entries()) {
      assert.ok(!String(member.lastError ?? '').includes('hung'), `${member.id}: ${String(member.lastError)} (before: ${String(restartsBefore[index])})`);
    }
  });
});
