import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { ensureDevEnvironment, randomAccessKeyId, randomSecretAccessKey, type DevEnvironment } from '../../src/dev/bootstrap.js';
import { runTokenAdmin } from '../../src/hsm/token-admin.js';
import { startProxy, type RunningProxy } from '../../src/proxy.js';
import { FaultControl, faultShimPath } from './fault-shim.js';
import { logFile, registerSecret, testLogger } from './test-env.js';
import { XksTestClient, type Credential } from './xks-client.js';

/**
 * A real proxy for one test file: the dev environment (three SoftHSM tokens
 * with identical keys, dev PKI) in a temp dir, a config with ephemeral ports,
 * logs and audit under test-output/, and a signing client.
 */

export interface FixtureOptions {
  /** Names the log files. */
  readonly name: string;
  /** Adjusts the generated config before the proxy starts. */
  readonly configure?: (config: ConfigInput, dev: DevEnvironment) => void;
  /** Policy file contents (YAML); written next to the config and referenced from it. */
  readonly policy?: string;
  /** Start the proxy (default true); false to only prepare the environment. */
  readonly start?: boolean;
  /** Put the PKCS#11 fault-injection shim in front of every member's SoftHSM (see test/helpers/fault-shim.ts). */
  readonly faultInjection?: boolean;
  /** Let the proxy reload by itself when its files change. */
  readonly watchFiles?: boolean;
}

export interface ProxyFixture {
  readonly dir: string;
  readonly dev: DevEnvironment;
  readonly configFile: string;
  readonly auditFile: string;
  readonly credential: Credential;
  readonly ca: string;
  readonly clientCertificate: { readonly cert: string; readonly key: string };
  /** Key material of the "canary" key imported into every token; must never be logged. */
  readonly canaryMaterial: Buffer;
  proxy: RunningProxy | undefined;
  client: XksTestClient;
  /** Per member id, when faultInjection is on. */
  readonly faults: ReadonlyMap<string, FaultControl>;
  readConfig(): ConfigInput;
  writeConfig(config: ConfigInput): void;
  /** (Re)starts the proxy with the current config file. */
  startProxy(): Promise<RunningProxy>;
  close(): Promise<void>;
}

export async function createFixture(options: FixtureOptions): Promise<ProxyFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'hyok-test-'));
  const dev = await ensureDevEnvironment(join(dir, 'dev'));
  const secret = readFileSync(dev.secretFile, 'utf8').trim();
  const pin = readFileSync(dev.pinFile, 'utf8').trim();
  const soPin = readFileSync(join(dev.dir, 'secrets', 'hsm-so-pin'), 'utf8').trim();
  registerSecret('sigv4-secret', secret);
  registerSecret('pin', pin);
  registerSecret('pin', soPin);
  for (const file of ['server-key.pem', 'client-key.pem', 'ca-key.pem']) {
    // The body line after the PEM header is distinctive enough to search for.
    const line = readFileSync(join(dev.dir, 'pki', file), 'utf8').split('\n')[1] ?? '';
    registerSecret('private-key', line);
  }

  // The dev identity provider's private key (the console's dev login) must never be logged either.
  registerSecret('private-key', (JSON.parse(readFileSync(dev.adminSigningKeyFile, 'utf8')) as { d: string }).d);

  const canaryMaterial = randomBytes(32);
  registerSecret('key-material', canaryMaterial);
  for (const tokenLabel of ['hyok-dev-1', 'hyok-dev-2', 'hyok-dev-3']) {
    await runTokenAdmin({ module: dev.modulePath, tokenLabel, pin, environment: { SOFTHSM2_CONF: dev.softhsmConf } }, [
      { op: 'import', label: 'canary', usage: { encrypt: true, decrypt: true }, material: canaryMaterial.toString('base64') },
    ]);
  }

  const configFile = join(dev.dir, 'config.test.yaml');
  const auditFile = logFile(`${options.name}-audit`);
  const config = parse(readFileSync(dev.configFile, 'utf8')) as ConfigInput;
  config.server.port = 0;
  config.metrics = { enabled: true, host: '127.0.0.1', port: 0 };
  // The dev setup's admin API binds a fixed port; a test that wants one configures it.
  config.admin = { enabled: false };
  config.audit = { destination: { file: auditFile } };
  config.logging = { level: 'debug', destination: { file: logFile(options.name) } };
  const keyStore = config.keyStores[0];
  if (keyStore === undefined) throw new Error('dev config has no key store');
  keyStore.keys = [...keyStore.keys, { id: 'canary', enabled: true }];
  const faults = new Map<string, FaultControl>();
  if (options.faultInjection === true) {
    const shim = faultShimPath();
    for (const member of config.hsm.members) {
      const control = new FaultControl(join(dir, `fault-${member.id}`));
      control.pass();
      faults.set(member.id, control);
      member.module = shim;
      member.environment = { ...member.environment, FAULT_SHIM_MODULE: dev.modulePath, FAULT_SHIM_CONTROL: control.file };
    }
  }
  if (options.policy !== undefined) {
    writeFileSync(join(dev.dir, 'policy.yaml'), options.policy);
    config.policy = { file: 'policy.yaml' };
  }
  options.configure?.(config, dev);
  writeFileSync(configFile, stringify(config));

  const ca = readFileSync(dev.caFile, 'utf8');
  const credential = { accessKeyId: dev.accessKeyId, secretAccessKey: secret };
  const clientCertificate = { cert: readFileSync(dev.clientCertFile, 'utf8'), key: readFileSync(dev.clientKeyFile, 'utf8') };

  const fixture: ProxyFixture = {
    dir,
    dev,
    configFile,
    auditFile,
    credential,
    ca,
    clientCertificate,
    canaryMaterial,
    proxy: undefined,
    faults,
    client: new XksTestClient({ baseUrl: 'https://127.0.0.1:1', uriPrefix: dev.uriPrefix, credential, ca }),
    readConfig: () => parse(readFileSync(configFile, 'utf8')) as ConfigInput,
    writeConfig: (next) => writeFileSync(configFile, stringify(next)),
    async startProxy() {
      await fixture.proxy?.close();
      const proxy = await startProxy(loadConfig(configFile), { logger: testLogger(options.name), watchFiles: options.watchFiles === true });
      fixture.proxy = proxy;
      fixture.client = new XksTestClient({ baseUrl: `https://localhost:${proxy.port}`, uriPrefix: dev.uriPrefix, credential, ca });
      return proxy;
    },
    async close() {
      await fixture.proxy?.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  if (options.start !== false) await fixture.startProxy();
  return fixture;
}

/** A fresh credential in the spec's format, registered as a secret. */
export function newCredential(): Credential {
  const credential = { accessKeyId: randomAccessKeyId(), secretAccessKey: randomSecretAccessKey() };
  registerSecret('sigv4-secret', credential.secretAccessKey);
  return credential;
}
