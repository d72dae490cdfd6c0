import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { adminCall, adminRaw } from '../../helpers/admin.js';
import { startCli } from '../../helpers/cli.js';
import { fromRoot } from '../../../src/lib/paths.js';
import { registerSecret } from '../../helpers/test-env.js';
import { assertConforms } from '../../helpers/xks-client.js';

/** `npm start` with no config: the embedded dev setup, exercised with curl --aws-sigv4 as the public test client does. */
describe('the embedded dev default', () => {
  const devDir = join(mkdtempSync(join(tmpdir(), 'hyok-devdefault-')), 'dev');
  const env = { HYOK_DEV_DIR: devDir, HYOK_LISTEN_PORT: '0', HYOK_METRICS_PORT: '0', HYOK_ADMIN_PORT: '0' };
  after(() => rmSync(join(devDir, '..'), { recursive: true, force: true }));

  let accessKeyId = '';

  it('creates var/dev, serves, writes the test-client env file and prints a curl example', async () => {
    const proxy = startCli(['serve'], { env, logName: 'dev-default' });
    try {
      const [, port] = await proxy.waitFor(/ready on https:\/\/localhost:(\d+)\/keystores\/dev\/kms\/xks\/v1/);
      await proxy.waitFor(/curl --silent \$SECURE \$MTLS/);
      const envFile = join(devDir, 'xks-test-client.env');
      assert.equal(statSync(envFile).mode & 0o777, 0o600, 'the env file holds a secret: owner only');
      const text = readFileSync(envFile, 'utf8');
      const vars = Object.fromEntries([...text.matchAll(/^export (\w+)="(.*)"$/gm)].map((match) => [match[1], match[2]]));
      for (const name of ['XKS_PROXY_HOST', 'URI_PREFIX', 'SIGV4_ACCESS_KEY_ID', 'SIGV4_SECRET_ACCESS_KEY', 'KEY_ID', 'ENCRYPT_ONLY_KEY_ID', 'DECRYPT_ONLY_KEY_ID', 'IMPOTENT_KEY_ID', 'DISABLED_KEY_ID', 'SCHEME', 'SECURE', 'MTLS']) {
        assert.ok(vars[name] !== undefined && vars[name] !== '', `${name} is exported`);
      }
      assert.equal(vars['XKS_PROXY_HOST'], `localhost:${port}`);
      registerSecret('sigv4-secret', vars['SIGV4_SECRET_ACCESS_KEY'] as string);
      accessKeyId = vars['SIGV4_ACCESS_KEY_ID'] as string;
      assert.doesNotMatch(proxy.output(), new RegExp(vars['SIGV4_SECRET_ACCESS_KEY']?.replace(/[+/=]/g, '\\$&') ?? 'x'), 'the secret is not printed');

      // The printed example, as a user would paste it: curl signs content-type;host;x-amz-date.
      const example = proxy.output().slice(proxy.output().indexOf('source ')).split('\n').filter((line) => !line.startsWith('{')).join('\n');
      const script = example.slice(0, example.indexOf('/encrypt"') + '/encrypt"'.length);
      const body = execFileSync('bash', ['-c', script], { encoding: 'utf8', timeout: 20_000 });
      const response = JSON.parse(body) as Record<string, unknown>;
      assertConforms('/keystores/dev/kms/xks/v1/keys/foo/encrypt', 'POST', 200, response);
      assert.equal(typeof response['ciphertext'], 'string');

      // With the client certificate from the env file (mTLS) too.
      const mtls = execFileSync('bash', ['-c', `source ${envFile}; curl --silent --fail $SECURE $MTLS --aws-sigv4 "aws:amz:us-east-1:kms-xks-proxy" --user "$SIGV4_ACCESS_KEY_ID:$SIGV4_SECRET_ACCESS_KEY" -H "Content-Type: application/json" --data '{"requestMetadata":{"kmsOperation":"KmsHealthCheck","kmsRequestId":"r1"}}' "$SCHEME$XKS_PROXY_HOST/$URI_PREFIX/kms/xks/v1/health"`], { encoding: 'utf8', timeout: 20_000 });
      const health = JSON.parse(mtls) as Record<string, unknown>;
      assertConforms('/keystores/dev/kms/xks/v1/health', 'POST', 200, health);
      assert.equal((health['ekmFleetDetails'] as unknown[]).length, 3);

      // The SRE console, logged into with a token from `hyok-proxy dev-token` (printed, never logged).
      const [, adminPort] = await proxy.waitFor(/\[dev\] SRE console: https:\/\/localhost:(\d+)\/console/);
      const adminUrl = `https://127.0.0.1:${adminPort}`;
      const ca = readFileSync(join(devDir, 'pki', 'ca.pem'), 'utf8');
      const token = execFileSync(process.execPath, [fromRoot('dist', 'src', 'main.js'), 'dev-token', '--role', 'operator', 'auditor', '--ttl', '5'], {
        env: { ...process.env, ...env },
        encoding: 'utf8',
      }).trim();
      registerSecret('signature', token.split('.')[2] as string);
      const me = await adminCall(adminUrl, ca, 'GET', '/admin/v1/whoami', { token });
      assert.equal(me.status, 200, JSON.stringify(me.body));
      assert.deepEqual(me.body['roles'], ['auditor', 'operator']);
      assert.equal(me.body['actor'], 'dev-operator');
      const login = await adminRaw(adminUrl, ca, 'POST', '/console/session', { 'x-hyok-console': '1' }, JSON.stringify({ token }));
      assert.equal(login.status, 200, login.text);
      const page = await adminRaw(adminUrl, ca, 'GET', '/console', { cookie: String(login.headers['set-cookie']).split(';')[0] as string });
      assert.equal(page.status, 200);
      assert.doesNotMatch(proxy.output(), new RegExp(token.split('.')[2] as string), 'the token is not in the proxy output');
    } finally {
      const code = await proxy.stop();
      assert.equal(code, 0, `stopped by SIGTERM: exit ${String(code)}, signal ${String(proxy.child.signalCode)}\n${proxy.output().slice(-1500)}`);
    }
  });

  it('reuses var/dev on the next start (same credentials, same tokens)', async () => {
    const proxy = startCli(['serve'], { env, logName: 'dev-default' });
    try {
      await proxy.waitFor(/reusing the dev environment/);
      await proxy.waitFor(/ready on https:\/\/localhost:\d+/);
      const text = readFileSync(join(devDir, 'xks-test-client.env'), 'utf8');
      assert.match(text, new RegExp(`SIGV4_ACCESS_KEY_ID="${accessKeyId}"`));
    } finally {
      const code = await proxy.stop();
      assert.equal(code, 0, `stopped by SIGTERM: exit ${String(code)}, signal ${String(proxy.child.signalCode)}\n${proxy.output().slice(-1500)}`);
    }
  });
});
