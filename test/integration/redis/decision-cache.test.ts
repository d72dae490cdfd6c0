import assert from 'node:assert/strict';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { useRedisServer } from '../../helpers/redis-server.js';
import { readAuditRecords, registerSecret } from '../../helpers/test-env.js';
import { expectXksError, requestMetadata, sealedFrom, type Sealed, type XksResponse } from '../../helpers/xks-client.js';
import { delay, metric, scrape, serverLatencies, startLoad, summarize, waitFor, type Outcome, type Sample } from './load.js';

/**
 * The Redis tier of the policy decision cache against a real redis-server:
 * Redis killed, flushed, restarted and frozen under steady signed load,
 * decisions forged in Redis, and policy reloads under load.
 *
 * The in-process LRU tier is switched off (decisionCacheEntries: 0) so that
 * every request reads Redis: the worst case for a Redis failure on the
 * request path, and the only way one proxy sees Redis hits for its own
 * decisions (in a fleet, the hits are other replicas' decisions).
 *
 * Bounds, for a shared 2-core machine where the test client (TLS handshake per
 * request, SigV4 signing, response validation) runs on the proxy's event loop
 * and the other test file runs three more proxies at the same time:
 * - failed requests: none, ever;
 * - server-side latency (the audit record's latencyMs, the time the proxy
 *   spends on a request), in every phase where Redis misbehaves:
 *   p99 within the 250 ms AWS KMS budget, and no request over
 *   BUDGET_MS + STARVATION_ALLOWANCE_MS (1 s). Other suites share the two
 *   cores (load averages up to 9 were seen while these tests ran) and then
 *   even the healthy-Redis baseline leaves the budget; so when the baseline's
 *   own p99 or maximum is high, the bound becomes twice the baseline's figure:
 *   Redis trouble must not make things worse than CPU starvation already
 *   does. A request held up by Redis (an offline queue, a wait for the
 *   reconnect, a missing command timeout) would take seconds and fail either;
 * - client-side round trip: at most CLIENT_BOUND_MS (TLS and signing included).
 */

const BUDGET_MS = 250;
const STARVATION_ALLOWANCE_MS = 750;
const CLIENT_BOUND_MS = 3000;
const CONCURRENCY = 20;
/**
 * redis.commandTimeoutMs for this proxy. The default, 5 ms, is measured on the event loop the test client
 * shares with the proxy here: under the suite's parallel load most lookups then time out before their
 * answer is read and the breaker keeps the Redis tier off (1-20% of lookups hit in trial runs). 50 ms keeps
 * the tier in use, and makes a frozen Redis cost each request
 * more, not less, of its budget.
 */
const COMMAND_TIMEOUT_MS = 50;
/**
 * The proxy's own deadlines, raised (from requestBudgetMs 200, hsm.callTimeoutMs 100, hungAfterMs 500) so that
 * CPU starvation on the shared box shows up as latency, held to the bounds above, instead of as
 * DependencyTimeoutException: a failed request in this file then means Redis made it fail.
 */
const REQUEST_DEADLINE_MS = 1000;
const HSM_DEADLINES = { callTimeoutMs: 1000, hungAfterMs: 5000 };
/** Share of the decision lookups that must hit Redis in steady state (the memory tier is off). */
const MIN_HIT_RATIO = 0.25;

const ALLOWED = (n: number): string => `arn:aws:iam::123456789012:user/app-${n}`;
const DENIED = (n: number): string => `arn:aws:iam::999999999999:user/mallory-${n}`;

const POLICY_V1 = `version: 1
defaultEffect: deny
statements:
  - id: allow-apps
    effect: allow
    actions: ["xks:Encrypt", "xks:Decrypt", "xks:GetKeyMetadata"]
    resources: ["keystore/dev/key/*"]
    conditions:
      ArnLike:
        awsPrincipalArn: ["arn:aws:iam::123456789012:user/app-*"]
`;
/** v1 plus an explicit deny of app-7. */
const POLICY_V2 = `${POLICY_V1}  - id: deny-app-7
    effect: deny
    actions: ["xks:*"]
    conditions:
      StringEquals:
        awsPrincipalArn: ["${ALLOWED(7)}"]
`;

describe('Redis decision cache under failure', () => {
  const redis = useRedisServer('decision-cache');
  let fixture: ProxyFixture;
  let signingKey: string;
  let sealed: Sealed;
  const plaintext = randomBytes(24);
  const report: Record<string, unknown> = {};

  before(async () => {
    signingKey = randomBytes(32).toString('hex');
    registerSecret('key-material', signingKey);
    registerSecret('plaintext', plaintext);
    fixture = await createFixture({
      name: 'redis-decision-cache',
      policy: POLICY_V1,
      configure: (config, dev) => {
        writeFileSync(join(dev.dir, 'secrets', 'decision-signing-key'), `${signingKey}\n`, { mode: 0o600 });
        config.redis = { url: redis.url, decisionSigningKey: { file: 'secrets/decision-signing-key' }, commandTimeoutMs: COMMAND_TIMEOUT_MS };
        config.policy = { ...config.policy, decisionCacheEntries: 0 };
        // On a starved CPU SoftHSM can miss the default deadlines (DependencyTimeoutException); this file is about Redis.
        config.hsm = { ...config.hsm, ...HSM_DEADLINES };
        config.server.limits = { ...config.server.limits, requestBudgetMs: REQUEST_DEADLINE_MS };
      },
    });
    sealed = sealedFrom(
      await fixture.client.post('keys/foo/encrypt', {
        requestMetadata: { ...requestMetadata('Encrypt'), awsPrincipalArn: ALLOWED(0) },
        plaintext: plaintext.toString('base64'),
        encryptionAlgorithm: 'AES_GCM',
      }),
    );
  });
  after(async () => {
    process.stdout.write(`# redis decision cache figures: ${JSON.stringify(report)}\n`);
    await fixture?.close();
  });

  const client = (): ProxyFixture['client'] => fixture.client;

  function send(principal: string, kind: 'encrypt' | 'decrypt', kmsRequestId: string = randomUUID()): Promise<XksResponse> {
    const metadata = { ...requestMetadata(kind === 'encrypt' ? 'Encrypt' : 'Decrypt'), awsPrincipalArn: principal, kmsRequestId };
    if (kind === 'encrypt') {
      // Under 12 bytes: not worth registering thousands of times as a secret (the plaintext of the decrypts is registered).
      return client().post('keys/foo/encrypt', { requestMetadata: metadata, plaintext: randomBytes(8).toString('base64'), encryptionAlgorithm: 'AES_GCM' });
    }
    return client().post('keys/foo/decrypt', {
      requestMetadata: metadata,
      ciphertext: sealed.ciphertext,
      initializationVector: sealed.iv,
      authenticationTag: sealed.tag,
      ciphertextMetadata: sealed.metadata,
      encryptionAlgorithm: 'AES_GCM',
    });
  }

  /** One request of the steady mix: nine principals (app-0..6 allowed, mallory-0..1 denied by default), 3 encrypts to 1 decrypt. */
  async function mixed(index: number, allowedCount = 7): Promise<Outcome> {
    const slot = index % (allowedCount + 2);
    const principal = slot < allowedCount ? ALLOWED(slot) : DENIED(slot - allowedCount);
    const kind = index % 4 === 3 ? 'decrypt' : 'encrypt';
    const kmsRequestId = randomUUID();
    const response = await send(principal, kind, kmsRequestId);
    if (slot >= allowedCount) {
      const ok = response.status === 403 && response.body['errorName'] === 'AccessDeniedException';
      return { ok, kmsRequestId, detail: `${kind} as ${principal}: expected 403 AccessDeniedException, got ${response.status} ${response.text}` };
    }
    const ok = response.status === 200 && (kind === 'encrypt' || response.body['plaintext'] === plaintext.toString('base64'));
    return { ok, kmsRequestId, detail: `${kind} as ${principal}: expected 200, got ${response.status} ${response.text}` };
  }

  async function metrics(): Promise<{ redisHit: number; redisMiss: number; redisUp: number }> {
    const text = await scrape(fixture.proxy?.metricsUrl ?? '');
    return {
      redisHit: metric(text, 'hyok_policy_decision_cache_total', { tier: 'redis', result: 'hit' }),
      redisMiss: metric(text, 'hyok_policy_decision_cache_total', { tier: 'redis', result: 'miss' }),
      redisUp: metric(text, 'hyok_redis_up'),
    };
  }

  /** Asserts no failure and the latency bounds; returns the figures. */
  /** The healthy-Redis baseline's server-side figures (see the bounds above). */
  let reference: { p99Ms: number; maxMs: number } | undefined;

  function checkLoad(phase: string, samples: readonly Sample[]): { client: ReturnType<typeof summarize>; server: ReturnType<typeof summarize> } {
    const clientSide = summarize(
      samples.map((sample) => sample.latencyMs),
      samples,
    );
    const { latencies, missing } = serverLatencies(
      fixture.auditFile,
      samples.flatMap((sample) => (sample.kmsRequestId === undefined ? [] : [sample.kmsRequestId])),
    );
    const serverSide = summarize(latencies);
    report[phase] = { requests: clientSide.requests, failures: clientSide.failures, client: clientSide, server: serverSide };
    assert.equal(clientSide.failures, 0, `${phase}: ${clientSide.failures} of ${clientSide.requests} requests failed, e.g.\n${clientSide.firstFailures.join('\n')}`);
    assert.ok(clientSide.requests >= CONCURRENCY * 2, `${phase}: only ${clientSide.requests} requests were made`);
    assert.equal(missing, 0, `${phase}: ${missing} requests have no audit record`);
    if (reference === undefined) {
      // The baseline is the reference; it is only held to the absolute ceiling.
      reference = { p99Ms: serverSide.p99Ms, maxMs: serverSide.maxMs };
    } else {
      const p99Bound = Math.max(BUDGET_MS, 2 * reference.p99Ms);
      assert.ok(serverSide.p99Ms <= p99Bound, `${phase}: p99 ${serverSide.p99Ms} ms in the proxy (bound ${p99Bound} ms; baseline ${JSON.stringify(reference)}); ${JSON.stringify(serverSide)}`);
    }
    const maxBound = Math.max(BUDGET_MS + STARVATION_ALLOWANCE_MS, 2 * reference.maxMs);
    assert.ok(serverSide.maxMs <= maxBound, `${phase}: slowest request spent ${serverSide.maxMs} ms in the proxy (bound ${maxBound} ms; baseline ${JSON.stringify(reference)}); ${JSON.stringify(serverSide)}`);
    assert.ok(clientSide.maxMs <= CLIENT_BOUND_MS, `${phase}: slowest round trip took ${clientSide.maxMs} ms (bound ${CLIENT_BOUND_MS} ms); ${JSON.stringify(clientSide)}`);
    return { client: clientSide, server: serverSide };
  }

  /** Sends allowed requests until the Redis tier answers hits (connection ready, breaker closed); returns how long that took. */
  async function redisTierServing(what: string, timeoutMs = 15_000): Promise<number> {
    const start = performance.now();
    const first = await metrics();
    await waitFor(what, timeoutMs, async () => {
      const response = await send(ALLOWED(1), 'encrypt');
      assert.equal(response.status, 200, response.text);
      const now = await metrics();
      return now.redisHit > first.redisHit && now.redisUp === 1 ? true : undefined;
    });
    return performance.now() - start;
  }

  it('baseline: steady signed load with Redis healthy; the Redis tier serves hits', async () => {
    // The proxy serves without waiting for Redis (it is never required); it connects in the background.
    report['redisServingAfterStartMs'] = Math.round(await redisTierServing('the Redis tier after start-up'));
    const before = await metrics();
    assert.equal(before.redisUp, 1, 'hyok_redis_up is 1 with Redis running');
    const samples = await startLoad({ concurrency: CONCURRENCY, durationMs: 2500, send: (index) => mixed(index) }).done;
    checkLoad('baseline', samples);
    const afterLoad = await metrics();
    const hits = afterLoad.redisHit - before.redisHit;
    report['baselineRedisHitRatio'] = Math.round((hits / samples.length) * 100) / 100;
    assert.ok(hits >= samples.length * MIN_HIT_RATIO, `Redis hits ${hits} for ${samples.length} requests`);
    const keys = await redis.keys('hyok:decision:*');
    assert.ok(keys.length >= 9, `decisions in Redis: ${keys.length}`);
  });

  it('Redis killed (SIGKILL) mid-load: no request fails, requests stay within the budget', async () => {
    const load = startLoad({ concurrency: CONCURRENCY, durationMs: 4000, send: (index) => mixed(index) });
    await delay(1200);
    await redis.kill();
    const killedAt = load.elapsedMs();
    const samples = await load.done;
    report['killedAtMs'] = Math.round(killedAt);
    assert.ok(samples.filter((sample) => sample.startedAtMs > killedAt).length >= CONCURRENCY * 2, 'the load went on well after the kill');
    checkLoad('redis-killed', samples);
    assert.equal((await metrics()).redisUp, 0, 'hyok_redis_up is 0 while Redis is down');
  });

  it('Redis restarted: the proxy reconnects by itself and the Redis tier hits again', async () => {
    await redis.restart();
    const start = await metrics();
    // Redis came back empty: a decision is written on the first miss and read back by the next request.
    report['hitsAgainAfterRestartMs'] = Math.round(await redisTierServing('Redis hits after the restart'));
    const samples = await startLoad({ concurrency: CONCURRENCY, durationMs: 2000, send: (index) => mixed(index) }).done;
    checkLoad('after-restart', samples);
    const end = await metrics();
    const hits = end.redisHit - start.redisHit;
    report['afterRestartRedisHitRatio'] = Math.round((hits / samples.length) * 100) / 100;
    assert.ok(hits >= samples.length * MIN_HIT_RATIO, `Redis hits after the restart: ${hits} for ${samples.length} requests`);
  });

  it('Redis flushed (FLUSHALL) mid-load: every answer stays correct; decisions are cached again', async () => {
    const load = startLoad({ concurrency: CONCURRENCY, durationMs: 3000, send: (index) => mixed(index) });
    await delay(1000);
    await redis.flushAll();
    const flushedAt = load.elapsedMs();
    const samples = await load.done;
    checkLoad('redis-flushed', samples);
    assert.ok(samples.filter((sample) => sample.startedAtMs > flushedAt).length >= CONCURRENCY * 2, 'the load went on well after the flush');
    assert.ok((await redis.keys('hyok:decision:*')).length >= 9, 'decisions were written again after the flush');
  });

  it('Redis frozen (SIGSTOP) mid-load: no request fails, requests stay within the budget; served from Redis again after SIGCONT', async () => {
    const load = startLoad({ concurrency: CONCURRENCY, durationMs: 4500, send: (index) => mixed(index) });
    await delay(1000);
    redis.freeze();
    const frozenAt = load.elapsedMs();
    try {
      await delay(2500);
    } finally {
      redis.thaw();
    }
    const samples = await load.done;
    report['frozenMs'] = [Math.round(frozenAt), Math.round(frozenAt + 2500)];
    assert.ok(samples.filter((sample) => sample.startedAtMs > frozenAt && sample.startedAtMs < frozenAt + 2500).length >= CONCURRENCY * 2, 'the load went on while Redis was frozen');
    checkLoad('redis-frozen', samples);
    report['hitsAgainAfterSigcontMs'] = Math.round(await redisTierServing('Redis hits after SIGCONT'));
  });

  it('Redis busy (DEBUG SLEEP 2) mid-load: no request fails, requests stay within the budget', async () => {
    const load = startLoad({ concurrency: CONCURRENCY, durationMs: 4000, send: (index) => mixed(index) });
    await delay(1000);
    await redis.sleep(2);
    const samples = await load.done;
    checkLoad('redis-debug-sleep', samples);
  });

  describe('decisions forged in Redis are not trusted', () => {
    const mac = (key: string, decisionKey: string, json: string): string => createHmac('sha256', Buffer.from(key, 'utf8')).update(decisionKey).update('\0').update(json).digest('hex');
    const ALLOW_JSON = JSON.stringify({ allowed: true, statementId: 'allow-apps', reason: 'allowed by statement allow-apps' });
    const PREFIX = 'hyok:decision:';

    /** The decisions in Redis, read as the proxy stores them: "<hex MAC>.<json>". */
    async function decisionsInRedis(): Promise<Array<{ redisKey: string; value: string; allowed: boolean | undefined }>> {
      const keys = await redis.keys(`${PREFIX}*`);
      return Promise.all(
        keys.map(async (redisKey) => {
          const value = (await redis.get(redisKey)) ?? '';
          let allowed: boolean | undefined;
          try {
            allowed = (JSON.parse(value.slice(65)) as { allowed?: boolean }).allowed;
          } catch {
            allowed = undefined;
          }
          return { redisKey, value, allowed };
        }),
      );
    }

    /** Redis emptied, then the key under which the proxy stores its decision for `principal` (denied); the Redis key and the proxy's decision key. */
    async function deniedDecisionKey(principal: string): Promise<{ redisKey: string; decisionKey: string }> {
      // The breaker may still be open from the tests before: wait until the proxy uses Redis again.
      await redisTierServing('the Redis tier before forging');
      await redis.flushAll();
      const redisKey = await waitFor('the denied decision in Redis', 5000, async () => {
        expectXksError(await send(principal, 'encrypt'), 403, 'AccessDeniedException');
        const denials = (await decisionsInRedis()).filter((entry) => entry.allowed === false);
        return denials.length === 1 ? denials[0]?.redisKey : undefined;
      });
      const stored = (await redis.get(redisKey)) ?? '';
      assert.match(stored, /^[0-9a-f]{64}\./, 'stored as <hex MAC>.<json>');
      return { redisKey, decisionKey: redisKey.slice(PREFIX.length) };
    }

    it('an "allow" with a wrong MAC, a MAC under another key, a MAC moved from another decision, or a malformed value: the request stays AccessDeniedException', async () => {
      const principal = DENIED(0);
      const { redisKey, decisionKey } = await deniedDecisionKey(principal);
      // A valid "allow" of another request (app-0), to move onto mallory's key.
      assert.equal((await send(ALLOWED(0), 'encrypt')).status, 200);
      const movedAllow = await waitFor('an allow decision in Redis', 5000, async () => (await decisionsInRedis()).find((entry) => entry.allowed === true)?.value);

      const otherSigningKey = randomBytes(32).toString('hex');
      const forgeries: Record<string, string> = {
        'zero MAC': `${'0'.repeat(64)}.${ALLOW_JSON}`,
        'MAC under another key': `${mac(otherSigningKey, decisionKey, ALLOW_JSON)}.${ALLOW_JSON}`,
        'valid allow of another request moved here': movedAllow,
        'MAC over the deny, JSON changed to allow': `${mac(signingKey, decisionKey, ALLOW_JSON.replace('true', 'false'))}.${ALLOW_JSON}`,
        'plain JSON without a MAC': ALLOW_JSON,
        'short MAC': `abcd.${ALLOW_JSON}`,
        'uppercase hex MAC of the real allow': `${mac(signingKey, decisionKey, ALLOW_JSON).toUpperCase()}x.${ALLOW_JSON}`,
      };
      const before = await metrics();
      for (const [name, forged] of Object.entries(forgeries)) {
        await redis.set(redisKey, forged, 60_000);
        // Sent until the proxy has read the entry (it then writes its own decision over it); denied every time.
        await waitFor(`the proxy to read the forgery "${name}"`, 5000, async () => {
          const response = await send(principal, 'encrypt');
          assert.equal(response.status, 403, `forgery "${name}" let the request through: ${response.text}`);
          expectXksError(response, 403, 'AccessDeniedException');
          await delay(20);
          const stored = await redis.get(redisKey);
          if (stored === forged) return undefined;
          assert.equal((JSON.parse((stored ?? '').slice(65)) as { allowed: boolean }).allowed, false, 'the proxy rewrote it as a denial');
          return true;
        });
      }
      const afterForgeries = await metrics();
      assert.equal(afterForgeries.redisHit - before.redisHit, 0, 'no forged entry counted as a hit');
      assert.ok(afterForgeries.redisMiss - before.redisMiss >= Object.keys(forgeries).length, 'each forgery was read and refused (a miss)');
      const audit = readAuditRecords(fixture.auditFile).filter((record) => record['awsPrincipalArn'] === principal && record['api'] === 'Encrypt');
      assert.ok(audit.length >= Object.keys(forgeries).length + 1);
      assert.ok(audit.every((record) => record['errorName'] === 'AccessDeniedException'));
    });

    it('control: an entry MACed with the real signing key is used (the forgeries above were read, and refused)', async () => {
      // Shows the test writes where the proxy reads: only a holder of decisionSigningKey can plant a decision.
      const principal = DENIED(1);
      const { redisKey, decisionKey } = await deniedDecisionKey(principal);
      const planted = `${mac(signingKey, decisionKey, ALLOW_JSON)}.${ALLOW_JSON}`;
      await waitFor('the correctly signed entry to be used', 5000, async () => {
        await redis.set(redisKey, planted, 60_000);
        const response = await send(principal, 'encrypt');
        if (response.status === 200) return true;
        // Only when the proxy skipped Redis for this request (breaker): it is then denied by the policy.
        expectXksError(response, 403, 'AccessDeniedException');
        return undefined;
      });
      await redis.flushAll();
      expectXksError(await send(principal, 'encrypt'), 403, 'AccessDeniedException');
    });
  });

  it('policy reload under load: no request fails and the new policy is in force right after the reload', async () => {
    const policyFile = join(fixture.dev.dir, 'policy.yaml');
    const proxy = fixture.proxy;
    assert.ok(proxy !== undefined);
    // app-7 is allowed by v1; its allow is cached in Redis under v1's version.
    assert.equal((await send(ALLOWED(7), 'encrypt')).status, 200);
    assert.equal((await send(ALLOWED(7), 'encrypt')).status, 200);
    const cachedBefore = (await redis.keys('hyok:decision:*')).length;

    // The load uses app-0..6 and the mallorys only: the same answers under v1 and v2.
    const load = startLoad({ concurrency: CONCURRENCY, durationMs: 4000, send: (index) => mixed(index) });
    await delay(1000);
    writeFileSync(policyFile, POLICY_V2);
    const toV2 = await proxy.reload();
    assert.deepEqual(toV2, { ok: true, issues: [] });
    const deniedId = randomUUID();
    expectXksError(await send(ALLOWED(7), 'encrypt', deniedId), 403, 'AccessDeniedException');
    const record = readAuditRecords(fixture.auditFile).find((entry) => entry['kmsRequestId'] === deniedId);
    assert.equal(record?.['policyStatement'], 'deny-app-7', 'denied by the statement v2 added, not by a cached v1 decision');
    await delay(1000);
    writeFileSync(policyFile, POLICY_V1);
    assert.deepEqual(await proxy.reload(), { ok: true, issues: [] });
    assert.equal((await send(ALLOWED(7), 'encrypt')).status, 200, 'back on v1, app-7 is allowed again at once');
    await delay(500);
    writeFileSync(policyFile, POLICY_V2);
    assert.deepEqual(await proxy.reload(), { ok: true, issues: [] });
    expectXksError(await send(ALLOWED(7), 'encrypt'), 403, 'AccessDeniedException');
    const samples = await load.done;
    checkLoad('policy-reload', samples);
    assert.ok((await redis.keys('hyok:decision:*')).length > cachedBefore, 'decisions under v2 are cached next to the v1 ones');
  });
});
