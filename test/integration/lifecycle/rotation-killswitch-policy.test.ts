import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { approveWith, useAdminFixture } from '../../helpers/lifecycle.js';
import { readAuditRecords } from '../../helpers/test-env.js';
import { expectXksError, requestMetadata, sealedFrom, type XksResponse } from '../../helpers/xks-client.js';

describe('transparent rotation', () => {
  const suite = useAdminFixture({ name: 'rotation' });

  it('a new version takes over encryption; ciphertexts made before keep decrypting; retiring the old version stops them', async () => {
    const plaintext = randomBytes(32);
    const before = sealedFrom(await suite.fixture.client.encrypt('foo', { plaintext }));
    assert.deepEqual(Buffer.from(before.metadata ?? '', 'base64'), Buffer.from([1, 0, 1]));

    const rotated = await suite.call(suite.admins.keyAdmin, 'POST', '/admin/v1/keys/dev/foo/rotate');
    assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
    assert.equal(rotated.body['currentVersion'], 2);
    assert.deepEqual(rotated.body['versions'], {
      '1': { state: 'decrypt-only', createdAt: (rotated.body['versions'] as Record<string, { createdAt: string }>)['1']?.createdAt },
      '2': { state: 'active', createdAt: (rotated.body['versions'] as Record<string, { createdAt: string }>)['2']?.createdAt },
    });

    const after = sealedFrom(await suite.fixture.client.encrypt('foo', { plaintext }));
    assert.deepEqual(Buffer.from(after.metadata ?? '', 'base64'), Buffer.from([1, 0, 2]), 'the metadata records version 2');
    for (const sealed of [before, after]) {
      const opened = await suite.fixture.client.decrypt('foo', sealed);
      assert.equal(opened.body['plaintext'], plaintext.toString('base64'));
    }
    // Every member holds identical material for version 2: each serves the decrypt.
    const audit = readAuditRecords(suite.fixture.auditFile);
    assert.ok(audit.some((record) => record['keyVersion'] === 2));

    assert.equal((await suite.call(suite.admins.keyAdmin, 'POST', '/admin/v1/keys/dev/foo/versions/2/retire')).status, 409, 'the current version cannot be retired');
    assert.equal((await suite.call(suite.admins.keyAdmin, 'POST', '/admin/v1/keys/dev/foo/versions/1/retire')).status, 200);
    expectXksError(await suite.fixture.client.decrypt('foo', before), 400, 'InvalidStateException');
    assert.equal((await suite.fixture.client.decrypt('foo', after)).status, 200);
    assert.equal((await suite.fixture.client.metadata('foo')).body['keyStatus'], 'ENABLED');
  });

  it('a version that does not exist is an invalid ciphertext', async () => {
    const sealed = sealedFrom(await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(16) }));
    expectXksError(await suite.fixture.client.decrypt('foo', { ...sealed, metadata: Buffer.from([1, 0, 9]).toString('base64') }), 400, 'InvalidCiphertextException');
  });

  it('the key consistency check covers the new version on every member', async () => {
    const members = suite.fixture.proxy?.cluster.list() ?? [];
    assert.ok(members.length >= 2);
    // Restoring a serving member runs the check at once rather than waiting for the next interval.
    const restored = await suite.call(suite.admins.operator, 'POST', `/admin/v1/members/${members[0]?.id ?? ''}/restore`, { reason: 'run the key check' });
    assert.equal(restored.status, 200, JSON.stringify(restored.body));
    const report = await suite.call(suite.admins.auditor, 'GET', '/admin/v1/key-consistency');
    const labels = report.body['labels'] as Record<string, { expected?: string; byMember: Record<string, string | null>; quarantined: boolean }>;
    const version2 = Object.entries(labels).find(([label]) => label.endsWith('.v2'));
    assert.ok(version2 !== undefined, `no version-2 label in ${Object.keys(labels).join(', ')}`);
    const [, entry] = version2;
    const values = Object.values(entry.byMember);
    assert.equal(values.length, members.length);
    assert.ok(values.every((value) => value !== null && value === values[0]), `version 2 differs across members: ${JSON.stringify(entry.byMember)}`);
    assert.equal(entry.quarantined, false);
    assert.deepEqual(report.body['fenced'], []);
  });
});

describe('kill switch on a single instance (no Redis)', () => {
  const suite = useAdminFixture({ name: 'killswitch' });

  it('stops one key at once; bringing it back needs two approvers', async () => {
    const sealed = sealedFrom(await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(32) }));
    const stopped = await suite.call(suite.admins.operator, 'POST', '/admin/v1/killswitch', { keyStore: 'dev', keyId: 'foo', reason: 'incident 42' });
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    expectXksError(await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(32) }), 400, 'InvalidStateException');
    expectXksError(await suite.fixture.client.decrypt('foo', sealed), 400, 'InvalidStateException');
    assert.equal((await suite.fixture.client.encrypt('canary', { plaintext: randomBytes(32) })).status, 200, 'other keys are untouched');
    const direct = await suite.call(suite.admins.keyAdmin, 'POST', '/admin/v1/keys/dev/foo/state', { state: 'active' });
    assert.equal(direct.status, 202, 'undoing a kill switch is a dual-control request');
    await approveWith(suite.call, direct.body['approval'] as Record<string, unknown>, suite.admins.approver1, suite.admins.approver2);
    assert.equal((await suite.fixture.client.decrypt('foo', sealed)).status, 200);
  });

  it('stops a whole key store at once, including metadata status; restore through approvals', async () => {
    assert.equal((await suite.call(suite.admins.operator, 'POST', '/admin/v1/killswitch', { keyStore: 'dev' })).status, 200);
    expectXksError(await suite.fixture.client.encrypt('canary', { plaintext: randomBytes(16) }), 400, 'InvalidStateException');
    assert.equal((await suite.fixture.client.metadata('foo')).body['keyStatus'], 'DISABLED');
    assert.equal((await suite.fixture.client.health()).status, 200, 'health stays up: the proxy works, the store is stopped');
    const asked = await suite.call(suite.admins.operator, 'POST', '/admin/v1/killswitch/restore', { keyStore: 'dev' });
    assert.equal(asked.status, 202);
    const approval = asked.body['approval'] as Record<string, unknown>;
    assert.equal((await suite.call(suite.admins.approver1, 'POST', `/admin/v1/approvals/${String(approval['id'])}/reject`)).status, 200);
    assert.equal((await suite.call(suite.admins.approver2, 'POST', `/admin/v1/approvals/${String(approval['id'])}/approve`, { digest: approval['digest'] })).status, 409, 'a rejected request is closed');
    const again = await suite.call(suite.admins.operator, 'POST', '/admin/v1/killswitch/restore', { keyStore: 'dev' });
    await approveWith(suite.call, again.body['approval'] as Record<string, unknown>, suite.admins.approver1, suite.admins.approver2);
    assert.equal((await suite.fixture.client.encrypt('canary', { plaintext: randomBytes(16) })).status, 200);
  });

  it('an auditor cannot pull the kill switch', async () => {
    assert.equal((await suite.call(suite.admins.auditor, 'POST', '/admin/v1/killswitch', { keyStore: 'dev' })).status, 403);
    assert.equal((await suite.fixture.client.encrypt('canary', { plaintext: randomBytes(16) })).status, 200);
  });

  it('restoring after a kill switch returns a key to the state it had: a deactivated key never becomes active', async () => {
    const sealed = sealedFrom(await suite.fixture.client.encrypt('canary', { plaintext: randomBytes(16) }));
    assert.equal((await suite.call(suite.admins.keyAdmin, 'POST', '/admin/v1/keys/dev/canary/state', { state: 'deactivated' })).status, 200);
    assert.equal((await suite.call(suite.admins.operator, 'POST', '/admin/v1/killswitch', { keyStore: 'dev', keyId: 'canary' })).status, 200);
    expectXksError(await suite.fixture.client.decrypt('canary', sealed), 400, 'InvalidStateException');
    const asked = await suite.call(suite.admins.operator, 'POST', '/admin/v1/killswitch/restore', { keyStore: 'dev', keyId: 'canary' });
    assert.equal(asked.status, 202);
    await approveWith(suite.call, asked.body['approval'] as Record<string, unknown>, suite.admins.approver1, suite.admins.approver2);
    assert.equal((await suite.call(suite.admins.auditor, 'GET', '/admin/v1/keys/dev/canary')).body['state'], 'deactivated');
    assert.equal((await suite.fixture.client.decrypt('canary', sealed)).status, 200, 'deactivated keys still decrypt');
    expectXksError(await suite.fixture.client.encrypt('canary', { plaintext: randomBytes(16) }), 400, 'InvalidStateException');
  });
});

describe('cryptoperiods', () => {
  const suite = useAdminFixture({ name: 'cryptoperiod' });

  it('before its activation date a key is pre-activation; after its expiry it only decrypts', async () => {
    const sealed = sealedFrom(await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(32) }));
    const future = new Date(Date.now() + 86_400_000).toISOString();
    assert.equal((await suite.call(suite.admins.keyAdmin, 'POST', '/admin/v1/keys/dev/foo/cryptoperiod', { activateAt: future })).status, 200);
    expectXksError(await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(32) }), 400, 'InvalidStateException');
    assert.equal((await suite.call(suite.admins.auditor, 'GET', '/admin/v1/keys/dev/foo')).body['state'], 'pre-activation');
    const past = new Date(Date.now() - 1000).toISOString();
    const expired = await suite.call(suite.admins.keyAdmin, 'POST', '/admin/v1/keys/dev/foo/cryptoperiod', { activateAt: null, expireAt: past });
    assert.equal(expired.status, 200, JSON.stringify(expired.body));
    assert.equal(expired.body['state'], 'deactivated');
    expectXksError(await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(32) }), 400, 'InvalidStateException');
    assert.equal((await suite.fixture.client.decrypt('foo', sealed)).status, 200);
    assert.equal((await suite.call(suite.admins.keyAdmin, 'POST', '/admin/v1/keys/dev/foo/cryptoperiod', { activateAt: future, expireAt: past })).status, 400);
  });
});

describe('managed policy: narrowing applies at once, widening needs dual control', () => {
  const base = `version: 1
defaultEffect: deny
statements:
  - id: allow-alice
    effect: allow
    actions: ["xks:*"]
    conditions:
      StringEquals:
        awsPrincipalArn: arn:aws:iam::123456789012:user/Alice
`;
  const suite = useAdminFixture({
    name: 'managed-policy',
    policy: base,
    configure: (config) => {
      config.policy = { ...config.policy, source: 'managed' };
    },
  });

  const asBob = (): Promise<XksResponse> =>
    suite.fixture.client.post('keys/foo/encrypt', {
      requestMetadata: { ...requestMetadata('Encrypt'), awsPrincipalArn: 'arn:aws:iam::123456789012:user/Bob' },
      plaintext: randomBytes(16).toString('base64'),
      encryptionAlgorithm: 'AES_GCM',
    });

  it('starts from the policy file', async () => {
    assert.equal((await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(16) })).status, 200);
    expectXksError(await asBob(), 403, 'AccessDeniedException');
    const shown = await suite.call(suite.admins.auditor, 'GET', '/admin/v1/policy');
    assert.equal(shown.body['source'], 'managed');
    assert.deepEqual(shown.body['reads'], ['awsPrincipalArn']);
  });

  it('a widening change (allow Bob) waits for two approvers, then is in force', async () => {
    const widened = `${base}  - id: allow-bob\n    effect: allow\n    actions: ["xks:Encrypt"]\n    conditions:\n      StringEquals:\n        awsPrincipalArn: arn:aws:iam::123456789012:user/Bob\n`;
    const asked = await suite.call(suite.admins.keyAdmin, 'PUT', '/admin/v1/policy', { text: widened });
    assert.equal(asked.status, 202, JSON.stringify(asked.body));
    assert.deepEqual(asked.body['reasons'], ['allow statement allow-bob is added']);
    expectXksError(await asBob(), 403, 'AccessDeniedException');
    await approveWith(suite.call, asked.body['approval'] as Record<string, unknown>, suite.admins.approver1, suite.admins.approver2);
    assert.equal((await asBob()).status, 200);
  });

  it('a narrowing change (deny Bob) applies at once', async () => {
    const current = (await suite.call(suite.admins.auditor, 'GET', '/admin/v1/policy')).body['text'] as string;
    const narrowed = `${current}  - id: deny-bob\n    effect: deny\n    actions: ["xks:*"]\n    conditions:\n      StringEquals:\n        awsPrincipalArn: arn:aws:iam::123456789012:user/Bob\n`;
    const applied = await suite.call(suite.admins.keyAdmin, 'PUT', '/admin/v1/policy', { text: narrowed });
    assert.equal(applied.status, 200, JSON.stringify(applied.body));
    const response = await asBob();
    expectXksError(response, 403, 'AccessDeniedException');
    const record = readAuditRecords(suite.fixture.auditFile).reverse().find((entry) => entry['awsPrincipalArn'] === 'arn:aws:iam::123456789012:user/Bob');
    assert.equal(record?.['policyStatement'], 'deny-bob');
  });

  it('a realistic policy larger than the 4 KiB admin body limit is accepted; a body over the policy limit is 413', async () => {
    const current = (await suite.call(suite.admins.auditor, 'GET', '/admin/v1/policy')).body['text'] as string;
    const denies = Array.from({ length: 60 }, (_, index) => `  - id: deny-departed-${index}\n    effect: deny\n    actions: ["xks:*"]\n    conditions:\n      ArnLike:\n        awsPrincipalArn: arn:aws:iam::123456789012:user/departed-${index}-*\n`).join('');
    const large = `${current}${denies}`;
    assert.ok(large.length > 8 * 1024, `the policy is ${large.length} bytes`);
    const applied = await suite.call(suite.admins.keyAdmin, 'PUT', '/admin/v1/policy', { text: large });
    assert.equal(applied.status, 200, JSON.stringify(applied.body));
    assert.equal((await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(16) })).status, 200, 'Alice still allowed');
    const huge = await suite.call(suite.admins.keyAdmin, 'PUT', '/admin/v1/policy', { text: 'x'.repeat(400 * 1024) });
    assert.equal(huge.status, 413);
    const bigElsewhere = await suite.call(suite.admins.operator, 'POST', '/admin/v1/killswitch', { keyStore: 'dev', reason: 'x'.repeat(8 * 1024) });
    assert.equal(bigElsewhere.status, 413, 'other endpoints keep the small limit');
    assert.equal((await suite.fixture.client.encrypt('foo', { plaintext: randomBytes(16) })).status, 200, 'the refused kill switch did nothing');
  });

  it('an invalid policy is refused with the field named', async () => {
    const refused = await suite.call(suite.admins.keyAdmin, 'PUT', '/admin/v1/policy', { text: 'version: 1\nstatements:\n  - id: x\n    effect: maybe\n    actions: ["xks:*"]\n' });
    assert.equal(refused.status, 400);
    assert.match(String(refused.body['message']), /statements\[0\]\.effect/);
  });

  it('with a file-sourced policy the admin API refuses changes', async () => {
    const config = suite.fixture.readConfig();
    config.policy = { ...config.policy, source: 'file' };
    suite.fixture.writeConfig(config);
    writeFileSync(join(suite.fixture.dev.dir, 'policy.yaml'), base);
    assert.equal((await suite.fixture.proxy?.reload())?.ok, true);
    const refused = await suite.call(suite.admins.keyAdmin, 'PUT', '/admin/v1/policy', { text: base });
    assert.equal(refused.status, 409);
  });
});

describe('scheduled rotation (state.rotationScheduler)', () => {
  const suite = useAdminFixture({
    name: 'rotation-scheduled',
    configure: (config) => {
      config.state = { ...config.state, rotationScheduler: true };
      const foo = config.keyStores[0]?.keys.find((key) => key.id === 'foo');
      if (foo !== undefined) foo.rotationPeriodDays = 30;
    },
  });

  it('rotates a key once its cryptoperiod has passed, audited as the proxy\'s act; keys without a period are left alone', async () => {
    const proxy = suite.fixture.proxy!;
    // The first tick (at start) begins the cryptoperiod of a key without a lifecycle record.
    await proxy.maintenance.rotationTick();
    assert.equal(proxy.state.current.keys['dev/foo']?.currentVersion, 1);
    const plaintext = randomBytes(32);
    const before = sealedFrom(await suite.fixture.client.encrypt('foo', { plaintext }));

    await proxy.maintenance.rotationTick(Date.now() + 29 * 86_400_000);
    assert.equal(proxy.state.current.keys['dev/foo']?.currentVersion, 1, 'not yet: 29 of 30 days');

    await proxy.maintenance.rotationTick(Date.now() + 31 * 86_400_000);
    assert.equal(proxy.state.current.keys['dev/foo']?.currentVersion, 2);
    assert.equal(proxy.state.current.keys['dev/encrypt_only_key'], undefined, 'no rotation period, no record');
    const after = sealedFrom(await suite.fixture.client.encrypt('foo', { plaintext }));
    assert.deepEqual(Buffer.from(after.metadata ?? '', 'base64'), Buffer.from([1, 0, 2]));
    assert.equal((await suite.fixture.client.decrypt('foo', before)).body['plaintext'], plaintext.toString('base64'), 'version 1 still decrypts');

    const record = readAuditRecords(suite.fixture.auditFile).find((entry) => entry['action'] === 'key.rotate.scheduled');
    assert.equal(record?.['actor'], 'proxy');
    assert.equal(record?.['target'], 'keystore/dev/key/foo');
    assert.equal(record?.['outcome'], 'success');
    assert.equal(record?.['reason'], 'version 2 is current (rotation period 30 days)');
  });
});
