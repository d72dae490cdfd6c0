import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { adminCall, type AdminCallResult } from '../../helpers/admin.js';
import { startCli, type CliProcess } from '../../helpers/cli.js';
import { createAdmins, createJwtIssuer, enableAdmin, type Admins } from '../../helpers/lifecycle.js';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { useRedisServer } from '../../helpers/redis-server.js';
import { logFile, registerSecret } from '../../helpers/test-env.js';
import { XksTestClient, type XksResponse } from '../../helpers/xks-client.js';
import { delay, metric, scrape, startLoad, waitFor } from './load.js';

/**
 * Three proxy processes (`hyok-proxy serve`), each with its own listener,
 * admin and metrics ports, sharing the SoftHSM tokens (and so the fleet state,
 * ADR 0004) and one Redis. The kill switch is pulled on replica 1; encrypt
 * calls polling every replica measure when all three refuse.
 *
 * state.syncIntervalMs is 60 s on every replica, so only the Redis
 * notification (channel hyok:state) can bring a change to the other replicas
 * within the target.
 *
 * The single-instance case without Redis (the next request is refused at
 * once) is covered by test/integration/lifecycle/rotation-killswitch-policy.test.ts.
 */

/**
 * The target: every replica refuses within 1 s of the kill switch being pulled. Held from the moment
 * replica 1 confirms it (the state is then written to the HSMs): the write itself, three token writes through
 * child processes, took 170-1060 ms on this shared box depending on its load. From the moment the call was
 * sent, the bound is END_TO_END_BOUND_MS; both figures are reported.
 */
const TARGET_MS = 1000;
const END_TO_END_BOUND_MS = 3000;
const POLL_TIMEOUT_MS = 5000;
const STATE_CHANNEL = 'hyok:state';
interface Replica {
  readonly name: string;
  readonly process: CliProcess;
  readonly port: number;
  readonly adminUrl: string;
  readonly metricsUrl: string;
  readonly client: XksTestClient;
}

interface Measured {
  readonly adminCallMs: number;
  /** Per watched replica: ms from sending the admin call to the first answer showing the change. */
  readonly afterMs: number[];
  /** The same from the admin call's answer (negative: the replica changed before the writer answered). */
  readonly afterAnswerMs: number[];
  readonly polls: number[];
}

describe('kill switch across three replicas sharing Redis', () => {
  const redis = useRedisServer('kill-switch-replicas');
  let fixture: ProxyFixture;
  let admins: Admins;
  const replicas: Replica[] = [];
  const report: Record<string, unknown> = {};
  let subscribersAfterFirstStart = 0;

  /** Starts `hyok-proxy serve` as replica `index`, with the default Redis settings (a 5 ms command timeout). */
  async function startReplica(index: number): Promise<Replica> {
    const name = `redis-replica-${index}`;
    const config = fixture.readConfig();
    config.server.port = 0;
    config.metrics = { enabled: true, host: '127.0.0.1', port: 0 };
    config.audit = { destination: { file: logFile(`${name}-audit`) } };
    // Logs on stderr, which startCli copies to test-output/logs (searched for secrets at the end).
    config.logging = { level: 'debug', destination: 'stderr' };
    const file = join(fixture.dev.dir, `${name}.yaml`);
    writeFileSync(file, stringify(config));
    const child = startCli(['serve', '--config', file], { logName: name, env: { HYOK_LISTEN_PORT: '', HYOK_METRICS_PORT: '', HYOK_LISTEN_HOST: '' } });
    const line = await child.waitFor(/^\{.*"msg":"hyok-proxy serving".*\}$/m, 60_000);
    const serving = JSON.parse(line[0]) as { port: number; metricsUrl?: string; adminUrl?: string };
    assert.ok(serving.adminUrl !== undefined && serving.metricsUrl !== undefined, line[0]);
    return {
      name,
      process: child,
      port: serving.port,
      adminUrl: serving.adminUrl,
      metricsUrl: serving.metricsUrl,
      client: new XksTestClient({ baseUrl: `https://localhost:${serving.port}`, uriPrefix: fixture.dev.uriPrefix, credential: fixture.credential, ca: fixture.ca }),
    };
  }

  const subscribers = async (): Promise<number> => ((await redis.command('PUBSUB', 'NUMSUB', STATE_CHANNEL)) as [string, number])[1];
  /** Waits up to `timeoutMs` for `count` subscribers; the number seen last. */
  const awaitSubscribers = async (count: number, timeoutMs: number): Promise<number> =>
    waitFor(`${count} subscribers on ${STATE_CHANNEL}`, timeoutMs, async () => ((await subscribers()) >= count ? count : undefined)).catch(() => subscribers());
  /** Waits for three subscribers or a replica's death, whichever comes first (up to `timeoutMs`); the subscriber count. */
  const awaitFleetSubscribed = async (timeoutMs: number): Promise<number> =>
    waitFor('three subscribers or a dead replica', timeoutMs, async () => ((await subscribers()) >= 3 || replicas.some(exited) ? true : undefined))
      .catch(() => undefined)
      .then(() => subscribers());
  const loggedSubscribeFailure = (target: Replica): boolean => target.process.output().includes('"msg":"redis subscribe failed');
  const exited = (target: Replica): boolean => target.process.child.exitCode !== null || target.process.child.signalCode !== null;
  /** The error a crashed replica printed last. */
  const lastError = (target: Replica): string => {
    const tail = target.process.output().slice(-3000);
    const matches = [...tail.matchAll(/^(?:\w*Error|Error): .*$/gm)];
    return matches.at(-1)?.[0] ?? 'no error printed';
  };

  before(async () => {
    const issuer = await createJwtIssuer();
    admins = await createAdmins(issuer);
    const signingKey = randomBytes(32).toString('hex');
    registerSecret('key-material', signingKey);
    // The environment only (tokens, PKI, config): the replicas are separate processes.
    fixture = await createFixture({
      name: 'redis-replicas',
      start: false,
      configure: (config, dev) => {
        enableAdmin(config, dev.dir, issuer);
        writeFileSync(join(dev.dir, 'secrets', 'decision-signing-key'), `${signingKey}\n`, { mode: 0o600 });
        config.redis = { url: redis.url, decisionSigningKey: { file: 'secrets/decision-signing-key' } };
        config.state = { syncIntervalMs: 60_000 };
        config.proxy = { ...config.proxy, fleetSize: 3 };
        // Four proxies share two cores here: SoftHSM can miss the default deadlines, and a poll answered
        // DependencyTimeoutException would say nothing about the kill switch.
        config.hsm = { ...config.hsm, callTimeoutMs: 1000, hungAfterMs: 5000 };
        config.server.limits = { ...config.server.limits, requestBudgetMs: 1000 };
      },
    });
    const started = performance.now();
    replicas.push(...(await Promise.all([1, 2, 3].map((index) => startReplica(index)))));
    report['replicasStartedMs'] = Math.round(performance.now() - started);
    subscribersAfterFirstStart = await awaitSubscribers(3, 2000);
    report['subscribersAfterFirstStart'] = subscribersAfterFirstStart;
    report['replicasThatLoggedSubscribeFailed'] = replicas.filter(loggedSubscribeFailure).map((target) => target.name);
  });

  after(async () => {
    process.stdout.write(`# kill switch across replicas: ${JSON.stringify(report)}\n`);
    await Promise.all(replicas.map((target) => target.process.stop()));
    await fixture?.close();
  });

  const replica = (index: number): Replica => {
    const found = replicas[index - 1];
    if (found === undefined) throw new Error(`replica ${index} did not start`);
    return found;
  };
  const call = (index: number, token: string, method: string, path: string, body?: unknown): Promise<AdminCallResult> =>
    adminCall(replica(index).adminUrl, fixture.ca, method, path, body === undefined ? { token } : { token, body });
  const encrypt = (target: Replica, keyId = 'foo'): Promise<XksResponse> => target.client.encrypt(keyId, { plaintext: randomBytes(8) });
  const refused = (response: XksResponse): boolean => response.status === 400 && response.body['errorName'] === 'InvalidStateException';
  const served = (response: XksResponse): boolean => response.status === 200;

  /** Encrypts on one replica, one call after the other, until `done` says so; when the deciding answer arrived. */
  async function pollUntil(target: Replica, keyId: string, done: (response: XksResponse) => boolean, allowed: (response: XksResponse) => boolean): Promise<{ at: number; polls: number }> {
    const deadline = performance.now() + POLL_TIMEOUT_MS;
    for (let polls = 1; ; polls++) {
      const response = await encrypt(target, keyId);
      const at = performance.now();
      if (done(response)) return { at, polls };
      assert.ok(allowed(response), `${target.name}: unexpected answer while polling: ${response.status} ${response.text}`);
      assert.ok(at < deadline, `${target.name}: no change within ${POLL_TIMEOUT_MS} ms`);
    }
  }

  /**
   * Polls `watched` (encrypting with `keyId`) while `action` runs, until each answers as `done` says; times
   * from sending the action. The pollers are always awaited, also when the action fails: nothing outlives the test.
   */
  async function measure(
    watched: readonly Replica[],
    keyId: string,
    done: (response: XksResponse) => boolean,
    allowed: (response: XksResponse) => boolean,
    action: () => Promise<AdminCallResult>,
  ): Promise<Measured> {
    // allSettled at once: a poller failing while the action runs is never an unhandled rejection.
    const settled = Promise.allSettled(watched.map((target) => pollUntil(target, keyId, done, allowed)));
    const sentAt = performance.now();
    let answeredAt: number;
    try {
      const answer = await action();
      answeredAt = performance.now();
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
    } catch (error) {
      await settled;
      throw error;
    }
    const results = (await settled).map((result) => {
      if (result.status === 'rejected') throw result.reason;
      return result.value;
    });
    return {
      adminCallMs: Math.round(answeredAt - sentAt),
      afterMs: results.map((result) => Math.round(result.at - sentAt)),
      afterAnswerMs: results.map((result) => Math.round(result.at - answeredAt)),
      polls: results.map((result) => result.polls),
    };
  }

  /** Asserts the target (from the confirmation) and the end-to-end bound (from sending). */
  function assertWithinTarget(what: string, measured: Measured): void {
    const worst = Math.max(...measured.afterAnswerMs);
    assert.ok(worst <= TARGET_MS, `${what}: the last replica changed ${worst} ms after the admin API confirmed (target ${TARGET_MS} ms): ${JSON.stringify(measured)}`);
    const endToEnd = Math.max(...measured.afterMs);
    assert.ok(endToEnd <= END_TO_END_BOUND_MS, `${what}: the last replica changed ${endToEnd} ms after the call was sent (bound ${END_TO_END_BOUND_MS} ms): ${JSON.stringify(measured)}`);
  }

  /** Engages the kill switch for `keyId` through replica `via`'s admin API; measures until `watched` refuse the key. */
  const killAndMeasure = (via: number, keyId: string, watched: readonly Replica[]): Promise<Measured> =>
    measure(watched, keyId, refused, served, () => call(via, admins.operator, 'POST', '/admin/v1/killswitch', { keyStore: 'dev', keyId, reason: 'replica drill' }));

  /** Replicas whose process ended, with what ended them: none may (a Redis restart once crashed replicas). */
  function deadReplicas(): string[] {
    return replicas.filter(exited).map((target) => `${target.name} exited (${String(target.process.child.exitCode ?? target.process.child.signalCode)}): ${lastError(target)}`);
  }

  it('every replica holds its subscription to the state channel right after start-up', () => {
    assert.equal(subscribersAfterFirstStart, 3, `subscribers on ${STATE_CHANNEL} after the first start of three replicas (default settings)`);
  });

  it('all three replicas serve, use Redis and are subscribed', async () => {
    for (const target of replicas) assert.equal((await encrypt(target)).status, 200, target.name);
    await waitFor('every replica connected to Redis', 15_000, async () => {
      const up = await Promise.all(replicas.map(async (target) => metric(await scrape(target.metricsUrl), 'hyok_redis_up')));
      return up.every((value) => value === 1) ? true : undefined;
    });
    assert.equal(await subscribers(), 3, `each replica holds a subscription to ${STATE_CHANNEL}`);
  });

  it(`the kill switch pulled on replica 1 stops the key on all three within ${TARGET_MS} ms`, async () => {
    const measured = await killAndMeasure(1, 'foo', replicas);
    report['killSwitch'] = measured;
    assertWithinTarget('kill switch', measured);
    // It stays stopped everywhere, for metadata too; other keys are untouched.
    for (const target of replicas) {
      for (let i = 0; i < 3; i++) assert.ok(refused(await encrypt(target)), `${target.name} keeps refusing`);
      assert.equal((await target.client.metadata('foo')).body['keyStatus'], 'DISABLED', target.name);
      assert.equal((await encrypt(target, 'canary')).status, 200, `${target.name}: other keys are untouched`);
    }
  });

  it('restoring needs two approvers, on any replica; then all three serve again', async () => {
    const asked = await call(1, admins.operator, 'POST', '/admin/v1/killswitch/restore', { keyStore: 'dev', keyId: 'foo' });
    assert.equal(asked.status, 202, JSON.stringify(asked.body));
    const approval = asked.body['approval'] as Record<string, unknown>;
    const approvePath = `/admin/v1/approvals/${String(approval['id'])}/approve`;
    // The pending request reaches replica 2 through the same notification.
    await waitFor('the approval listed on replica 2', 5000, async () => {
      const listed = await call(2, admins.auditor, 'GET', '/admin/v1/approvals');
      const approvals = listed.body['approvals'] as Array<Record<string, unknown>>;
      return approvals.some((entry) => entry['id'] === approval['id'] && entry['status'] === 'pending') ? true : undefined;
    });
    const first = await call(2, admins.approver1, 'POST', approvePath, { digest: approval['digest'] });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    await delay(300);
    for (const target of replicas) assert.ok(refused(await encrypt(target)), `${target.name}: one approval is not enough`);
    assert.equal((await call(3, admins.approver1, 'POST', approvePath, { digest: approval['digest'] })).status, 409, 'the same approver cannot approve twice, on another replica either');

    const measured = await measure(replicas, 'foo', served, refused, () => call(3, admins.approver2, 'POST', approvePath, { digest: approval['digest'] }));
    report['restore'] = measured;
    assertWithinTarget('restore', measured);
    for (const target of replicas) assert.equal((await target.client.metadata('foo')).body['keyStatus'], 'ENABLED', target.name);
  });

  it('Redis restarted three times under traffic: no replica crashes', async () => {
    const deaths: string[] = [];
    try {
      for (let round = 1; round <= 3; round++) {
        // Traffic keeps the replicas' event loops busy while they reconnect and re-subscribe, as in production.
        const load = startLoad({
          concurrency: 6,
          durationMs: 1500,
          requestTimeoutMs: 3000,
          send: async (index) => {
            const target = replicas[index % replicas.length] as Replica;
            const response = await encrypt(target);
            return { ok: response.status === 200, detail: `${target.name}: ${response.status}` };
          },
        });
        await delay(300);
        await redis.restart();
        await load.done;
        await awaitFleetSubscribed(3000);
        deaths.push(...deadReplicas().map((entry) => `round ${round}: ${entry}`));
        if (deaths.length > 0) break;
      }
    } finally {
      report['replicaCrashesOnRedisRestart'] = deaths;
    }
    assert.deepEqual(deaths, [], 'replicas died when Redis restarted');
  });

  it('after a Redis restart the replicas subscribe again by themselves and the kill switch still propagates', async () => {
    await redis.restart();
    const restartedAt = performance.now();
    const count = await awaitFleetSubscribed(10_000);
    report['resubscribedAfterRedisRestartMs'] = Math.round(performance.now() - restartedAt);
    // A crash from the re-subscription used to come a few ms after it reached Redis: give it the time to show.
    await delay(500);
    assert.deepEqual(deadReplicas(), []);
    assert.equal(count, 3, `subscribers on ${STATE_CHANNEL} after the Redis restart`);
    const measured = await killAndMeasure(2, 'canary', replicas);
    report['killSwitchAfterRedisRestart'] = measured;
    assertWithinTarget('kill switch after the Redis restart', measured);
  });

  it('a replica started while Redis was down gets the notifications once Redis is back', async () => {
    await redis.kill();
    await replica(3).process.stop();
    replicas[2] = await startReplica(3);
    await redis.restart();
    await waitFor('replica 3 connected to Redis', 15_000, async () => (metric(await scrape(replica(3).metricsUrl), 'hyok_redis_up') === 1 ? true : undefined));
    assert.deepEqual(deadReplicas(), [], 'replicas 1 and 2 went through the Redis outage too');
    const count = await awaitSubscribers(3, 3000);
    report['subscribersAfterReplicaStartedWithoutRedis'] = count;
    const measured = await killAndMeasure(1, 'encrypt_only_key', [replica(3)]).catch((error: unknown) => ({ error: (error as Error).message.split('\n')[0] }));
    report['killSwitchToReplicaStartedWithoutRedis'] = measured;
    assert.ok(count >= 3, `subscribers on ${STATE_CHANNEL}: ${count}`);
    assert.ok(!('error' in measured), JSON.stringify(measured));
    assertWithinTarget('kill switch to a replica started without Redis', measured);
  });
});
