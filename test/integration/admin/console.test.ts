import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { adminCall, adminRaw, createJwtIssuer, startJwtAdminFixture, type JwtIssuer } from '../../helpers/admin.js';
import type { ProxyFixture } from '../../helpers/proxy-fixture.js';
import { readAuditRecords } from '../../helpers/test-env.js';

const CSRF = { 'x-hyok-console': '1' };

function cookieOf(setCookie: string | string[] | undefined): string {
  const header = Array.isArray(setCookie) ? setCookie[0] : setCookie;
  assert.ok(header !== undefined, 'a Set-Cookie header');
  return header.split(';')[0] as string;
}

describe('SRE console: pages, session, overview, audit, drills and metrics on the admin listener', () => {
  let fixture: ProxyFixture;
  let issuer: JwtIssuer;
  let url: string;
  let operatorToken: string;
  let auditorToken: string;

  before(async () => {
    issuer = await createJwtIssuer();
    fixture = await startJwtAdminFixture('admin-console', issuer);
    url = fixture.proxy?.adminUrl ?? '';
    operatorToken = await issuer.sign({ roles: ['operator'] }, { subject: 'sre-carol' });
    auditorToken = await issuer.sign({ roles: ['auditor'] }, { subject: 'auditor-dan' });
  });
  after(async () => {
    await fixture.close();
  });

  const login = async (token: string): Promise<string> => {
    const response = await adminRaw(url, fixture.ca, 'POST', '/console/session', CSRF, JSON.stringify({ token }));
    assert.equal(response.status, 200, response.text);
    return cookieOf(response.headers['set-cookie']);
  };
  const adminRecords = (): Array<Record<string, unknown>> => readAuditRecords(fixture.auditFile).filter((record) => record['event'] === 'admin.action');

  it('sends an unauthenticated browser to the login page, which holds no data and forbids inline code', async () => {
    const page = await adminRaw(url, fixture.ca, 'GET', '/console');
    assert.equal(page.status, 303);
    assert.equal(page.headers['location'], '/console/login');
    const loginPage = await adminRaw(url, fixture.ca, 'GET', '/console/login');
    assert.equal(loginPage.status, 200);
    assert.match(String(loginPage.headers['content-type']), /^text\/html/);
    assert.match(loginPage.text, /id="login-form"/);
    const csp = String(loginPage.headers['content-security-policy']);
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.equal(loginPage.headers['cache-control'], 'no-store');
    const script = await adminRaw(url, fixture.ca, 'GET', '/console/assets/console.js');
    assert.equal(script.status, 200);
    assert.match(String(script.headers['content-type']), /^text\/javascript/);
    // Only the listed files: no path walking, no other names.
    for (const path of ['/console/assets/..%2f..%2fpackage.json', '/console/assets/routes.js', '/console/assets/console.html']) {
      assert.equal((await adminRaw(url, fixture.ca, 'GET', path)).status, 401, path);
    }
  });

  it('logs in with a valid token into a Secure, HttpOnly, SameSite=Strict __Host- cookie that ends with the token', async () => {
    const response = await adminRaw(url, fixture.ca, 'POST', '/console/session', CSRF, JSON.stringify({ token: operatorToken }));
    assert.equal(response.status, 200, response.text);
    const header = String(response.headers['set-cookie']);
    assert.match(header, /^__Host-hyok-console=[A-Za-z0-9_.-]+; Path=\/; Secure; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
    const maxAge = Number(/Max-Age=(\d+)/.exec(header)?.[1]);
    assert.ok(maxAge > 500 && maxAge <= 600, `Max-Age ${maxAge} follows the token's 10-minute lifetime`);
    assert.deepEqual(JSON.parse(response.text).roles, ['operator']);
    const page = await adminRaw(url, fixture.ca, 'GET', '/console', { cookie: cookieOf(response.headers['set-cookie']) });
    assert.equal(page.status, 200);
    assert.match(page.text, /id="members"/);
    assert.ok(adminRecords().some((record) => record['action'] === 'console.login' && record['actor'] === 'sre-carol' && record['outcome'] === 'success'));
  });

  it('refuses bad logins with the right status, audited, and sets no cookie', async () => {
    const cases: Array<[string, Record<string, string>, string, number]> = [
      ['no console header', {}, JSON.stringify({ token: operatorToken }), 403],
      ['no token', CSRF, JSON.stringify({}), 400],
      ['a token that is not a JWT', CSRF, JSON.stringify({ token: 'hello' }), 401],
      ['an expired token', CSRF, JSON.stringify({ token: await issuer.sign({ roles: ['operator'] }, { expiresIn: Math.floor(Date.now() / 1000) - 60 }) }), 401],
      ['a token from an unknown key', CSRF, JSON.stringify({ token: await (await createJwtIssuer('other')).sign({ roles: ['operator'] }) }), 401],
      ['a metrics-only token', CSRF, JSON.stringify({ token: await issuer.sign({ roles: ['metrics'] }, { subject: 'prometheus' }) }), 403],
      ['an oversized body', CSRF, JSON.stringify({ token: 'a'.repeat(20_000) }), 413],
      ['a body that is not JSON', CSRF, '{token', 400],
    ];
    for (const [name, headers, body, status] of cases) {
      const response = await adminRaw(url, fixture.ca, 'POST', '/console/session', headers, body);
      assert.equal(response.status, status, `${name}: ${response.text}`);
      assert.equal(response.headers['set-cookie'], undefined, name);
      assert.doesNotThrow(() => JSON.parse(response.text), name);
    }
    assert.ok(adminRecords().filter((record) => record['action'] === 'console.login' && record['outcome'] === 'denied').length >= 5);
  });

  it('a console cookie reads like a token, but changes nothing without the console header or from another origin', async () => {
    const cookie = await login(operatorToken);
    const overview = await adminRaw(url, fixture.ca, 'GET', '/admin/v1/overview', { cookie });
    assert.equal(overview.status, 200);
    const forged = await adminRaw(url, fixture.ca, 'POST', '/admin/v1/members/softhsm-1/fence', { cookie }, '{}');
    assert.equal(forged.status, 403);
    const crossSite = await adminRaw(url, fixture.ca, 'POST', '/admin/v1/members/softhsm-1/fence', { cookie, ...CSRF, origin: 'https://evil.example' }, '{}');
    assert.equal(crossSite.status, 403);
    assert.equal((await adminCall(url, fixture.ca, 'GET', '/admin/v1/members/softhsm-1', { token: auditorToken })).body['mode'], 'serving');
    const fenced = await adminRaw(url, fixture.ca, 'POST', '/admin/v1/members/softhsm-1/fence', { cookie, ...CSRF, origin: `https://127.0.0.1:${new URL(url).port}` }, '{"reason":"console test"}');
    assert.equal(fenced.status, 200, fenced.text);
    assert.equal(JSON.parse(fenced.text).mode, 'fenced');
    const restored = await adminRaw(url, fixture.ca, 'POST', '/admin/v1/members/softhsm-1/restore', { cookie, ...CSRF }, '{}');
    assert.equal(restored.status, 200, restored.text);
    const logout = await adminRaw(url, fixture.ca, 'DELETE', '/console/session', { cookie, ...CSRF });
    assert.equal(logout.status, 204);
    assert.match(String(logout.headers['set-cookie']), /^__Host-hyok-console=; .*Max-Age=0$/);
  });

  it('whoami and the overview show members, live API figures and totals that move with traffic', async () => {
    const me = await adminCall(url, fixture.ca, 'GET', '/admin/v1/whoami', { token: auditorToken });
    assert.deepEqual(me.body, { actor: 'auditor-dan', via: 'jwt', roles: ['auditor'], expiresAt: me.body['expiresAt'] });
    const before = (await adminCall(url, fixture.ca, 'GET', '/admin/v1/overview', { token: auditorToken })).body;
    await Promise.all(Array.from({ length: 20 }, () => fixture.client.encrypt('foo', { plaintext: randomBytes(16) })));
    await sleep(1100); // rates count whole seconds only
    const after = (await adminCall(url, fixture.ca, 'GET', '/admin/v1/overview', { token: auditorToken })).body;
    assert.deepEqual((after['members'] as Array<{ id: string }>).map((member) => member.id), ['softhsm-1', 'softhsm-2', 'softhsm-3']);
    const totals = (value: Record<string, unknown>): number => (value['totals'] as { requests: number }).requests;
    assert.equal(totals(after) - totals(before), 20);
    // Per-member agent calls (probes included) move too, and only for members that exist.
    const memberCalls = (value: Record<string, unknown>): Record<string, { operations: number; errors: number }> =>
      value['memberOperations'] as Record<string, { operations: number; errors: number }>;
    assert.deepEqual(Object.keys(memberCalls(after)).sort(), ['softhsm-1', 'softhsm-2', 'softhsm-3']);
    const calls = (value: Record<string, unknown>): number => Object.values(memberCalls(value)).reduce((sum, entry) => sum + entry.operations, 0);
    assert.ok(calls(after) - calls(before) >= 20, `${calls(before)} -> ${calls(after)}`);
    const encrypt = (after['apis'] as Array<Record<string, unknown>>).find((entry) => entry['api'] === 'Encrypt');
    assert.ok(encrypt !== undefined && (encrypt['requests'] as number) >= 20 && encrypt['p99Ms'] !== null, JSON.stringify(after['apis']));
  });

  it('recent audit events: newest first, bounded, for operators and auditors only, never a token', async () => {
    const response = await adminCall(url, fixture.ca, 'GET', '/admin/v1/audit/recent?limit=5', { token: auditorToken });
    assert.equal(response.status, 200);
    const records = response.body['records'] as Array<Record<string, unknown>>;
    assert.equal(records.length, 5);
    const seqs = records.map((record) => record['seq'] as number);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => b - a));
    const everything = await adminCall(url, fixture.ca, 'GET', '/admin/v1/audit/recent?limit=200', { token: auditorToken });
    const text = JSON.stringify(everything.body);
    for (const token of [operatorToken, auditorToken]) assert.ok(!text.includes(token.split('.')[2] as string));
    for (const limit of ['0', '201', 'abc', '1e2']) {
      assert.equal((await adminCall(url, fixture.ca, 'GET', `/admin/v1/audit/recent?limit=${limit}`, { token: auditorToken })).status, 400, limit);
    }
    const keyAdmin = await issuer.sign({ roles: ['key-admin'] });
    assert.equal((await adminCall(url, fixture.ca, 'GET', '/admin/v1/audit/recent', { token: keyAdmin })).status, 403);
  });

  it('serves Prometheus metrics behind admin authentication, to the metrics, operator and auditor roles', async () => {
    assert.equal((await adminRaw(url, fixture.ca, 'GET', '/metrics')).status, 401);
    const scraper = await issuer.sign({ roles: ['metrics'] }, { subject: 'prometheus' });
    const scrape = await adminRaw(url, fixture.ca, 'GET', '/metrics', { authorization: `Bearer ${scraper}` });
    assert.equal(scrape.status, 200);
    assert.match(String(scrape.headers['content-type']), /^text\/plain/);
    assert.match(scrape.text, /^hyok_requests_total\{contract="aws-xks",api="Encrypt"/m);
    assert.match(scrape.text, /^hyok_hsm_member_health\{/m);
    const keyAdmin = await issuer.sign({ roles: ['key-admin'] });
    assert.equal((await adminRaw(url, fixture.ca, 'GET', '/metrics', { authorization: `Bearer ${keyAdmin}` })).status, 403);
    // A metrics identity can scrape and nothing else.
    assert.equal((await adminCall(url, fixture.ca, 'GET', '/admin/v1/members', { token: scraper })).status, 403);
  });

  it('a fence-one drill moves traffic off a member with no failed request, then restores it; audited start and end', async () => {
    const start = await adminCall(url, fixture.ca, 'POST', '/admin/v1/drills', {
      token: operatorToken,
      body: { scenario: 'fence-one', member: 'softhsm-2', durationSeconds: 5, reason: 'weekly drill' },
    });
    assert.equal(start.status, 201, JSON.stringify(start.body));
    const drill = start.body['drill'] as Record<string, unknown>;
    assert.equal(drill['status'], 'running');
    assert.equal(drill['member'], 'softhsm-2');
    const member = await adminCall(url, fixture.ca, 'GET', '/admin/v1/members/softhsm-2', { token: auditorToken });
    assert.equal(member.body['mode'], 'fenced');
    assert.match(String((member.body['fence'] as Record<string, unknown>)['reason']), /^drill .* \(fence-one: weekly drill\)$/);
    const again = await adminCall(url, fixture.ca, 'POST', '/admin/v1/drills', { token: operatorToken, body: { scenario: 'drain-one', durationSeconds: 5 } });
    assert.equal(again.status, 409);
    const scrape = await adminRaw(url, fixture.ca, 'GET', '/metrics', { authorization: `Bearer ${operatorToken}` });
    assert.match(scrape.text, /^hyok_drill_active\{scenario="fence-one",member="softhsm-2"\} 1$/m);

    const auditedBefore = readAuditRecords(fixture.auditFile).length;
    const results = await Promise.all(Array.from({ length: 40 }, () => fixture.client.encrypt('foo', { plaintext: randomBytes(16) })));
    assert.ok(results.every((result) => result.status === 200));
    const served = readAuditRecords(fixture.auditFile).slice(auditedBefore).map((record) => record['hsmMember']).filter((id) => id !== undefined);
    assert.equal(served.length, 40);
    assert.ok(!served.includes('softhsm-2'), 'no request went to the fenced member');

    // Ends by itself after 5 s.
    let current: Record<string, unknown> = {};
    for (let i = 0; i < 40; i++) {
      current = (await adminCall(url, fixture.ca, 'GET', '/admin/v1/drills/current', { token: auditorToken })).body['drill'] as Record<string, unknown>;
      if (current['status'] !== 'running') break;
      await sleep(250);
    }
    assert.equal(current['status'], 'completed');
    assert.ok((current['requests'] as number) >= 40);
    assert.equal(current['errors'], 0);
    assert.equal((await adminCall(url, fixture.ca, 'GET', '/admin/v1/members/softhsm-2', { token: auditorToken })).body['mode'], 'serving');
    const records = adminRecords();
    assert.ok(records.some((record) => record['action'] === 'drill.start' && record['actor'] === 'sre-carol' && record['target'] === 'softhsm-2' && record['outcome'] === 'success'));
    const end = records.find((record) => record['action'] === 'drill.end' && record['target'] === 'softhsm-2');
    assert.equal(end?.['actor'], 'proxy');
    assert.match(String(end?.['reason']), /^fence-one of softhsm-2 completed: \d+ requests, 0 failed; started by jwt:sre-carol$/);
  });

  it('a drill can be stopped early; bad drill requests are refused; an auditor cannot start one', async () => {
    const start = await adminCall(url, fixture.ca, 'POST', '/admin/v1/drills', { token: operatorToken, body: { scenario: 'drain-one', durationSeconds: 600 } });
    assert.equal(start.status, 201);
    const member = (start.body['drill'] as Record<string, unknown>)['member'] as string;
    assert.equal((await adminCall(url, fixture.ca, 'GET', `/admin/v1/members/${member}`, { token: auditorToken })).body['mode'], 'drained');
    const stopped = await adminCall(url, fixture.ca, 'POST', '/admin/v1/drills/current/stop', { token: operatorToken, body: {} });
    assert.equal(stopped.status, 200);
    assert.equal((stopped.body['drill'] as Record<string, unknown>)['status'], 'stopped');
    assert.equal((await adminCall(url, fixture.ca, 'GET', `/admin/v1/members/${member}`, { token: auditorToken })).body['mode'], 'serving');
    assert.equal((await adminCall(url, fixture.ca, 'POST', '/admin/v1/drills/current/stop', { token: operatorToken, body: {} })).status, 409);

    const bad: Array<[unknown, number]> = [
      [{ scenario: 'kill-all', durationSeconds: 30 }, 400],
      [{ scenario: 'fence-one', durationSeconds: 1 }, 400],
      [{ scenario: 'fence-one', durationSeconds: 30.5 }, 400],
      [{ scenario: 'fence-one', durationSeconds: 30, extra: true }, 400],
      [{ scenario: 'fence-one', durationSeconds: 30, reason: 'a\nb' }, 400],
      [{ scenario: 'fence-one', durationSeconds: 30, member: 'nope' }, 404],
      [[1, 2], 400],
    ];
    for (const [body, status] of bad) {
      assert.equal((await adminCall(url, fixture.ca, 'POST', '/admin/v1/drills', { token: operatorToken, body })).status, status, JSON.stringify(body));
    }
    assert.equal((await adminCall(url, fixture.ca, 'POST', '/admin/v1/drills', { token: auditorToken, body: { scenario: 'fence-one', durationSeconds: 30 } })).status, 403);
    assert.ok(adminRecords().some((record) => record['action'] === 'drill.start' && record['actor'] === 'auditor-dan' && record['outcome'] === 'denied'));
  });

  it('refuses a drill that would leave no other serving member', async () => {
    for (const id of ['softhsm-1', 'softhsm-3']) {
      assert.equal((await adminCall(url, fixture.ca, 'POST', `/admin/v1/members/${id}/fence`, { token: operatorToken, body: {} })).status, 200);
    }
    try {
      const refused = await adminCall(url, fixture.ca, 'POST', '/admin/v1/drills', { token: operatorToken, body: { scenario: 'fence-one', durationSeconds: 30 } });
      assert.equal(refused.status, 409);
      assert.match(String(refused.body['message']), /no other serving member/);
    } finally {
      for (const id of ['softhsm-1', 'softhsm-3']) await adminCall(url, fixture.ca, 'POST', `/admin/v1/members/${id}/restore`, { token: operatorToken, body: {} });
    }
  });
});
