import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { issueCertificate, type CertificateAuthority, type PemPair } from '../../../src/dev/pki.js';
import { adminCall, ADMIN_AUDIENCE, ADMIN_ISSUER, createJwtIssuer, writeJwks, type JwtIssuer } from '../../helpers/admin.js';
import { runCliAsync } from '../../helpers/cli.js';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { readAuditRecords, registerSecret } from '../../helpers/test-env.js';

function devCa(fixture: ProxyFixture): CertificateAuthority {
  return { certPem: fixture.ca, keyPem: readFileSync(join(fixture.dev.dir, 'pki', 'ca-key.pem'), 'utf8'), subject: 'CN=hyok-proxy dev CA' };
}

describe('admin API: members, drain, fence, restore', () => {
  let fixture: ProxyFixture;
  let issuer: JwtIssuer;
  let operatorToken: string;
  let auditorToken: string;
  let operatorCert: PemPair;
  let url: string;

  before(async () => {
    issuer = await createJwtIssuer();
    fixture = await createFixture({
      name: 'admin-members',
      start: false,
      configure: (config, dev) => {
        writeJwks(join(dev.dir, 'admin-jwks.json'), issuer);
        config.admin = {
          enabled: true,
          port: 0,
          clientCertificates: { caFile: 'pki/ca.pem', roles: { 'sre-mtls': ['operator'], 'readonly-mtls': ['auditor'] } },
          jwt: { jwksFile: 'admin-jwks.json', issuer: ADMIN_ISSUER, audience: ADMIN_AUDIENCE },
        };
      },
    });
    await fixture.startProxy();
    url = fixture.proxy?.adminUrl ?? '';
    operatorToken = await issuer.sign({ roles: ['operator'] }, { subject: 'sre-alice' });
    auditorToken = await issuer.sign({ roles: 'auditor' }, { subject: 'auditor-bob' });
    operatorCert = await issueCertificate(devCa(fixture), { commonName: 'sre-mtls', usage: 'client' });
    registerSecret('private-key', operatorCert.keyPem.split('\n')[1] ?? '');
  });
  after(async () => {
    await fixture.close();
  });

  const members = async (token = auditorToken): Promise<Array<Record<string, unknown>>> => {
    const response = await adminCall(url, fixture.ca, 'GET', '/admin/v1/members', { token });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body['members'] as Array<Record<string, unknown>>;
  };
  const adminRecords = (): Array<Record<string, unknown>> => readAuditRecords(fixture.auditFile).filter((record) => record['event'] === 'admin.action');

  it('lists every member with health, mode, breaker, in-flight work, latency and last error', async () => {
    const list = await members();
    assert.deepEqual(list.map((member) => member['id']), ['softhsm-1', 'softhsm-2', 'softhsm-3']);
    for (const member of list) {
      assert.equal(member['health'], 'ACTIVE');
      assert.equal(member['mode'], 'serving');
      assert.equal(member['breaker'], 'closed');
      assert.equal(member['inFlight'], 0);
      assert.ok('latencyMs' in member && 'lastError' in member && 'lastProbe' in member);
      assert.deepEqual(member['agents'], { serving: 1, total: 1 });
    }
  });

  it('refuses unauthenticated callers (401) and audits the attempt', async () => {
    const response = await adminCall(url, fixture.ca, 'GET', '/admin/v1/members');
    assert.equal(response.status, 401);
    assert.equal(response.body['error'], 'unauthenticated');
    assert.ok(adminRecords().some((record) => record['actor'] === 'anonymous' && record['outcome'] === 'denied'));
  });

  const badTokens: Array<[string, () => Promise<string>]> = [
    ['an expired token', () => issuer.sign({ roles: ['operator'] }, { expiresIn: Math.floor(Date.now() / 1000) - 3600 })],
    ['a token for another audience', () => issuer.sign({ roles: ['operator'] }, { audience: 'someone-else' })],
    ['a token from another issuer', () => issuer.sign({ roles: ['operator'] }, { issuer: 'https://evil.example' })],
    ['a token signed by an unknown key', async () => (await createJwtIssuer('test-key-1')).sign({ roles: ['operator'] })],
    ['an unsigned token (alg none)', async () => `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'x', roles: ['operator'], iss: ADMIN_ISSUER, aud: ADMIN_AUDIENCE, exp: 9_999_999_999 })).toString('base64url')}.`],
  ];
  for (const [name, make] of badTokens) {
    it(`refuses ${name} with 401`, async () => {
      const response = await adminCall(url, fixture.ca, 'GET', '/admin/v1/members', { token: await make() });
      assert.equal(response.status, 401);
    });
  }

  it('refuses a malformed Authorization header with 401', async () => {
    const response = await adminCall(url, fixture.ca, 'GET', '/admin/v1/members', { headers: { authorization: 'Bearer not-a-jwt' } });
    assert.equal(response.status, 401);
  });

  it('an auditor may read but not act (403, audited as denied)', async () => {
    assert.equal((await members(auditorToken)).length, 3);
    const response = await adminCall(url, fixture.ca, 'POST', '/admin/v1/members/softhsm-1/fence', { token: auditorToken, body: {} });
    assert.equal(response.status, 403);
    assert.equal(response.body['error'], 'forbidden');
    const record = adminRecords().find((entry) => entry['action'] === 'member.fence' && entry['actor'] === 'auditor-bob');
    assert.equal(record?.['outcome'], 'denied');
  });

  it('a token without roles is forbidden everywhere', async () => {
    const response = await adminCall(url, fixture.ca, 'GET', '/admin/v1/members', { token: await issuer.sign({}) });
    assert.equal(response.status, 403);
  });

  it('drain stops new work to a member; restore brings it back; both audited with the actor', async () => {
    const drained = await adminCall(url, fixture.ca, 'POST', '/admin/v1/members/softhsm-1/drain', { token: operatorToken, body: { reason: 'firmware update' } });
    assert.equal(drained.status, 200, JSON.stringify(drained.body));
    assert.equal(drained.body['mode'], 'drained');
    assert.equal(drained.body['health'], 'UNAVAILABLE');
    const before = readAuditRecords(fixture.auditFile).length;
    await Promise.all(Array.from({ length: 30 }, () => fixture.client.encrypt('foo', { plaintext: randomBytes(16) })));
    const served = readAuditRecords(fixture.auditFile).slice(before).map((record) => record['hsmMember']).filter((member) => member !== undefined);
    assert.equal(served.length, 30);
    assert.ok(!served.includes('softhsm-1'), 'a drained member gets no new work');
    const health = await fixture.client.health();
    assert.deepEqual(
      (health.body['ekmFleetDetails'] as Array<Record<string, string>>).map((member) => member['healthStatus']),
      ['UNAVAILABLE', 'ACTIVE', 'ACTIVE'],
    );

    const restored = await adminCall(url, fixture.ca, 'POST', '/admin/v1/members/softhsm-1/restore', { token: operatorToken });
    assert.equal(restored.status, 200);
    assert.equal(restored.body['mode'], 'serving');
    const drainRecord = adminRecords().find((record) => record['action'] === 'member.drain');
    assert.equal(drainRecord?.['actor'], 'sre-alice');
    assert.equal(drainRecord?.['via'], 'jwt');
    assert.equal(drainRecord?.['reason'], 'firmware update');
    assert.equal(drainRecord?.['outcome'], 'success');
  });

  it('fence by a client certificate (mTLS) takes the member out at once; restore puts it back', async () => {
    const fenced = await adminCall(url, fixture.ca, 'POST', '/admin/v1/members/softhsm-2/fence', { cert: operatorCert.certPem, key: operatorCert.keyPem, body: { reason: 'suspected tamper' } });
    assert.equal(fenced.status, 200, JSON.stringify(fenced.body));
    assert.equal(fenced.body['mode'], 'fenced');
    assert.deepEqual((fenced.body['fence'] as Record<string, string>)['reason'], 'suspected tamper');
    assert.equal((fenced.body['fence'] as Record<string, string>)['by'], 'operator:sre-mtls');
    const record = adminRecords().find((entry) => entry['action'] === 'member.fence' && entry['outcome'] === 'success');
    assert.equal(record?.['actor'], 'sre-mtls');
    assert.equal(record?.['via'], 'mtls');
    const restored = await adminCall(url, fixture.ca, 'POST', '/admin/v1/members/softhsm-2/restore', { cert: operatorCert.certPem, key: operatorCert.keyPem });
    assert.equal(restored.body['mode'], 'serving');
  });

  it('an unknown member is 404 and a bad body is 400', async () => {
    assert.equal((await adminCall(url, fixture.ca, 'POST', '/admin/v1/members/nope/fence', { token: operatorToken, body: {} })).status, 404);
    assert.equal((await adminCall(url, fixture.ca, 'POST', '/admin/v1/members/softhsm-3/fence', { token: operatorToken, body: { reason: 7 } })).status, 400);
    assert.equal((await adminCall(url, fixture.ca, 'POST', '/admin/v1/members/softhsm-3/fence', { token: operatorToken, body: { reason: 'x', extra: true } })).status, 400);
    assert.equal((await adminCall(url, fixture.ca, 'POST', '/admin/v1/members/softhsm-3/fence', { token: operatorToken, rawBody: '{not json' })).status, 400);
    assert.equal((await adminCall(url, fixture.ca, 'GET', '/admin/v1/nothing-here', { token: operatorToken })).status, 404);
    assert.equal((await members()).find((member) => member['id'] === 'softhsm-3')?.['mode'], 'serving', 'rejected calls changed nothing');
  });

  it('the CLI wraps the admin API', async () => {
    const tokenFile = join(fixture.dir, 'operator.jwt');
    writeFileSync(tokenFile, operatorToken, { mode: 0o600 });
    const common = ['admin', '--url', url.replace('127.0.0.1', 'localhost'), '--ca', fixture.dev.caFile, '--token-file', tokenFile];
    const fence = await runCliAsync([...common, 'fence', 'softhsm-3', '--reason', 'cli drill']);
    assert.equal(fence.status, 0, fence.stderr);
    assert.match(fence.stdout, /softhsm-3\s+UNAVAILABLE\s+fenced/);
    const list = await runCliAsync([...common, 'members']);
    assert.equal(list.status, 0, list.stderr);
    assert.match(list.stdout, /^ID\s+HEALTH\s+MODE\s+BREAKER/m);
    assert.match(list.stdout, /softhsm-3\s+UNAVAILABLE\s+fenced\s+closed\s+0\s+.*fenced: cli drill/);
    const restore = await runCliAsync([...common, 'restore', 'softhsm-3', '--reason', 'cli drill over']);
    assert.equal(restore.status, 0, restore.stderr);
    const restored = readAuditRecords(fixture.auditFile).filter((record) => record['action'] === 'member.restore' && record['target'] === 'softhsm-3').at(-1);
    assert.equal(restored?.['reason'], 'cli drill over');
    const json = await runCliAsync([...common, 'members', '--json']);
    assert.equal((JSON.parse(json.stdout) as { members: Array<{ mode: string }> }).members[2]?.mode, 'serving');
    const denied = await runCliAsync(['admin', '--url', url.replace('127.0.0.1', 'localhost'), '--ca', fixture.dev.caFile, 'members']);
    assert.equal(denied.status, 1);
    assert.match(denied.stderr, /answered 401/);
  });
});

describe('admin API with a JWKS URL: keys are fetched before serving, never on the request path', () => {
  let fixture: ProxyFixture;
  let jwksServer: Server;
  let fetches = 0;
  let issuer: JwtIssuer;

  before(async () => {
    issuer = await createJwtIssuer();
    jwksServer = createServer((_req, res) => {
      fetches += 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(issuer.jwks));
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', () => resolve()));
    const port = (jwksServer.address() as AddressInfo).port;
    fixture = await createFixture({
      name: 'admin-jwks-url',
      configure: (config) => {
        config.admin = { enabled: true, port: 0, jwt: { jwksUrl: `http://127.0.0.1:${port}/jwks.json`, issuer: ADMIN_ISSUER, audience: ADMIN_AUDIENCE } };
      },
    });
  });
  after(async () => {
    await fixture.close();
    jwksServer.close();
  });

  it('verifies tokens from memory, even after the JWKS server went away', async () => {
    assert.equal(fetches, 1, 'fetched once at start-up');
    const token = await issuer.sign({ roles: ['auditor'] });
    const first = await adminCall(fixture.proxy?.adminUrl ?? '', fixture.ca, 'GET', '/admin/v1/members', { token });
    assert.equal(first.status, 200);
    jwksServer.close();
    jwksServer.closeAllConnections();
    const second = await adminCall(fixture.proxy?.adminUrl ?? '', fixture.ca, 'GET', '/admin/v1/members', { token });
    assert.equal(second.status, 200);
    assert.equal(fetches, 1, 'no fetch on the request path');
  });
});
