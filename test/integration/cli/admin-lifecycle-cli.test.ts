import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runCliAsync, type CliResult } from '../../helpers/cli.js';
import { useAdminFixture, type Admins } from '../../helpers/lifecycle.js';
import { readAuditRecords } from '../../helpers/test-env.js';
import { expectXksError } from '../../helpers/xks-client.js';

describe('CLI: key lifecycle, rotation, kill switch, approvals and policy through the admin API', () => {
  const suite = useAdminFixture({ name: 'admin-lifecycle-cli' });

  /** Runs `hyok-proxy` as one admin; connection options go after the command, as people type them. */
  const as = async (who: keyof Admins, ...args: string[]): Promise<CliResult> => {
    const tokenFile = join(suite.fixture.dir, `${who}.jwt`);
    writeFileSync(tokenFile, suite.admins[who], { mode: 0o600 });
    const url = (suite.fixture.proxy?.adminUrl ?? '').replace('127.0.0.1', 'localhost');
    return runCliAsync([...args, '--url', url, '--ca', suite.fixture.dev.caFile, '--token-file', tokenFile], { logName: 'admin-lifecycle-cli' });
  };

  it('lists keys as a table', async () => {
    const listed = await as('auditor', 'admin', 'keys', 'list');
    assert.equal(listed.status, 0, listed.stderr);
    assert.match(listed.stdout, /^KEY STORE\s+KEY\s+STATE\s+VERSION\s+EXPIRES/m);
    assert.match(listed.stdout, /^dev\s+foo\s+active\s+1\s+-/m);
  });

  it('`keys rotate` makes version 2 current', async () => {
    const rotated = await as('keyAdmin', 'keys', 'rotate', 'dev', 'foo');
    assert.equal(rotated.status, 0, rotated.stderr);
    assert.equal((JSON.parse(rotated.stdout) as { currentVersion: number }).currentVersion, 2);
    const sealed = await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(16) });
    assert.deepEqual(Buffer.from(String(sealed.body['ciphertextMetadata']), 'base64'), Buffer.from([1, 0, 2]));
  });

  it('a role the API refuses is a non-zero exit with the answer', async () => {
    const refused = await as('auditor', 'admin', 'keys', 'rotate', 'dev', 'foo');
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /answered 403/);
  });

  it('kill switch, restore request, two approvals: the key serves again', async () => {
    const engaged = await as('operator', 'admin', 'killswitch', 'engage', 'dev', '--key-id', 'foo', '--reason', 'cli drill');
    assert.equal(engaged.status, 0, engaged.stderr);
    expectXksError(await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(16) }), 400, 'InvalidStateException');

    const asked = await as('operator', 'admin', 'killswitch', 'restore', 'dev', '--key-id', 'foo', '--reason', 'incident closed');
    assert.equal(asked.status, 0, asked.stderr);
    assert.match(asked.stdout, /needs dual control/);
    const askedRecord = readAuditRecords(suite.fixture.auditFile).find((record) => record['action'] === 'killswitch.restore.request');
    assert.equal(askedRecord?.['reason'], 'incident closed');

    const pending = await as('approver1', 'admin', 'approvals', 'list');
    const approvals = (JSON.parse(pending.stdout) as { approvals: Array<{ id: string; digest: string; status: string; action: string }> }).approvals;
    const request = approvals.find((approval) => approval.action === 'killswitch.restore' && approval.status === 'pending');
    assert.ok(request !== undefined, pending.stdout);

    const wrongDigest = await as('approver1', 'admin', 'approvals', 'approve', request.id, '--digest', 'f'.repeat(64));
    assert.equal(wrongDigest.status, 1);
    for (const approver of ['approver1', 'approver2'] as const) {
      const approved = await as(approver, 'admin', 'approvals', 'approve', request.id, '--digest', request.digest);
      assert.equal(approved.status, 0, approved.stderr);
    }
    assert.equal((await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(16) })).status, 200);
  });

  it('state and cryptoperiod changes, with argument checks before any call', async () => {
    const suspended = await as('keyAdmin', 'admin', 'keys', 'state', 'dev', 'canary', 'suspended', '--reason', 'maintenance');
    assert.equal(suspended.status, 0, suspended.stderr);
    assert.equal((JSON.parse(suspended.stdout) as { state: string }).state, 'suspended');
    const badTime = await as('keyAdmin', 'admin', 'keys', 'cryptoperiod', 'dev', 'canary', '--expire-at', 'next tuesday');
    assert.notEqual(badTime.status, 0);
    assert.match(badTime.stderr, /ISO 8601/);
    const expiry = new Date(Date.now() + 3_600_000).toISOString();
    const set = await as('keyAdmin', 'admin', 'keys', 'cryptoperiod', 'dev', 'canary', '--expire-at', expiry);
    assert.equal(set.status, 0, set.stderr);
    assert.equal((JSON.parse(set.stdout) as { expireAt: string }).expireAt, expiry);
  });

  it('shows the policy in force', async () => {
    const shown = await as('auditor', 'admin', 'policy', 'show');
    assert.equal(shown.status, 0, shown.stderr);
    assert.equal((JSON.parse(shown.stdout) as { source: string }).source, 'file');
  });
});
