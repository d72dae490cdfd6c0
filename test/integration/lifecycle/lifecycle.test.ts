import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import { runTokenAdmin } from '../../../src/hsm/token-admin.js';
import type { TokenKey } from '../../../src/hsm/token-admin-protocol.js';
import { approveWith, useAdminFixture } from '../../helpers/lifecycle.js';
import { readAuditRecords } from '../../helpers/test-env.js';
import type { AdminCallResult } from '../../helpers/admin.js';
import { expectXksError, sealedFrom } from '../../helpers/xks-client.js';

describe('key lifecycle through the admin API, enforced on the XKS path', () => {
  const suite = useAdminFixture({
    name: 'lifecycle',
    configure: (config) => {
      const store = config.keyStores[0];
      if (store !== undefined) store.keys = [...store.keys, { id: 'life', label: 'canary' }, { id: 'doomed', label: 'canary' }];
      config.dualControl = { requiredApprovals: 2, windowMinutes: 60 };
    },
  });

  const setState = (keyId: string, state: string, token = suite.admins.keyAdmin): Promise<AdminCallResult> => suite.call(token, 'POST', `/admin/v1/keys/dev/${keyId}/state`, { state, reason: 'test' });

  it('lists keys with their lifecycle state (keys without a record are active at version 1)', async () => {
    const response = await suite.call(suite.admins.auditor, 'GET', '/admin/v1/keys');
    assert.equal(response.status, 200);
    const foo = (response.body['keys'] as Array<Record<string, unknown>>).find((key) => key['id'] === 'foo');
    assert.equal(foo?.['state'], 'active');
    assert.equal(foo?.['currentVersion'], 1);
  });

  it('suspended: no encrypt, no decrypt, metadata DISABLED; active again: everything works', async () => {
    const sealed = sealedFrom(await suite.fixture.client.encrypt('life', { plaintext: randomBytes(32) }));
    assert.equal((await setState('life', 'suspended')).status, 200);
    expectXksError(await suite.fixture.client.encrypt('life', { plaintext: randomBytes(32) }), 400, 'InvalidStateException');
    expectXksError(await suite.fixture.client.decrypt('life', sealed), 400, 'InvalidStateException');
    assert.equal((await suite.fixture.client.metadata('life')).body['keyStatus'], 'DISABLED');
    assert.equal((await setState('life', 'active')).status, 200);
    assert.equal((await suite.fixture.client.decrypt('life', sealed)).status, 200);
    assert.equal((await suite.fixture.client.metadata('life')).body['keyStatus'], 'ENABLED');
  });

  it('deactivated: decrypt only, and it never comes back (forbidden transition is 409)', async () => {
    const sealed = sealedFrom(await suite.fixture.client.encrypt('life', { plaintext: randomBytes(32) }));
    assert.equal((await setState('life', 'deactivated')).status, 200);
    expectXksError(await suite.fixture.client.encrypt('life', { plaintext: randomBytes(32) }), 400, 'InvalidStateException');
    assert.equal((await suite.fixture.client.decrypt('life', sealed)).status, 200, 'deactivated keys still decrypt');
    const back = await setState('life', 'active');
    assert.equal(back.status, 409);
    assert.match(String(back.body['message']), /deactivated key cannot become active/);
  });

  it('compromised: decrypt refused until an approved override; each use is an alert-level audit record', async () => {
    const sealed = sealedFrom(await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(32) }));
    assert.equal((await setState('foo', 'compromised')).status, 200);
    expectXksError(await suite.fixture.client.decrypt('foo', sealed), 400, 'InvalidStateException');
    const asked = await suite.call(suite.admins.keyAdmin, 'POST', '/admin/v1/keys/dev/foo/compromised-decrypt', { minutes: 30 });
    assert.equal(asked.status, 202, JSON.stringify(asked.body));
    const approval = asked.body['approval'] as Record<string, unknown>;
    await approveWith(suite.call, approval, suite.admins.approver1, suite.admins.approver2);
    const opened = await suite.fixture.client.decrypt('foo', sealed);
    assert.equal(opened.status, 200, opened.text);
    const alert = readAuditRecords(suite.fixture.auditFile).reverse().find((record) => record['api'] === 'Decrypt' && record['externalKeyId'] === 'foo');
    assert.equal(alert?.['level'], 'warn', 'alert-level record');
    assert.match(String(alert?.['reason']), /compromised/);
    expectXksError(await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(32) }), 400, 'InvalidStateException');
  });

  it('re-enabling a compromised key needs dual control', async () => {
    const asked = await setState('foo', 'active');
    assert.equal(asked.status, 202, JSON.stringify(asked.body));
    const approval = asked.body['approval'] as Record<string, unknown>;
    assert.equal(approval['action'], 'key.reenable-compromised');
    expectXksError(await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(32) }), 400, 'InvalidStateException');
    await approveWith(suite.call, approval, suite.admins.approver1, suite.admins.approver2);
    assert.equal((await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(32) })).status, 200);
  });

  describe('dual control abuse', () => {
    let approval: Record<string, unknown>;
    before(async () => {
      const direct = await setState('doomed', 'destroyed');
      assert.equal(direct.status, 409, 'an active key is never destroyed: suspend or deactivate it first');
      assert.equal((await setState('doomed', 'suspended')).status, 200);
      const asked = await setState('doomed', 'destroyed');
      assert.equal(asked.status, 202, JSON.stringify(asked.body));
      approval = asked.body['approval'] as Record<string, unknown>;
      assert.equal(approval['action'], 'key.destroy');
    });

    it('the requester cannot approve their own request', async () => {
      const own = await suite.call(suite.admins.keyAdmin, 'POST', `/admin/v1/approvals/${String(approval['id'])}/approve`, { digest: approval['digest'] });
      assert.equal(own.status, 403);
    });

    it('an approver who also holds key-admin may not approve (separation of duties)', async () => {
      const conflicted = await suite.call(suite.admins.conflicted, 'POST', `/admin/v1/approvals/${String(approval['id'])}/approve`, { digest: approval['digest'] });
      assert.equal(conflicted.status, 403);
      assert.match(String(conflicted.body['message']), /separation of duties/);
    });

    it('a key admin cannot approve; an approver cannot request', async () => {
      assert.equal((await suite.call(suite.admins.keyAdmin2, 'POST', `/admin/v1/approvals/${String(approval['id'])}/approve`, { digest: approval['digest'] })).status, 403);
      assert.equal((await suite.call(suite.admins.approver1, 'POST', '/admin/v1/keys/dev/doomed/state', { state: 'destroyed' })).status, 403);
    });

    it('an approval for another digest (a replay onto a different request) is refused', async () => {
      const wrong = await suite.call(suite.admins.approver1, 'POST', `/admin/v1/approvals/${String(approval['id'])}/approve`, { digest: 'a'.repeat(64) });
      assert.equal(wrong.status, 409);
      assert.match(String(wrong.body['message']), /digest does not match/);
    });

    it('the same approver counts once, and one approval is not enough', async () => {
      assert.equal((await suite.call(suite.admins.approver1, 'POST', `/admin/v1/approvals/${String(approval['id'])}/approve`, { digest: approval['digest'] })).status, 200);
      const again = await suite.call(suite.admins.approver1, 'POST', `/admin/v1/approvals/${String(approval['id'])}/approve`, { digest: approval['digest'] });
      assert.equal(again.status, 409);
      const view = await suite.call(suite.admins.auditor, 'GET', '/admin/v1/keys/dev/doomed');
      assert.equal(view.body['state'], 'suspended', 'not destroyed with one approval of two');
    });

    it('a second approver executes it: the key is destroyed and crypto-erased from every member', async () => {
      const done = await suite.call(suite.admins.approver2, 'POST', `/admin/v1/approvals/${String(approval['id'])}/approve`, { digest: approval['digest'] });
      assert.equal(done.status, 200);
      assert.equal(done.body['status'], 'executed');
      const view = await suite.call(suite.admins.auditor, 'GET', '/admin/v1/keys/dev/doomed');
      assert.equal(view.body['state'], 'destroyed');
      // "doomed" shares its label with "life": destroying one destroys the object both use.
      const deadline = Date.now() + 10_000;
      for (;;) {
        const pin = readFileSync(suite.fixture.dev.pinFile, 'utf8').trim();
        const present = await Promise.all(
          ['hyok-dev-1', 'hyok-dev-2', 'hyok-dev-3'].map(async (tokenLabel) => {
            // SoftHSM can fail C_Initialize while another process rewrites the token's files (the erase itself): look again.
            const listed = await runTokenAdmin({ module: suite.fixture.dev.modulePath, tokenLabel, pin, environment: { SOFTHSM2_CONF: suite.fixture.dev.softhsmConf } }, [{ op: 'list' }]).catch(() => undefined);
            if (listed === undefined) return true;
            return (listed[0] as TokenKey[]).some((key) => key.label === 'canary');
          }),
        );
        if (present.every((found) => !found)) break;
        assert.ok(Date.now() < deadline, 'key objects still present after 10 s');
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expectXksError(await suite.fixture.client.encrypt('doomed', { plaintext: randomBytes(16) }), 400, 'InvalidStateException');
    });

    it('an executed request cannot be approved again (replay)', async () => {
      const replay = await suite.call(suite.admins.approver3, 'POST', `/admin/v1/approvals/${String(approval['id'])}/approve`, { digest: approval['digest'] });
      assert.equal(replay.status, 409);
      assert.match(String(replay.body['message']), /executed/);
    });

    it('a destroyed key can never change state again', async () => {
      assert.equal((await setState('doomed', 'active')).status, 409);
    });
  });

  it('the state survives a restart: it lives on the HSM members, not in the process', async () => {
    await suite.fixture.startProxy();
    const view = await suite.call(suite.admins.auditor, 'GET', '/admin/v1/keys/dev/doomed');
    assert.equal(view.body['state'], 'destroyed');
    expectXksError(await suite.fixture.client.encrypt('life', { plaintext: randomBytes(16) }), 400, 'InvalidStateException');
  });
});
