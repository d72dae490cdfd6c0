import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { ConfigInput } from '../../../src/config/schema.js';
import { runTokenAdmin, type TokenTarget } from '../../../src/hsm/token-admin.js';
import type { TokenKey } from '../../../src/hsm/token-admin-protocol.js';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { readAuditRecords, registerSecret } from '../../helpers/test-env.js';
import { sealedFrom } from '../../helpers/xks-client.js';

const TOKENS = ['hyok-dev-1', 'hyok-dev-2', 'hyok-dev-3'] as const;

function target(fixture: ProxyFixture, tokenLabel: string): TokenTarget {
  return { module: fixture.dev.modulePath, tokenLabel, pin: readFileSync(fixture.dev.pinFile, 'utf8').trim(), environment: { SOFTHSM2_CONF: fixture.dev.softhsmConf } };
}

async function importKey(fixture: ProxyFixture, tokenLabel: string, label: string, material: Buffer): Promise<void> {
  registerSecret('key-material', material);
  await runTokenAdmin(target(fixture, tokenLabel), [{ op: 'import', label, usage: { encrypt: true, decrypt: true }, material: material.toString('base64') }]);
}

async function replaceKey(fixture: ProxyFixture, tokenLabel: string, label: string, material: Buffer): Promise<void> {
  await runTokenAdmin(target(fixture, tokenLabel), [{ op: 'destroy', label }]);
  await importKey(fixture, tokenLabel, label, material);
}

function addKeys(config: ConfigInput, ...ids: string[]): void {
  const store = config.keyStores[0];
  if (store === undefined) throw new Error('no key store');
  store.keys = [...store.keys, ...ids.map((id) => ({ id }))];
}

describe('key material must be identical on every member', () => {
  let fixture: ProxyFixture;
  const material = randomBytes(32);
  const other = randomBytes(32);

  before(async () => {
    fixture = await createFixture({
      name: 'hsm-key-consistency',
      start: false,
      configure: (config) => {
        addKeys(config, 'drift', 'chaos');
        config.hsm.keyCheck = { intervalMs: 1000 };
      },
    });
    // "drift": members 1 and 2 agree, member 3 holds other material.
    await importKey(fixture, 'hyok-dev-1', 'drift', material);
    await importKey(fixture, 'hyok-dev-2', 'drift', material);
    await importKey(fixture, 'hyok-dev-3', 'drift', other);
    // "chaos": three different materials, no majority.
    for (const token of TOKENS) await importKey(fixture, token, 'chaos', randomBytes(32));
    await fixture.startProxy();
  });
  after(async () => {
    await fixture.close();
  });

  const member = (id: string) => fixture.proxy?.cluster.snapshot().find((snapshot) => snapshot.id === id);

  it('fences, at start-up, the member whose material disagrees with the majority, and says why', () => {
    const fenced = member('softhsm-3');
    assert.equal(fenced?.mode, 'fenced');
    assert.equal(fenced?.health, 'UNAVAILABLE');
    assert.match(fenced?.fence?.reason ?? '', /key material of 'drift' differs from the cluster/);
    assert.equal(fenced?.fence?.by, 'proxy');
    assert.equal(member('softhsm-1')?.mode, 'serving');
    assert.equal(member('softhsm-2')?.mode, 'serving');
  });

  it('never routes traffic to the fenced member, and reports it UNAVAILABLE to AWS KMS', async () => {
    const before = readAuditRecords(fixture.auditFile).length;
    const plaintext = randomBytes(32);
    const results = await Promise.all(Array.from({ length: 30 }, () => fixture.client.roundTrip('drift', plaintext)));
    for (const { decrypted } of results) assert.equal(decrypted.body['plaintext'], plaintext.toString('base64'));
    const members = readAuditRecords(fixture.auditFile)
      .slice(before)
      .map((record) => record['hsmMember']);
    assert.ok(!members.includes('softhsm-3'));
    const health = await fixture.client.health();
    const details = health.body['ekmFleetDetails'] as Array<{ id: string; healthStatus: string }>;
    assert.equal(details.find((entry) => entry.id === 'softhsm-3')?.healthStatus, 'UNAVAILABLE');
  });

  it('quarantines a key whose material differs with no majority: InternalException, other keys unaffected', async () => {
    const response = await fixture.client.encrypt('chaos', { plaintext: randomBytes(16) });
    assert.equal(response.status, 500);
    assert.equal(response.body['errorName'], 'InternalException');
    assert.equal((await fixture.client.encrypt('foo', { plaintext: randomBytes(16) })).status, 200);
    const report = fixture.proxy?.cluster.keyConsistencyReport();
    assert.equal(report?.labels['chaos']?.quarantined, true);
    assert.equal(report?.labels['foo']?.quarantined, false);
  });

  it('a restore is refused while the material still differs, and succeeds once it is fixed', async () => {
    const refused = await fixture.proxy?.cluster.restore('softhsm-3', 'operator:test');
    assert.equal(refused?.mode, 'fenced');
    await replaceKey(fixture, 'hyok-dev-3', 'drift', material);
    const restored = await fixture.proxy?.cluster.restore('softhsm-3', 'operator:test');
    assert.equal(restored?.mode, 'serving');
  });

  it('the periodic check fences a member whose key changes under it', async () => {
    const sealed = sealedFrom(await fixture.client.encrypt('canary', { plaintext: randomBytes(32) }));
    await replaceKey(fixture, 'hyok-dev-2', 'canary', randomBytes(32));
    const deadline = Date.now() + 5000;
    while (member('softhsm-2')?.mode !== 'fenced') {
      assert.ok(Date.now() < deadline, 'softhsm-2 was not fenced within 5 s');
      await sleep(100);
    }
    assert.match(member('softhsm-2')?.fence?.reason ?? '', /'canary'/);
    // Old ciphertexts keep decrypting: only members holding the right material serve.
    for (let i = 0; i < 6; i++) assert.equal((await fixture.client.decrypt('canary', sealed)).status, 200);
  });
});

describe('a pinned check value (keys[].checkValue) overrides the majority', () => {
  let fixture: ProxyFixture;

  before(async () => {
    fixture = await createFixture({ name: 'hsm-key-pinned', start: false });
    const [listing] = (await runTokenAdmin(target(fixture, 'hyok-dev-1'), [{ op: 'list' }])) as [TokenKey[]];
    const kcv = listing.find((key) => key.label === 'foo')?.checkValue;
    assert.ok(kcv !== undefined, 'SoftHSM reports CKA_CHECK_VALUE');
    // Members 2 and 3 (the majority) get other material under the same label; member 1 keeps the pinned one.
    for (const token of ['hyok-dev-2', 'hyok-dev-3']) await replaceKey(fixture, token, 'foo', randomBytes(32));
    const config = fixture.readConfig();
    const foo = config.keyStores[0]?.keys.find((key) => key.id === 'foo');
    if (foo !== undefined) foo.checkValue = kcv;
    fixture.writeConfig(config);
    await fixture.startProxy();
  });
  after(async () => {
    await fixture.close();
  });

  it('fences every member that disagrees with the pin, even a majority', () => {
    const modes = Object.fromEntries((fixture.proxy?.cluster.snapshot() ?? []).map((member) => [member.id, member.mode]));
    assert.deepEqual(modes, { 'softhsm-1': 'serving', 'softhsm-2': 'fenced', 'softhsm-3': 'fenced' });
  });
});
