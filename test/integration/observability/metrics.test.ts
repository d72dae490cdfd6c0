import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { useAdminFixture } from '../../helpers/lifecycle.js';
import { expectXksError, sealedFrom } from '../../helpers/xks-client.js';

const POLICY = `version: 1
defaultEffect: deny
statements:
  - id: allow-test-account
    effect: allow
    actions: ["xks:*"]
    conditions:
      ArnLike:
        awsPrincipalArn: ["arn:aws:iam::123456789012:*"]
`;

/** Parses the Prometheus text format into "name{labels}" -> value. */
function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

describe('Prometheus metrics move with traffic, cluster changes and key states', () => {
  const suite = useAdminFixture({ name: 'metrics', policy: POLICY });

  const scrape = async (): Promise<Map<string, number>> => {
    const url = suite.fixture.proxy?.metricsUrl;
    assert.ok(url !== undefined, 'metrics are enabled in the fixture');
    const response = await fetch(url);
    assert.equal(response.status, 200);
    return parseMetrics(await response.text());
  };
  const value = (metrics: Map<string, number>, name: string): number => metrics.get(name) ?? 0;

  it('counts requests by API and outcome, with a latency histogram', async () => {
    const before = await scrape();
    for (let i = 0; i < 5; i++) assert.equal((await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(16) })).status, 200);
    const after = await scrape();
    const ok = 'hyok_requests_total{contract="aws-xks",api="Encrypt",key_store="dev",outcome="success"}';
    assert.equal(value(after, ok) - value(before, ok), 5, [...after.keys()].filter((name) => name.startsWith('hyok_requests_total')).join('\n'));
    const count = 'hyok_request_duration_seconds_count{contract="aws-xks",api="Encrypt",outcome="success"}';
    assert.equal(value(after, count) - value(before, count), 5);
  });

  it('exports every metric the dashboard and runbooks rely on', async () => {
    const url = suite.fixture.proxy?.metricsUrl;
    assert.ok(url !== undefined);
    const text = await (await fetch(url)).text();
    const declared = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((match) => match[1]));
    for (const name of [
      'hyok_requests_total',
      'hyok_request_duration_seconds',
      'hyok_policy_decision_cache_total',
      'hyok_hsm_member_health',
      'hyok_hsm_member_in_flight',
      'hyok_hsm_member_breaker_state',
      'hyok_hsm_member_fenced',
      'hyok_hsm_member_agents',
      'hyok_hsm_operation_duration_seconds',
      'hyok_hsm_operation_errors_total',
      'hyok_keys',
      'nodejs_eventloop_lag_p99_seconds',
      'hyok_event_loop_delay_seconds',
      'process_resident_memory_bytes',
    ]) {
      assert.ok(declared.has(name), `${name} is exported`);
    }
    assert.ok(!/key_id=|principal=|keyId=/.test(text), 'no key id or principal label');
  });

  it('times HSM operations per member and counts their errors by kind, the caller\'s apart from the member\'s', async () => {
    const sum = (metrics: Map<string, number>, prefix: string, contains: string[]): number =>
      [...metrics].filter(([name]) => name.startsWith(prefix) && contains.every((part) => name.includes(part))).reduce((total, [, count]) => total + count, 0);
    const before = await scrape();
    const encrypted = [];
    for (let i = 0; i < 6; i++) encrypted.push(await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(32) }));
    const sealed = sealedFrom(encrypted[0]!);
    const tampered = Buffer.from(sealed.tag, 'base64');
    tampered[0]! ^= 1;
    expectXksError(await suite.fixture.client.decrypt('foo', { ...sealed, tag: tampered.toString('base64') }), 400, 'InvalidCiphertextException');
    const after = await scrape();
    const encrypts = (metrics: Map<string, number>): number => sum(metrics, 'hyok_hsm_operation_duration_seconds_count', ['operation="encrypt"', 'outcome="ok"']);
    assert.ok(encrypts(after) - encrypts(before) >= 6, 'each encrypt is timed on the member that served it');
    const dataErrors = (metrics: Map<string, number>): number => sum(metrics, 'hyok_hsm_operation_errors_total', ['operation="decrypt"', 'kind="data"']);
    assert.equal(dataErrors(after) - dataErrors(before), 1, 'a bad tag is counted once, as the caller\'s data error');
    for (const member of ['softhsm-1', 'softhsm-2', 'softhsm-3']) {
      const configured = after.get(`hyok_hsm_member_agents{member="${member}",state="configured"}`);
      assert.ok(configured !== undefined && configured >= 1, member);
      assert.equal(after.get(`hyok_hsm_member_agents{member="${member}",state="serving"}`), configured, `${member} serves with every agent`);
    }
    const delay = after.get('hyok_event_loop_delay_seconds{quantile="0.99"}');
    const lag = after.get('nodejs_eventloop_lag_p99_seconds');
    assert.ok(delay !== undefined && lag !== undefined && delay >= 0, 'event-loop delay is measured');
    assert.ok(delay < lag, `the delay (${delay}) leaves out the 10 ms sampling interval prom-client's lag (${lag}) includes`);
  });

  it('counts decision-cache lookups per tier: repeated requests hit the in-process tier', async () => {
    const hit = 'hyok_policy_decision_cache_total{tier="memory",result="hit"}';
    const before = value(await scrape(), hit);
    for (let i = 0; i < 3; i++) await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(16) });
    assert.ok(value(await scrape(), hit) - before >= 3);
  });

  it('shows each member healthy with a closed breaker, and a fenced member as fenced and unavailable', async () => {
    const before = await scrape();
    for (const member of ['softhsm-1', 'softhsm-2', 'softhsm-3']) {
      assert.equal(before.get(`hyok_hsm_member_health{member="${member}"}`), 2, member);
      assert.equal(before.get(`hyok_hsm_member_breaker_state{member="${member}"}`), 0, member);
      assert.equal(before.get(`hyok_hsm_member_fenced{member="${member}"}`), 0, member);
    }
    const fenced = await suite.call(suite.admins.operator, 'POST', '/admin/v1/members/softhsm-2/fence', { reason: 'metrics test' });
    assert.equal(fenced.status, 200);
    const after = await scrape();
    assert.equal(after.get('hyok_hsm_member_fenced{member="softhsm-2"}'), 1);
    assert.equal(after.get('hyok_hsm_member_health{member="softhsm-2"}'), 0);
    assert.equal((await suite.call(suite.admins.operator, 'POST', '/admin/v1/members/softhsm-2/restore')).status, 200);
    assert.equal((await scrape()).get('hyok_hsm_member_fenced{member="softhsm-2"}'), 0);
  });

  it('counts keys by lifecycle state', async () => {
    const before = await scrape();
    const active = value(before, 'hyok_keys{state="active"}');
    assert.ok(active >= 2, 'the dev keys are active');
    const engaged = await suite.call(suite.admins.operator, 'POST', '/admin/v1/killswitch', { keyStore: 'dev', keyId: 'canary' });
    assert.equal(engaged.status, 200);
    const after = await scrape();
    assert.equal(value(after, 'hyok_keys{state="active"}'), active - 1);
    assert.equal(value(after, 'hyok_keys{state="suspended"}') - value(before, 'hyok_keys{state="suspended"}'), 1);
  });
});
