import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { readAuditRecords } from '../../helpers/test-env.js';

describe('concurrency', () => {
  let fixture: ProxyFixture;
  before(async () => {
    fixture = await createFixture({ name: 'xks-concurrency' });
  });
  after(async () => {
    await fixture.close();
  });

  it('300 parallel encrypt/decrypt round trips all succeed with the right plaintext, spread over all members', async () => {
    const plaintexts = Array.from({ length: 300 }, () => randomBytes(32));
    const results = await Promise.all(
      plaintexts.map((plaintext, index) => fixture.client.roundTrip('foo', plaintext, index % 2 === 0 ? randomBytes(24) : undefined)),
    );
    const members = new Set<string>();
    results.forEach(({ decrypted }, index) => {
      assert.equal(decrypted.status, 200, decrypted.text);
      assert.equal(decrypted.body['plaintext'], plaintexts[index]?.toString('base64'));
    });
    for (const record of readAuditRecords(fixture.auditFile)) {
      if (typeof record['hsmMember'] === 'string') members.add(record['hsmMember']);
    }
    assert.equal(members.size, 3, `work spread over ${[...members].join(', ')}`);
    for (const member of fixture.proxy?.cluster.snapshot() ?? []) assert.equal(member.inFlight, 0);
  });
});
