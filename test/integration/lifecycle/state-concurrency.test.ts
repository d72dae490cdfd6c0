import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { HsmStateStore, STATE_LABEL, type MemberAccess } from '../../../src/state/hsm-store.js';
import { StateService } from '../../../src/state/service.js';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { testLogger } from '../../helpers/test-env.js';

/**
 * Two state writers (as two replicas would be) changing the fleet state at the
 * same moment, against real SoftHSM tokens: every token-admin call is its own
 * process, so the writes really race on the token files.
 */
describe('fleet state: concurrent writers never lose an update', () => {
  let fixture: ProxyFixture;
  let writers: StateService[];
  let members: MemberAccess[];

  before(async () => {
    fixture = await createFixture({ name: 'state-concurrency' });
    const pin = readFileSync(fixture.dev.pinFile, 'utf8').trim();
    const cluster = fixture.proxy?.cluster;
    assert.ok(cluster !== undefined);
    members = cluster.list().map((member, index) => ({
      id: member.id,
      target: () => ({ module: fixture.dev.modulePath, tokenLabel: `hyok-dev-${index + 1}`, pin, environment: { SOFTHSM2_CONF: fixture.dev.softhsmConf } }),
    }));
    const logger = testLogger('state-concurrency');
    writers = [0, 1].map((index) => new StateService(new HsmStateStore(cluster, members, 2000, logger.child({ writer: index })), { syncIntervalMs: 60_000 }, undefined, logger));
    for (const writer of writers) await writer.start();
  });
  after(async () => {
    for (const writer of writers) writer.stop();
    await fixture.close();
  });

  it('eight changes from two writers at once all arrive, and each token holds exactly one state document', async () => {
    const changes = Array.from({ length: 8 }, (_, index) =>
      (writers[index % 2] as StateService).mutate(`writer-${index % 2}`, (draft) => {
        draft.killedStores[`race-${index}`] = { at: new Date().toISOString(), by: `writer-${index % 2}` };
      }),
    );
    const results = await Promise.allSettled(changes);
    const failed = results.filter((result) => result.status === 'rejected');
    assert.deepEqual(failed, [], 'every change eventually wins its write');

    const reader = writers[0] as StateService;
    await reader.sync();
    const stores = Object.keys(reader.current.killedStores).filter((name) => name.startsWith('race-')).sort();
    assert.deepEqual(stores, Array.from({ length: 8 }, (_, index) => `race-${index}`));

    for (const member of members) {
      const objects = (await fixture.proxy?.cluster.member(member.id)?.readData(STATE_LABEL, 2000)) ?? [];
      assert.equal(objects.length, 1, `${member.id} holds ${objects.length} state documents`);
      const onToken = JSON.parse(Buffer.from(objects[0] as string, 'base64').toString('utf8')) as { version: number };
      assert.equal(onToken.version, reader.current.version, `${member.id} is at the newest version`);
    }
  });
});
