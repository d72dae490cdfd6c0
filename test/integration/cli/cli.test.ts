import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli, startCli } from '../../helpers/cli.js';
import { createFixture, newCredential, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { registerSecret } from '../../helpers/test-env.js';
import { XksTestClient } from '../../helpers/xks-client.js';

describe('hyok-proxy CLI', () => {
  let fixture: ProxyFixture;
  let config: string;
  before(async () => {
    // The environment only: the CLI runs its own processes against these tokens.
    fixture = await createFixture({ name: 'cli', start: false });
    config = fixture.configFile;
  });
  after(async () => {
    await fixture.close();
  });

  it('prints --help for every command', () => {
    const commands = [[], ['serve'], ['kms-config'], ['keys'], ['keys', 'create'], ['keys', 'import'], ['keys', 'check'], ['audit', 'verify'], ['policy', 'explain']];
    for (const command of commands) {
      const result = runCli([...command, '--help']);
      assert.equal(result.status, 0, `${command.join(' ')} --help: ${result.stderr}`);
      assert.match(result.stdout, /Usage: hyok-proxy/);
    }
  });

  it('kms-config prints the JSON the AWS KMS console accepts', () => {
    const result = runCli(['kms-config', '--prefix', '/keystores/dev', '--config', config], { secretOutput: true });
    assert.equal(result.status, 0, result.stderr);
    const file = JSON.parse(result.stdout) as { XksProxyUriPath: string; XksProxyAuthenticationCredential: { AccessKeyId: string; RawSecretAccessKey: string } };
    assert.equal(file.XksProxyUriPath, '/keystores/dev/kms/xks/v1');
    assert.equal(file.XksProxyAuthenticationCredential.AccessKeyId, fixture.credential.accessKeyId);
    assert.equal(file.XksProxyAuthenticationCredential.RawSecretAccessKey, fixture.credential.secretAccessKey);
    assert.match(file.XksProxyAuthenticationCredential.AccessKeyId, /^[A-Z2-7]{20,30}$/);
    assert.match(file.XksProxyAuthenticationCredential.RawSecretAccessKey, /^[A-Za-z0-9/+=]{43,64}$/);
  });

  it('kms-config with an unknown prefix fails and says why', () => {
    const result = runCli(['kms-config', '--prefix', '/nope', '--config', config]);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /no key store with uriPrefix '\/nope'/);
  });

  it('keys create generates a non-extractable key in one token; keys check flags it as missing elsewhere', () => {
    const created = runCli(['keys', 'create', '--label', 'made-in-hsm', '--token', 'hyok-dev-1', '--config', config]);
    assert.equal(created.status, 0, created.stderr);
    assert.match(created.stdout, /softhsm-1\tmade-in-hsm\tKCV [0-9a-f]{6}/);
    const check = runCli(['keys', 'check', '--config', config]);
    assert.equal(check.status, 1, 'a key missing on two members is a problem');
    const line = check.stdout.split('\n').find((entry) => entry.startsWith('made-in-hsm\t'));
    assert.match(line ?? '', /MISSING on softhsm-2,softhsm-3/);
    assert.doesNotMatch(line ?? '', /EXTRACTABLE/);
  });

  it('keys import --all puts identical material on every member (same KCV everywhere)', () => {
    const imported = runCli(['keys', 'import', '--label', 'shared-key', '--all', '--config', config]);
    assert.equal(imported.status, 0, imported.stderr);
    const kcvs = [...imported.stdout.matchAll(/KCV ([0-9a-f]+)/g)].map((match) => match[1]);
    assert.equal(kcvs.length, 3);
    assert.equal(new Set(kcvs).size, 1);
    const check = runCli(['keys', 'check', '--config', config]);
    assert.match(check.stdout, /^shared-key\t.*\tok$/m);
    assert.match(check.stdout, /^foo\t.*\tok$/m, 'the dev keys are identical on every member');
  });

  it('keys check flags a label whose material differs between members', () => {
    const first = join(fixture.dir, 'material-1.hex');
    const second = join(fixture.dir, 'material-2.hex');
    const a = randomBytes(32);
    const b = randomBytes(32);
    registerSecret('key-material', a);
    registerSecret('key-material', b);
    writeFileSync(first, a.toString('hex'));
    writeFileSync(second, b.toString('hex'));
    assert.equal(runCli(['keys', 'import', '--label', 'split-key', '--token', 'softhsm-1', '--material-file', first, '--config', config]).status, 0);
    assert.equal(runCli(['keys', 'import', '--label', 'split-key', '--token', 'softhsm-2', '--material-file', second, '--config', config]).status, 0);
    assert.equal(runCli(['keys', 'import', '--label', 'split-key', '--token', 'softhsm-3', '--material-file', first, '--config', config]).status, 0);
    const check = runCli(['keys', 'check', '--config', config]);
    assert.equal(check.status, 1);
    assert.match(check.stdout, /^split-key\t.*KCV MISMATCH/m);
  });

  it('keys import refuses a label that already exists', () => {
    const result = runCli(['keys', 'import', '--label', 'foo', '--token', 'hyok-dev-1', '--config', config]);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /already exists/);
  });

  it('a bad config is reported with the file, the field and what was expected', () => {
    const bad = join(fixture.dir, 'bad.yaml');
    writeFileSync(bad, readFileSync(config, 'utf8').replace(/port: 0/, 'port: "eighty"').replace('keyStores:', 'keyStorez: []\nkeyStores:'));
    const result = runCli(['serve', '--config', bad]);
    assert.equal(result.status, 1);
    assert.match(result.stderr, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: server.port: .*expected number`));
    assert.match(result.stderr, /Unrecognized key.*keyStorez/);
  });

  it('serve runs the proxy, reloads credentials on SIGHUP, writes a verifiable audit log and stops cleanly on SIGTERM', async () => {
    const auditFile = join(fixture.dir, 'cli-audit.log');
    const serveConfig = fixture.readConfig();
    serveConfig.audit = { destination: { file: auditFile } };
    serveConfig.logging = { level: 'info', destination: 'stderr' };
    const serveFile = join(fixture.dev.dir, 'config.serve.yaml');
    writeFileSync(serveFile, JSON.stringify(serveConfig));
    const proxy = startCli(['serve', '--config', serveFile], { logName: 'cli-serve' });
    try {
      const [, port] = await proxy.waitFor(/"port":(\d+),.*hyok-proxy serving/);
      const client = new XksTestClient({ baseUrl: `https://localhost:${port}`, uriPrefix: '/keystores/dev', credential: fixture.credential, ca: fixture.ca });
      assert.equal((await client.encrypt('foo', { plaintext: randomBytes(32) })).status, 200);

      const added = newCredential();
      const secretFile = join(fixture.dev.dir, 'secrets', 'cli-added');
      writeFileSync(secretFile, added.secretAccessKey, { mode: 0o600 });
      serveConfig.keyStores[0]?.credentials.push({ accessKeyId: added.accessKeyId, secretAccessKey: { file: secretFile } });
      writeFileSync(serveFile, JSON.stringify(serveConfig));
      proxy.child.kill('SIGHUP');
      await proxy.waitFor(/configuration reloaded/);
      assert.equal((await client.encrypt('foo', { plaintext: randomBytes(32) }, { credential: added })).status, 200);
    } finally {
      assert.equal(await proxy.stop('SIGTERM'), 0, 'graceful exit');
    }
    assert.match(proxy.output(), /hyok-proxy stopped/);
    const verify = runCli(['audit', 'verify', auditFile]);
    assert.equal(verify.status, 0, verify.stdout);
    assert.match(verify.stdout, /chain intact/);
    const lines = readFileSync(auditFile, 'utf8').split('\n');
    const target = lines.findIndex((line) => line.includes('"outcome":"success"'));
    assert.ok(target > 0, 'the audit log has a successful request record');
    lines[target] = (lines[target] ?? '').replace('"outcome":"success"', '"outcome":"failure"');
    writeFileSync(auditFile, lines.join('\n'));
    const tampered = runCli(['audit', 'verify', auditFile]);
    assert.equal(tampered.status, 1);
    // The edited line still names its predecessor; the line after it no longer matches.
    assert.match(tampered.stdout, new RegExp(`BROKEN at line ${target + 2}`));
  });

  it('policy explain prints the decision and the matching statements', () => {
    const policy = join(fixture.dir, 'policy.yaml');
    writeFileSync(policy, 'version: 1\nstatements:\n  - id: allow-alice\n    effect: allow\n    actions: ["xks:Encrypt"]\n    conditions:\n      StringEquals:\n        awsPrincipalArn: arn:aws:iam::123456789012:user/Alice\n');
    const input = join(fixture.dir, 'request.json');
    writeFileSync(input, JSON.stringify({ action: 'xks:Encrypt', keyStore: 'dev', externalKeyId: 'foo', attributes: { awsPrincipalArn: 'arn:aws:iam::123456789012:user/Alice' } }));
    const result = runCli(['policy', 'explain', '--input', input, '--policy', policy]);
    assert.equal(result.status, 0, result.stderr);
    const explanation = JSON.parse(result.stdout) as { allowed: boolean; statementId: string; matched: Array<{ id: string }> };
    assert.equal(explanation.allowed, true);
    assert.equal(explanation.statementId, 'allow-alice');
    assert.deepEqual(explanation.matched.map((match) => match.id), ['allow-alice']);
  });
});
