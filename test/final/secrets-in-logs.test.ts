import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { testOutputDir } from '../helpers/test-env.js';

/**
 * Runs last. Every secret, PIN, private key, key material, plaintext and AAD
 * that any test used was registered under test-output/secrets; every proxy,
 * agent, CLI and audit log of the run is under test-output/logs. None of the
 * former may appear in any of the latter, in Base64 or in hex.
 */

interface Registered {
  kind: string;
  text: string;
  hex?: string;
  from: string;
}

test('no secret or plaintext used by the suite appears in any log it produced', () => {
  const dir = testOutputDir();
  const secretsDir = join(dir, 'secrets');
  const logsDir = join(dir, 'logs');
  const secrets: Registered[] = existsSync(secretsDir)
    ? readdirSync(secretsDir).flatMap((file) =>
        readFileSync(join(secretsDir, file), 'utf8')
          .split('\n')
          .filter((line) => line !== '')
          .map((line) => JSON.parse(line) as Registered),
      )
    : [];
  const logs = existsSync(logsDir) ? readdirSync(logsDir).map((file) => ({ file, text: readFileSync(join(logsDir, file), 'utf8') })) : [];

  // The check is only meaningful if the suite actually produced both.
  assert.ok(secrets.length > 0, 'no secrets were registered: the suite did not run its proxies');
  assert.ok(logs.some((log) => log.text.length > 0), 'no logs were written');
  const kinds = new Set(secrets.map((secret) => secret.kind));
  for (const kind of ['sigv4-secret', 'pin', 'key-material', 'private-key']) assert.ok(kinds.has(kind), `no ${kind} was registered`);

  const leaks: string[] = [];
  for (const log of logs) {
    const lower = log.text.toLowerCase();
    for (const secret of secrets) {
      if (log.text.includes(secret.text)) leaks.push(`${secret.kind} (registered by ${secret.from}) found in ${log.file}`);
      else if (secret.hex !== undefined && lower.includes(secret.hex.toLowerCase())) leaks.push(`${secret.kind} (hex, registered by ${secret.from}) found in ${log.file}`);
    }
  }
  assert.deepEqual(leaks, [], `secrets leaked into logs:\n${leaks.join('\n')}`);
  const lines = logs.reduce((total, log) => total + log.text.split('\n').length, 0);
  process.stdout.write(`# searched ${lines} log lines in ${logs.length} files for ${secrets.length} registered secrets\n`);
});
