import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ConfigError, loadConfig, parseConfigText, readSecret } from '../../../src/config/load.js';
import { DEFAULT_TLS_CIPHERS } from '../../../src/config/schema.js';

// --- fixtures ------------------------------------------------------------------

const SECRET = 'Vw2h9+7Qmq3dC0hS1mJ7pX2y8a/6tQy5zW0lKcB4eRk=';
const SECRET_2 = 'b0T0l2S7nq1xYc9dWm+UeF3pR8kZ4aH6vJ/gQy2sLtE=';
const PIN = 'pin-value-4821-ab';
const SHORT_SECRET = 'tooShortSecretValue0123';
const BAD_CHAR_SECRET = 'Vw2h9+7Qmq3dC0hS1mJ7pX2y8a/6tQy5zW0lKcB4e!k=';
const AKID = 'XKSPROXYTESTACCESSKEY2';
const AKID_2 = 'XKSPROXYSECONDACCESSKEY7';

let dir = '';
let configFile = '';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/** A minimal valid configuration; secret paths are relative to the config file's directory. */
function baseConfig(): JsonObject {
  return {
    server: { tls: { certFile: 'certs/server.crt', keyFile: 'certs/server.key' } },
    hsm: {
      ekmVendor: 'SoftHSM',
      members: [{ id: 'hsm-a', model: 'SoftHSMv2', module: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'xks', pin: { file: 'secrets/pin' } }],
    },
    keyStores: [
      {
        name: 'dev',
        uriPrefix: '/dev',
        credentials: [{ accessKeyId: AKID, secretAccessKey: { file: 'secrets/sigv4' } }],
        keys: [{ id: 'key-1' }],
      },
    ],
  };
}

function member(id: string): JsonObject {
  return { id, model: 'SoftHSMv2', module: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'xks', pin: { file: 'secrets/pin' } };
}

function keyStore(name: string, uriPrefix: string): JsonObject {
  return { name, uriPrefix, credentials: [{ accessKeyId: AKID, secretAccessKey: { file: 'secrets/sigv4' } }], keys: [{ id: 'key-1' }] };
}

/** Navigates to an object inside the config, for targeted edits. */
function at(root: JsonObject, ...path: (string | number)[]): JsonObject {
  let node: Json = root;
  for (const part of path) {
    node = (node as Record<string | number, Json>)[part] as Json;
    assert.ok(node !== null && typeof node === 'object', `fixture path ${path.join('.')} does not exist`);
  }
  return node as JsonObject;
}

function parse(config: JsonObject, env: Record<string, string | undefined> = {}): ReturnType<typeof parseConfigText> {
  return parseConfigText(stringify(config), configFile, env);
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.equal(error.message.includes(error.issues[0] ?? '\u0000'), true, 'the message lists the issues');
    return error;
  }
  assert.fail('expected a ConfigError, but nothing was thrown');
}

/** Asserts one issue is "<file>: <field>: <expected...>" and returns it. */
function assertIssue(error: ConfigError, file: string, field: string, expected: string | RegExp): string {
  const prefix = `${file}: ${field}: `;
  const issue = error.issues.find((candidate) => candidate.startsWith(prefix));
  assert.ok(issue !== undefined, `no issue for ${field}; got:\n${error.issues.join('\n')}`);
  const rest = issue.slice(prefix.length);
  if (typeof expected === 'string') assert.ok(rest.includes(expected), `issue "${issue}" should say "${expected}"`);
  else assert.match(rest, expected);
  return issue;
}

function expectIssue(config: JsonObject, field: string, expected: string | RegExp, env: Record<string, string | undefined> = {}): ConfigError {
  const error = configError(() => parse(config, env));
  assertIssue(error, configFile, field, expected);
  return error;
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'hyok-config-test-'));
  mkdirSync(join(dir, 'secrets'));
  writeFileSync(join(dir, 'secrets', 'pin'), `${PIN}\n`);
  writeFileSync(join(dir, 'secrets', 'sigv4'), `${SECRET}\n`);
  writeFileSync(join(dir, 'secrets', 'sigv4-2'), SECRET_2);
  writeFileSync(join(dir, 'secrets', 'short'), `${SHORT_SECRET}\n`);
  writeFileSync(join(dir, 'secrets', 'bad-char'), BAD_CHAR_SECRET);
  writeFileSync(join(dir, 'secrets', 'empty'), '');
  writeFileSync(join(dir, 'secrets', 'only-newline'), '\n');
  writeFileSync(join(dir, 'secrets', 'two-newlines'), 'abc\n\n');
  writeFileSync(join(dir, 'secrets', 'crlf'), 'abc\r\n');
  writeFileSync(join(dir, 'secrets', 'no-newline'), 'abc');
  writeFileSync(join(dir, 'secrets', 'inner-newline'), 'ab\ncd\n');
  configFile = join(dir, 'hyok.yaml');
  writeFileSync(configFile, stringify(baseConfig()));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

// --- tests ---------------------------------------------------------------------

describe('parseConfigText: a minimal valid configuration', () => {
  it('parses and fills in the documented defaults', () => {
    const { config, file } = parse(baseConfig());
    assert.equal(file, configFile);
    assert.equal(config.server.host, '0.0.0.0');
    assert.equal(config.server.port, 8443);
    assert.equal(config.server.limits.requestBudgetMs, 200);
    assert.equal(config.server.limits.maxBodyBytes, 65_536);
    assert.equal(config.server.limits.maxPlaintextBytes, 8192);
    assert.equal(config.server.limits.maxAadBytes, 16_384);
    assert.equal(config.server.tls.minVersion, 'TLSv1.2');
    assert.deepEqual(config.server.tls.ciphers, [...DEFAULT_TLS_CIPHERS]);
    assert.equal(config.server.tls.clientAuth.mode, 'off');
    assert.deepEqual(config.server.tls.clientAuth.allowedSubjects, { commonNames: [], dnsNames: [] });
    assert.equal(config.server.tls.watchFiles, true);
    assert.equal(config.hsm.callTimeoutMs, 100);
    assert.equal(config.hsm.healthCheck.maxAgeMs, 60_000);
    assert.equal(config.hsm.healthCheck.keyLabel, 'xks-health-check');
    assert.equal(config.hsm.members[0]?.weight, 1);
    assert.equal(config.hsm.members[0]?.agents, 1);
    assert.deepEqual(config.hsm.members[0]?.environment, {});
    assert.equal(config.proxy.vendor, 'hyok-proxy');
    assert.equal(config.proxy.fleetSize, 1);
    assert.equal(config.keyStores[0]?.keys[0]?.enabled, true);
    assert.equal(config.keyStores[0]?.keys[0]?.label, undefined);
    assert.deepEqual(config.keyStores[0]?.rateLimit, { requestsPerSecond: 0, burst: 100 });
    assert.equal(config.policy.file, undefined);
    assert.equal(config.audit.destination, 'stdout');
    assert.equal(config.logging.destination, 'stderr');
    assert.equal(config.logging.level, 'info');
    assert.deepEqual(config.metrics, { enabled: true, host: '127.0.0.1', port: 9464 });
  });

  it('gives each parse its own copy of the default cipher list (no shared default array)', () => {
    const first = parse(baseConfig()).config.server.tls.ciphers;
    const second = parse(baseConfig()).config.server.tls.ciphers;
    assert.notEqual(first, second);
    assert.notEqual(first, DEFAULT_TLS_CIPHERS);
  });

  it('accepts an empty uriPrefix (no prefix)', () => {
    const config = baseConfig();
    at(config, 'keyStores', 0)['uriPrefix'] = '';
    assert.equal(parse(config).config.keyStores[0]?.uriPrefix, '');
  });

  it('checks secrets but does not keep their values in the result', () => {
    const { config } = parse(baseConfig());
    const text = JSON.stringify(config);
    assert.ok(!text.includes(SECRET));
    assert.ok(!text.includes(PIN));
  });

  it('returns a deeply frozen configuration', () => {
    const { config } = parse(baseConfig());
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.server));
    assert.ok(Object.isFrozen(config.server.tls));
    assert.ok(Object.isFrozen(config.server.tls.ciphers));
    assert.ok(Object.isFrozen(config.server.tls.clientAuth.allowedSubjects.commonNames));
    assert.ok(Object.isFrozen(config.hsm.members));
    assert.ok(Object.isFrozen(config.hsm.members[0]));
    assert.ok(Object.isFrozen(config.hsm.members[0]?.pin));
    assert.ok(Object.isFrozen(config.keyStores[0]?.keys[0]));
    assert.throws(() => {
      (config.server as { port: number }).port = 1;
    }, TypeError);
    assert.throws(() => {
      (config.server.tls.ciphers as string[]).push('NULL-SHA');
    }, TypeError);
    assert.throws(() => {
      (config.keyStores[0]?.keys as { id: string }[])[0]!.id = 'other';
    }, TypeError);
    assert.equal(config.server.port, 8443);
  });
});

describe('loadConfig', () => {
  it('reads a file from disk and reports its absolute path', () => {
    const { config, file } = loadConfig(configFile, {});
    assert.equal(file, configFile);
    assert.equal(config.keyStores[0]?.name, 'dev');
  });

  it('names the file when it cannot be read', () => {
    const missing = join(dir, 'does-not-exist.yaml');
    const error = configError(() => loadConfig(missing, {}));
    assert.equal(error.issues.length, 1);
    assert.ok(error.issues[0]?.startsWith(`${missing}: `));
    assert.match(error.issues[0] ?? '', /cannot read the file \(ENOENT\)/);
  });
});

describe('parseConfigText: relative paths', () => {
  it('resolves relative file paths against the config file directory and keeps absolute ones', () => {
    const config = baseConfig();
    const tls = at(config, 'server', 'tls');
    tls['clientAuth'] = { mode: 'required', caFile: 'certs/ca.pem', allowedSubjects: { commonNames: ['kms'] } };
    at(config, 'hsm', 'members', 0)['module'] = 'lib/libsofthsm2.so';
    config['policy'] = { file: 'policy.yaml' };
    config['audit'] = { destination: { file: 'logs/audit.log' } };
    config['logging'] = { destination: { file: '/var/log/hyok/proxy.log' } };
    const { config: parsed } = parse(config);
    assert.equal(parsed.server.tls.certFile, join(dir, 'certs/server.crt'));
    assert.equal(parsed.server.tls.keyFile, join(dir, 'certs/server.key'));
    assert.equal(parsed.server.tls.clientAuth.caFile, join(dir, 'certs/ca.pem'));
    assert.equal(parsed.hsm.members[0]?.module, join(dir, 'lib/libsofthsm2.so'));
    assert.deepEqual(parsed.hsm.members[0]?.pin, { file: join(dir, 'secrets/pin') });
    assert.deepEqual(parsed.keyStores[0]?.credentials[0]?.secretAccessKey, { file: join(dir, 'secrets/sigv4') });
    assert.equal(parsed.policy.file, join(dir, 'policy.yaml'));
    assert.deepEqual(parsed.audit.destination, { file: join(dir, 'logs/audit.log') });
    assert.deepEqual(parsed.logging.destination, { file: '/var/log/hyok/proxy.log' });
  });

  it('finds relative secret files next to the config file, not the working directory', () => {
    // The secrets only exist under `dir`; the process's cwd is elsewhere.
    assert.notEqual(process.cwd(), dir);
    assert.doesNotThrow(() => parse(baseConfig()));
  });

  it('leaves environment-variable secrets as they are', () => {
    const config = baseConfig();
    at(config, 'hsm', 'members', 0)['pin'] = { env: 'HYOK_TEST_PIN' };
    const { config: parsed } = parse(config, { HYOK_TEST_PIN: PIN });
    assert.deepEqual(parsed.hsm.members[0]?.pin, { env: 'HYOK_TEST_PIN' });
  });
});

describe('parseConfigText: environment overrides', () => {
  it('HYOK_LISTEN_HOST and HYOK_LISTEN_PORT override server.host and server.port', () => {
    const config = baseConfig();
    at(config, 'server')['port'] = 9000;
    const { config: parsed } = parse(config, { HYOK_LISTEN_HOST: '127.0.0.1', HYOK_LISTEN_PORT: '18443' });
    assert.equal(parsed.server.host, '127.0.0.1');
    assert.equal(parsed.server.port, 18443);
    assert.equal(parsed.server.tls.certFile, join(dir, 'certs/server.crt'), 'the rest of the server section is kept');
  });

  it('HYOK_METRICS_PORT overrides metrics.port and keeps the other metrics settings', () => {
    const config = baseConfig();
    config['metrics'] = { enabled: false, port: 1 };
    const { config: parsed } = parse(config, { HYOK_METRICS_PORT: '19464' });
    assert.equal(parsed.metrics.port, 19464);
    assert.equal(parsed.metrics.enabled, false);
  });

  it('ignores empty override variables', () => {
    const { config } = parse(baseConfig(), { HYOK_LISTEN_HOST: '', HYOK_LISTEN_PORT: '', HYOK_METRICS_PORT: '' });
    assert.equal(config.server.host, '0.0.0.0');
    assert.equal(config.server.port, 8443);
    assert.equal(config.metrics.port, 9464);
  });

  for (const bad of ['abc', '70000', '-1', '84 43', '1e3', '123456']) {
    it(`rejects HYOK_LISTEN_PORT=${JSON.stringify(bad)} naming the variable and the file`, () => {
      const error = configError(() => parse(baseConfig(), { HYOK_LISTEN_PORT: bad }));
      assert.equal(error.issues.length, 1);
      assert.equal(error.issues[0], `${configFile}: environment HYOK_LISTEN_PORT: expected a port number 0-65535`);
    });
  }

  it('HYOK_ADMIN_PORT overrides admin.port when the file has an admin section, and adds none otherwise', () => {
    const config = baseConfig();
    config['admin'] = { enabled: false, port: 9443 };
    const { config: parsed } = parse(config, { HYOK_ADMIN_PORT: '0' });
    assert.equal(parsed.admin.port, 0);
    assert.equal(parsed.admin.enabled, false);
    const { config: without } = parse(baseConfig(), { HYOK_ADMIN_PORT: '19443' });
    assert.equal(without.admin.port, 9443, 'the default, untouched');
    assert.equal(without.admin.enabled, false);
    assert.match(configError(() => parse(config, { HYOK_ADMIN_PORT: 'x' })).issues[0] ?? '', /environment HYOK_ADMIN_PORT: expected a port number/);
  });

  it('rejects a bad HYOK_METRICS_PORT naming that variable', () => {
    const error = configError(() => parse(baseConfig(), { HYOK_METRICS_PORT: 'nine' }));
    assert.match(error.issues[0] ?? '', /environment HYOK_METRICS_PORT: expected a port number/);
  });
});

describe('parseConfigText: errors name the file, the field and what was expected', () => {
  it('rejects an unknown key at the top level', () => {
    const config = baseConfig();
    config['sever'] = {};
    const issue = assertIssue(configError(() => parse(config)), configFile, '(root)', 'Unrecognized key');
    assert.ok(issue.includes('sever'));
  });

  it('rejects an unknown key deep inside (server.tls.clientAuth)', () => {
    const config = baseConfig();
    at(config, 'server', 'tls')['clientAuth'] = { mode: 'off', requireCert: true };
    const issue = expectIssue(config, 'server.tls.clientAuth', 'Unrecognized key').issues.join('\n');
    assert.ok(issue.includes('requireCert'));
  });

  it('rejects an unknown key inside an array element (keyStores[0].keys[0])', () => {
    const config = baseConfig();
    at(config, 'keyStores', 0, 'keys', 0)['lable'] = 'x';
    expectIssue(config, 'keyStores[0].keys[0]', 'Unrecognized key');
  });

  it('rejects an unknown key in a secret reference', () => {
    const config = baseConfig();
    at(config, 'hsm', 'members', 0)['pin'] = { file: 'secrets/pin', value: 'inline' };
    const error = configError(() => parse(config));
    assert.ok(error.issues.some((issue) => issue.startsWith(`${configFile}: hsm.members[0].pin`)), error.issues.join('\n'));
  });

  it('rejects a missing required section', () => {
    const config = baseConfig();
    delete config['hsm'];
    expectIssue(config, 'hsm', /expected object/);
  });

  it('rejects a wrongly typed value', () => {
    const config = baseConfig();
    at(config, 'server')['port'] = '8443';
    expectIssue(config, 'server.port', /expected number/);
  });

  for (const bad of ['akidlowercaseletters', 'XKSPROXYTESTACCESSKEY1', 'SHORT234', 'X'.repeat(31)]) {
    it(`rejects the access key id ${JSON.stringify(bad)}`, () => {
      const config = baseConfig();
      at(config, 'keyStores', 0, 'credentials', 0)['accessKeyId'] = bad;
      expectIssue(config, 'keyStores[0].credentials[0].accessKeyId', "must be 20-30 characters of 'A'-'Z' and '2'-'7'");
    });
  }

  it('rejects a duplicate access key id within a key store', () => {
    const config = baseConfig();
    at(config, 'keyStores', 0)['credentials'] = [
      { accessKeyId: AKID, secretAccessKey: { file: 'secrets/sigv4' } },
      { accessKeyId: AKID, secretAccessKey: { file: 'secrets/sigv4-2' } },
    ];
    expectIssue(config, 'keyStores[0].credentials[1].accessKeyId', 'duplicates another access key id');
  });

  it('accepts two different credentials on one key store (rotation)', () => {
    const config = baseConfig();
    at(config, 'keyStores', 0)['credentials'] = [
      { accessKeyId: AKID, secretAccessKey: { file: 'secrets/sigv4' } },
      { accessKeyId: AKID_2, secretAccessKey: { file: 'secrets/sigv4-2' } },
    ];
    assert.equal(parse(config).config.keyStores[0]?.credentials.length, 2);
  });

  it('names the field and the file of a missing secret file, and nothing of any secret', () => {
    const config = baseConfig();
    at(config, 'keyStores', 0, 'credentials', 0)['secretAccessKey'] = { file: 'secrets/missing' };
    const error = configError(() => parse(config));
    const issue = assertIssue(error, configFile, 'keyStores[0].credentials[0].secretAccessKey', 'cannot read secret file');
    assert.ok(issue.includes(join(dir, 'secrets/missing')), 'the message names the secret file (resolved)');
    assert.ok(issue.includes('ENOENT'));
    assert.ok(!error.message.includes(SECRET));
    assert.ok(!error.message.includes(PIN));
  });

  it('names the field and the variable of a missing secret environment variable', () => {
    const config = baseConfig();
    at(config, 'hsm', 'members', 0)['pin'] = { env: 'HYOK_TEST_PIN' };
    expectIssue(config, 'hsm.members[0].pin', 'environment variable HYOK_TEST_PIN is not set', {});
    expectIssue(config, 'hsm.members[0].pin', 'environment variable HYOK_TEST_PIN is not set', { HYOK_TEST_PIN: '' });
  });

  it('rejects an inline secret without echoing it', () => {
    const config = baseConfig();
    at(config, 'hsm', 'members', 0)['pin'] = PIN;
    const error = configError(() => parse(config));
    assert.ok(error.issues.some((issue) => issue.startsWith(`${configFile}: hsm.members[0].pin: `)), error.issues.join('\n'));
    assert.ok(!error.message.includes(PIN));
  });

  // The SecretRefSchema union reports zod's bare "Invalid input", which does not say what was expected.
  it('says what a secret reference must look like when it is written inline', () => {
    const config = baseConfig();
    at(config, 'hsm', 'members', 0)['pin'] = PIN;
    expectIssue(config, 'hsm.members[0].pin', /env.*file|file.*env/);
  });

  it('rejects an invalid environment variable name in a secret reference', () => {
    const config = baseConfig();
    at(config, 'hsm', 'members', 0)['pin'] = { env: 'NOT-A-NAME' };
    const error = configError(() => parse(config));
    assert.ok(error.issues.some((issue) => issue.startsWith(`${configFile}: hsm.members[0].pin`)), error.issues.join('\n'));
  });

  it('rejects an empty secret file', () => {
    const config = baseConfig();
    at(config, 'hsm', 'members', 0)['pin'] = { file: 'secrets/only-newline' };
    expectIssue(config, 'hsm.members[0].pin', 'is empty');
  });

  it('rejects a secret access key that is too short without echoing it', () => {
    const config = baseConfig();
    at(config, 'keyStores', 0, 'credentials', 0)['secretAccessKey'] = { file: 'secrets/short' };
    const error = expectIssue(config, 'keyStores[0].credentials[0].secretAccessKey', '43-64 characters');
    assert.ok(!error.message.includes(SHORT_SECRET));
    assert.ok(!error.message.includes(SHORT_SECRET.slice(0, 12)));
  });

  it('rejects a secret access key with a character outside the alphabet without echoing it', () => {
    const config = baseConfig();
    at(config, 'keyStores', 0, 'credentials', 0)['secretAccessKey'] = { env: 'HYOK_TEST_SECRET' };
    const error = expectIssue(config, 'keyStores[0].credentials[0].secretAccessKey', '43-64 characters', { HYOK_TEST_SECRET: BAD_CHAR_SECRET });
    assert.ok(!error.message.includes(BAD_CHAR_SECRET));
  });

  it('reports every broken secret at once', () => {
    const config = baseConfig();
    at(config, 'hsm', 'members', 0)['pin'] = { env: 'HYOK_TEST_PIN' };
    at(config, 'keyStores', 0, 'credentials', 0)['secretAccessKey'] = { file: 'secrets/missing' };
    const error = configError(() => parse(config));
    assertIssue(error, configFile, 'hsm.members[0].pin', 'HYOK_TEST_PIN');
    assertIssue(error, configFile, 'keyStores[0].credentials[0].secretAccessKey', 'cannot read secret file');
  });

  it('rejects a duplicate uriPrefix across key stores', () => {
    const config = baseConfig();
    config['keyStores'] = [keyStore('one', '/same'), keyStore('two', '/same')];
    expectIssue(config, 'keyStores[1].uriPrefix', 'is already used by keyStores[0]');
  });

  it('rejects a duplicate key store name', () => {
    const config = baseConfig();
    config['keyStores'] = [keyStore('one', '/a'), keyStore('one', '/b')];
    expectIssue(config, 'keyStores[1].name', "duplicates key store name 'one'");
  });

  it('rejects duplicate HSM member ids', () => {
    const config = baseConfig();
    at(config, 'hsm')['members'] = [member('hsm-a'), member('hsm-b'), member('hsm-a')];
    expectIssue(config, 'hsm.members[2].id', "duplicates member id 'hsm-a'");
  });

  it('rejects duplicate key ids within a key store', () => {
    const config = baseConfig();
    at(config, 'keyStores', 0)['keys'] = [{ id: 'key-1' }, { id: 'key-2' }, { id: 'key-1' }];
    expectIssue(config, 'keyStores[0].keys[2].id', "duplicates key id 'key-1'");
  });

  it('allows the same key id in two different key stores', () => {
    const config = baseConfig();
    config['keyStores'] = [keyStore('one', '/a'), keyStore('two', '/b')];
    assert.doesNotThrow(() => parse(config));
  });

  it('rejects a key id with characters outside the XKS externalKeyId alphabet', () => {
    const config = baseConfig();
    at(config, 'keyStores', 0)['keys'] = [{ id: 'key/1' }];
    expectIssue(config, 'keyStores[0].keys[0].id', 'XKS externalKeyId');
  });

  for (const bad of ['dev', '/dev/', '/dev store', '/a//b', '/dev.1', '/dév', '/kms?x=1']) {
    it(`rejects the uriPrefix ${JSON.stringify(bad)}`, () => {
      const config = baseConfig();
      at(config, 'keyStores', 0)['uriPrefix'] = bad;
      expectIssue(config, 'keyStores[0].uriPrefix', 'must be empty or "/segment[/segment...]"');
    });
  }

  it('accepts a multi-segment uriPrefix', () => {
    const config = baseConfig();
    at(config, 'keyStores', 0)['uriPrefix'] = '/key_stores/sales-1/EU';
    assert.equal(parse(config).config.keyStores[0]?.uriPrefix, '/key_stores/sales-1/EU');
  });

  it('accepts a uriPrefix that makes XksProxyUriPath exactly 128 characters', () => {
    const config = baseConfig();
    const prefix = `/${'a'.repeat(128 - '/kms/xks/v1'.length - 1)}`;
    assert.equal(prefix.length + '/kms/xks/v1'.length, 128);
    at(config, 'keyStores', 0)['uriPrefix'] = prefix;
    assert.equal(parse(config).config.keyStores[0]?.uriPrefix, prefix);
  });

  it('rejects a uriPrefix that makes XksProxyUriPath 129 characters', () => {
    const config = baseConfig();
    const prefix = `/${'a'.repeat(128 - '/kms/xks/v1'.length)}`;
    assert.equal(prefix.length + '/kms/xks/v1'.length, 129);
    at(config, 'keyStores', 0)['uriPrefix'] = prefix;
    expectIssue(config, 'keyStores[0].uriPrefix', 'longer than 128 characters');
  });

  it('accepts ten HSM members and rejects eleven', () => {
    const ten = baseConfig();
    at(ten, 'hsm')['members'] = Array.from({ length: 10 }, (_, index) => member(`hsm-${index}`));
    assert.equal(parse(ten).config.hsm.members.length, 10);
    const eleven = baseConfig();
    at(eleven, 'hsm')['members'] = Array.from({ length: 11 }, (_, index) => member(`hsm-${index}`));
    expectIssue(eleven, 'hsm.members', 'at most ten members');
  });

  it('rejects an empty member list', () => {
    const config = baseConfig();
    at(config, 'hsm')['members'] = [];
    expectIssue(config, 'hsm.members', /Too small/);
  });

  for (const mode of ['required', 'optional'] as const) {
    it(`rejects clientAuth mode '${mode}' without a caFile`, () => {
      const config = baseConfig();
      at(config, 'server', 'tls')['clientAuth'] = { mode, allowedSubjects: { commonNames: ['kms.amazonaws.com'] } };
      expectIssue(config, 'server.tls.clientAuth.caFile', `is required when mode is '${mode}'`);
    });

    it(`rejects clientAuth mode '${mode}' without allowed subjects`, () => {
      const config = baseConfig();
      at(config, 'server', 'tls')['clientAuth'] = { mode, caFile: 'ca.pem' };
      expectIssue(config, 'server.tls.clientAuth.allowedSubjects', 'must list at least one commonName or dnsName');
    });
  }

  it("accepts clientAuth mode 'required' with a caFile and a dnsName", () => {
    const config = baseConfig();
    at(config, 'server', 'tls')['clientAuth'] = { mode: 'required', caFile: 'ca.pem', allowedSubjects: { dnsNames: ['kms.example.com'] } };
    const { config: parsed } = parse(config);
    assert.equal(parsed.server.tls.clientAuth.mode, 'required');
    assert.deepEqual(parsed.server.tls.clientAuth.allowedSubjects, { commonNames: [], dnsNames: ['kms.example.com'] });
  });

  it('rejects an unknown clientAuth mode', () => {
    const config = baseConfig();
    at(config, 'server', 'tls')['clientAuth'] = { mode: 'require' };
    expectIssue(config, 'server.tls.clientAuth.mode', /expected one of/);
  });

  it('rejects healthCheck.maxAgeMs above 60000 (the spec forbids older cached health)', () => {
    const config = baseConfig();
    at(config, 'hsm')['healthCheck'] = { maxAgeMs: 60_001 };
    expectIssue(config, 'hsm.healthCheck.maxAgeMs', '60000');
    at(config, 'hsm')['healthCheck'] = { maxAgeMs: 60_000 };
    assert.equal(parse(config).config.hsm.healthCheck.maxAgeMs, 60_000);
  });

  it('rejects limits below the spec minimums', () => {
    const config = baseConfig();
    at(config, 'server')['limits'] = { maxPlaintextBytes: 4299, maxAadBytes: 8191 };
    const error = configError(() => parse(config));
    assertIssue(error, configFile, 'server.limits.maxPlaintextBytes', '4300');
    assertIssue(error, configFile, 'server.limits.maxAadBytes', '8192');
  });

  it('reports several problems in one error', () => {
    const config = baseConfig();
    at(config, 'server')['port'] = 70_000;
    at(config, 'keyStores', 0)['uriPrefix'] = 'nope';
    const error = configError(() => parse(config));
    assert.ok(error.issues.length >= 2);
    assertIssue(error, configFile, 'server.port', '65535');
    assertIssue(error, configFile, 'keyStores[0].uriPrefix', 'must be empty');
  });

  it('reports a YAML syntax error with the file name', () => {
    const error = configError(() => parseConfigText('server: [unclosed\nhsm: {}\n', configFile, {}));
    assert.ok(error.issues.length >= 1);
    for (const issue of error.issues) assert.ok(issue.startsWith(`${configFile}: `), issue);
  });

  it('reports a duplicate YAML key with the file name', () => {
    const text = `${stringify(baseConfig())}server:\n  port: 1\n`;
    const error = configError(() => parseConfigText(text, configFile, {}));
    assert.ok(error.issues.some((issue) => issue.startsWith(`${configFile}: `) && /unique/i.test(issue)), error.issues.join('\n'));
  });

  it('reports an empty file as a missing object at the root', () => {
    const error = configError(() => parseConfigText('', configFile, {}));
    assertIssue(error, configFile, '(root)', /expected object/);
  });
});

describe('readSecret', () => {
  const file = (name: string): { file: string } => ({ file: join(dir, 'secrets', name) });

  it('strips exactly one trailing newline', () => {
    assert.equal(readSecret(file('two-newlines'), 'field', {}), 'abc\n');
    assert.equal(readSecret(file('no-newline'), 'field', {}), 'abc');
    assert.equal(readSecret(file('pin'), 'field', {}), PIN);
  });

  it('strips one trailing CRLF', () => {
    assert.equal(readSecret(file('crlf'), 'field', {}), 'abc');
  });

  it('keeps newlines inside the value', () => {
    assert.equal(readSecret(file('inner-newline'), 'field', {}), 'ab\ncd');
  });

  it('reads environment variables verbatim', () => {
    assert.equal(readSecret({ env: 'X_SECRET' }, 'field', { X_SECRET: ' value\n' }), ' value\n');
  });

  it('rejects an empty file, naming the field and the file', () => {
    const error = configError(() => readSecret(file('empty'), 'my.field', {}));
    assert.equal(error.issues[0], `my.field: secret file ${join(dir, 'secrets', 'empty')} is empty`);
  });

  it('names the field and file when the file is missing', () => {
    const error = configError(() => readSecret(file('nope'), 'my.field', {}));
    assert.equal(error.issues[0], `my.field: cannot read secret file ${join(dir, 'secrets', 'nope')} (ENOENT)`);
  });
});
