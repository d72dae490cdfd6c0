import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { readAuditRecords } from '../../helpers/test-env.js';
import { requestMetadata, sealedFrom } from '../../helpers/xks-client.js';

const POLICY = `
version: 1
defaultEffect: deny
statements:
  - id: allow-account-123456789012
    effect: allow
    actions: ["xks:*"]
    resources: ["keystore/dev/key/*"]
    conditions:
      ArnLike:
        awsPrincipalArn: ["arn:aws:iam::123456789012:*"]
  - id: deny-s3
    effect: deny
    actions: ["xks:Decrypt"]
    conditions:
      StringEquals:
        kmsViaService: s3
`;

describe('secondary authorization (policy) on request metadata', () => {
  let fixture: ProxyFixture;
  before(async () => {
    fixture = await createFixture({ name: 'xks-authorization', policy: POLICY });
  });
  after(async () => {
    await fixture.close();
  });

  it('allows the principal the policy allows', async () => {
    const response = await fixture.client.encrypt('foo', { plaintext: randomBytes(32) });
    assert.equal(response.status, 200, response.text);
  });

  it('denies another account with AccessDeniedException and audits the default-deny decision', async () => {
    const kmsRequestId = randomUUID();
    const response = await fixture.client.post('keys/foo/encrypt', {
      requestMetadata: { ...requestMetadata('Encrypt'), awsPrincipalArn: 'arn:aws:iam::999999999999:user/Mallory', kmsRequestId },
      plaintext: randomBytes(32).toString('base64'),
      encryptionAlgorithm: 'AES_GCM',
    });
    assert.equal(response.status, 403);
    assert.equal(response.body['errorName'], 'AccessDeniedException');
    const record = readAuditRecords(fixture.auditFile).find((entry) => entry['kmsRequestId'] === kmsRequestId);
    assert.equal(record?.['errorName'], 'AccessDeniedException');
    assert.match(String(record?.['reason']), /default effect deny/);
  });

  it('an explicit deny beats the allow, and the audit record names the statement', async () => {
    const sealed = sealedFrom(await fixture.client.encrypt('foo', { plaintext: randomBytes(32) }));
    const kmsRequestId = randomUUID();
    const response = await fixture.client.post('keys/foo/decrypt', {
      requestMetadata: { ...requestMetadata('Decrypt'), kmsViaService: 's3', kmsRequestId },
      ciphertext: sealed.ciphertext,
      initializationVector: sealed.iv,
      authenticationTag: sealed.tag,
      ciphertextMetadata: sealed.metadata,
      encryptionAlgorithm: 'AES_GCM',
    });
    assert.equal(response.status, 403);
    assert.equal(response.body['errorName'], 'AccessDeniedException');
    const record = readAuditRecords(fixture.auditFile).find((entry) => entry['kmsRequestId'] === kmsRequestId);
    assert.equal(record?.['policyStatement'], 'deny-s3');
  });

  it('GetKeyMetadata is authorized too', async () => {
    const response = await fixture.client.post('keys/foo/metadata', {
      requestMetadata: { ...requestMetadata('DescribeKey'), awsPrincipalArn: 'arn:aws:iam::999999999999:root' },
    });
    assert.equal(response.status, 403);
  });

  it('GetHealthStatus is exempt from authorization (spec)', async () => {
    const response = await fixture.client.health();
    assert.equal(response.status, 200);
  });

  it('an invalid policy is rejected on reload and the old policy stays in force', async () => {
    writeFileSync(join(fixture.dev.dir, 'policy.yaml'), 'version: 1\nstatements:\n  - id: x\n    effect: perhaps\n    actions: ["xks:*"]\n');
    const result = await fixture.proxy?.reload();
    assert.equal(result?.ok, false);
    assert.ok(result?.issues.some((issue) => issue.includes('statements[0].effect')), JSON.stringify(result?.issues));
    const denied = await fixture.client.post('keys/foo/metadata', {
      requestMetadata: { ...requestMetadata('DescribeKey'), awsPrincipalArn: 'arn:aws:iam::999999999999:root' },
    });
    assert.equal(denied.status, 403, 'the old policy still denies');
  });
});
