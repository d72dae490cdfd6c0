import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { createFixture, newCredential, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { registerSecret } from '../../helpers/test-env.js';
import type { Credential } from '../../helpers/xks-client.js';

/** The spec's rotation sequence: add a second credential, switch KMS over, remove the old one; no restart. */
describe('SigV4 credential rotation without a restart', () => {
  let fixture: ProxyFixture;
  let original: Credential;
  let rotated: Credential;
  let secretFile: string;
  let port: number;

  before(async () => {
    fixture = await createFixture({ name: 'xks-rotation', watchFiles: true });
    original = fixture.credential;
    rotated = newCredential();
    secretFile = join(fixture.dev.dir, 'secrets', 'sigv4-secret-2');
    writeFileSync(secretFile, `${rotated.secretAccessKey}\n`, { mode: 0o600 });
    port = fixture.proxy?.port ?? 0;
  });
  after(async () => {
    await fixture.close();
  });

  const status = async (credential: Credential): Promise<number> =>
    (await fixture.client.encrypt('foo', { plaintext: randomBytes(16) }, { credential })).status;

  it('step 1: with only the original credential configured, the new one is refused', async () => {
    assert.equal(await status(original), 200);
    assert.equal(await status(rotated), 401);
  });

  it('step 2: after adding the new credential and a reload, both are accepted', async () => {
    const config = fixture.readConfig();
    config.keyStores[0]?.credentials.push({ accessKeyId: rotated.accessKeyId, secretAccessKey: { file: secretFile } });
    fixture.writeConfig(config);
    const result = await fixture.proxy?.reload();
    assert.equal(result?.ok, true, JSON.stringify(result?.issues));
    assert.equal(await status(original), 200);
    assert.equal(await status(rotated), 200);
  });

  it('step 3: after removing the original credential, only the new one is accepted', async () => {
    const config = fixture.readConfig();
    const store = config.keyStores[0];
    assert.ok(store !== undefined);
    store.credentials = store.credentials.filter((credential) => credential.accessKeyId !== original.accessKeyId);
    fixture.writeConfig(config);
    assert.equal((await fixture.proxy?.reload())?.ok, true);
    assert.equal(await status(original), 401);
    assert.equal(await status(rotated), 200);
    assert.equal(fixture.proxy?.port, port, 'same listener: no restart');
  });

  it('a changed secret file is picked up by the file watch, without SIGHUP or reload()', async () => {
    const next = { accessKeyId: rotated.accessKeyId, secretAccessKey: randomBytes(32).toString('base64') };
    writeFileSync(secretFile, `${next.secretAccessKey}\n`);
    const deadline = Date.now() + 5000;
    while ((await status(next)) !== 200) {
      assert.ok(Date.now() < deadline, 'the new secret was not picked up within 5 s');
      await sleep(100);
    }
    assert.equal(await status(rotated), 401, 'the replaced secret no longer works');
    rotated = next;
  });

  it('a reload with an invalid credential is rejected and the previous credentials stay in force', async () => {
    const config = fixture.readConfig();
    config.keyStores[0]?.credentials.push({ accessKeyId: 'lowercase-is-invalid', secretAccessKey: { file: secretFile } });
    fixture.writeConfig(config);
    const result = await fixture.proxy?.reload();
    assert.equal(result?.ok, false);
    assert.ok(result?.issues.some((issue) => issue.includes('keyStores[0].credentials[1].accessKeyId')), JSON.stringify(result?.issues));
    assert.equal(await status(rotated), 200);
  });
});

describe('server.tls.watchFiles: false', () => {
  let fixture: ProxyFixture;

  before(async () => {
    fixture = await createFixture({
      name: 'xks-no-watch',
      watchFiles: true,
      configure: (config) => {
        config.server.tls.watchFiles = false;
      },
    });
  });
  after(async () => {
    await fixture.close();
  });

  it('leaves a changed secret file alone until a reload is asked for', async () => {
    const original = fixture.credential;
    const next = { accessKeyId: original.accessKeyId, secretAccessKey: randomBytes(32).toString('base64') };
    registerSecret('sigv4-secret', next.secretAccessKey);
    writeFileSync(fixture.dev.secretFile, `${next.secretAccessKey}\n`);
    // Longer than the watched-file case above ever needed.
    await sleep(1500);
    const status = async (credential: Credential): Promise<number> => (await fixture.client.encrypt('foo', { plaintext: randomBytes(16) }, { credential })).status;
    assert.equal(await status(original), 200, 'the running secret is still the old one');
    assert.equal(await status(next), 401);
    assert.equal((await fixture.proxy?.reload())?.ok, true);
    assert.equal(await status(next), 200);
    assert.equal(await status(original), 401);
  });
});
