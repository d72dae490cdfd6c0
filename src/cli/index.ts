import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { verifyAuditChain } from '../audit/audit-log.js';
import { ConfigError, loadConfig, readSecret, type LoadedConfig } from '../config/load.js';
import { XKS_API_PATH_SUFFIX, type HsmMemberConfig } from '../config/schema.js';
import { curlExample, ensureDevEnvironment, signDevAdminToken, writeTestClientEnvironment } from '../dev/bootstrap.js';
import { ADMIN_ROLES } from '../config/schema.js';
import { isHsmError } from '../hsm/errors.js';
import { runTokenAdmin, type TokenTarget } from '../hsm/token-admin.js';
import type { KeyUsageFlags, TokenKey } from '../hsm/token-admin-protocol.js';
import { fromRoot } from '../lib/paths.js';
import { addAdminCommands, addRotateCommand } from './admin-commands.js';
import { PolicyEngine } from '../policy/engine.js';
import { createLogger, destinationStream } from '../lib/logger.js';
import { PRODUCT_VERSION, startProxy } from '../proxy.js';
import { runPrimary, signalWorkers } from '../workers/primary.js';
import { configForWorker, joinPrimary, workerIndex } from '../workers/worker.js';

const out = (text: string): void => void process.stdout.write(`${text}\n`);
const err = (text: string): void => void process.stderr.write(`${text}\n`);

/** var/dev by default; HYOK_DEV_DIR moves it (tests use a temp dir). */
function devDirectory(): string {
  return process.env['HYOK_DEV_DIR'] ?? fromRoot('var', 'dev');
}

function devConfigFile(): string {
  return join(devDirectory(), 'config.yaml');
}

/** --config, else the dev config when it exists. */
function resolveConfig(file: string | undefined): LoadedConfig {
  const path = file ?? (existsSync(devConfigFile()) ? devConfigFile() : undefined);
  if (path === undefined) throw new ConfigError(['no --config given and no dev configuration in var/dev (run `npm start` once)']);
  return loadConfig(path);
}

function tokenTarget(member: HsmMemberConfig, index: number): TokenTarget {
  return {
    module: member.module,
    tokenLabel: member.tokenLabel,
    pin: readSecret(member.pin, `hsm.members[${index}].pin`),
    environment: member.environment,
  };
}

function parseUsage(value: string): KeyUsageFlags {
  const parts = new Set(value.split(',').map((part) => part.trim().toLowerCase()).filter((part) => part !== '' && part !== 'none'));
  for (const part of parts) if (part !== 'encrypt' && part !== 'decrypt') throw new InvalidArgumentError(`unknown usage '${part}' (encrypt, decrypt or none)`);
  return { encrypt: parts.has('encrypt'), decrypt: parts.has('decrypt') };
}

/** Members whose token is `token` (a token label or a member id), or all members with --all. */
function selectMembers(config: LoadedConfig, token: string | undefined, all: boolean): Array<{ member: HsmMemberConfig; index: number }> {
  const members = config.config.hsm.members.map((member, index) => ({ member, index }));
  if (all) return members;
  if (token === undefined) throw new InvalidArgumentError('give --token <label> or --all');
  const selected = members.filter(({ member }) => member.tokenLabel === token || member.id === token);
  if (selected.length === 0) throw new InvalidArgumentError(`no member has token label or id '${token}'`);
  return selected;
}

function readMaterial(file: string): Buffer {
  const raw = readFileSync(file);
  if (raw.length === 32) return raw;
  const text = raw.toString('utf8').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  const decoded = Buffer.from(text, 'base64');
  if (decoded.length === 32) return decoded;
  throw new InvalidArgumentError('key material must be 32 bytes: raw, hex or Base64');
}

function parseWorkers(value: string): number {
  const count = value === 'auto' ? availableParallelism() : Number(value);
  if (!Number.isSafeInteger(count) || count < 1 || count > 64) throw new InvalidArgumentError('--workers takes 1..64 or auto');
  return count;
}

/** One of `serve --workers N`'s workers: the usual proxy, joined to the primary. */
async function serveAsWorker(index: number, options: { config?: string }): Promise<void> {
  if (options.config === undefined) throw new InvalidArgumentError('a worker needs --config');
  const proxy = await startProxy(loadConfig(options.config), { watchFiles: true, adjustConfig: (loaded) => configForWorker(loaded, index) });
  joinPrimary(proxy, proxy.state);
  process.on('SIGHUP', () => void proxy.reload());
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void proxy.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The primary is gone: a worker never serves unsupervised.
  process.on('disconnect', stop);
}

async function servePrimary(workers: number, loaded: LoadedConfig, onReady?: (port: number) => void): Promise<void> {
  // Synchronous: the primary logs little, and its last words before exiting must not be lost.
  const logger = createLogger(loaded.config.logging, destinationStream(loaded.config.logging.destination, true));
  const primary = await runPrimary({
    workers,
    workerArgs: ['serve', '--config', loaded.file],
    metrics: loaded.config.metrics,
    logger,
    onReady: ({ port }) => onReady?.(port),
    onStartFailure: () => {
      void primary.close().then(() => process.exit(1));
    },
  });
  process.on('SIGHUP', () => signalWorkers('SIGHUP'));
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    void primary.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function serve(options: { config?: string; workers: number }): Promise<void> {
  const index = workerIndex();
  if (index !== undefined) {
    await serveAsWorker(index, options);
    return;
  }
  let loaded: LoadedConfig;
  let envFileFor: ((port: number) => string) | undefined;
  let dev: Awaited<ReturnType<typeof ensureDevEnvironment>> | undefined;
  if (options.config === undefined) {
    dev = await ensureDevEnvironment(devDirectory(), { progress: (line) => err(`[dev] ${line}`) });
    loaded = loadConfig(dev.configFile);
    const devEnvironment = dev;
    envFileFor = (port) => writeTestClientEnvironment(devEnvironment, port);
  } else {
    loaded = loadConfig(options.config);
  }
  const admin = loaded.config.admin;
  const announceDev = (port: number, adminUrl?: string): void => {
    if (envFileFor === undefined || dev === undefined) return;
    const envFile = envFileFor(port);
    err(`[dev] hyok-proxy is ready on https://localhost:${port}${dev.uriPrefix}${XKS_API_PATH_SUFFIX}`);
    err(`[dev] wrote ${envFile} for the public XKS test client (aws-samples/aws-kms-xksproxy-test-client)`);
    const adminPort = adminUrl === undefined ? admin.port : Number(new URL(adminUrl).port);
    if (admin.enabled && adminPort !== 0) {
      err(`[dev] SRE console: https://localhost:${adminPort}/console (dev CA: ${dev.caFile}); log in with the token from \`npm run --silent dev-token\``);
    }
    err(`[dev] try it:\n${curlExample(envFile)}`);
  };
  if (options.workers > 1) {
    await servePrimary(options.workers, loaded, announceDev);
    return;
  }
  const proxy = await startProxy(loaded, { watchFiles: true });
  announceDev(proxy.port, proxy.adminUrl);
  process.on('SIGHUP', () => void proxy.reload());
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    proxy.logger.info({ signal }, 'shutting down');
    void proxy.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

export function buildProgram(): Command {
  const program = new Command('hyok-proxy')
    .description('Hold-your-own-key proxy: AWS KMS XKS v1 over clustered PKCS#11 HSMs')
    .version(PRODUCT_VERSION)
    .showHelpAfterError();

  program
    .command('serve')
    .description('run the proxy; without --config, on the embedded dev setup in var/dev (SoftHSM tokens, dev PKI)')
    .option('-c, --config <file>', 'configuration file (YAML)')
    .option('-w, --workers <n>', 'worker processes sharing the ports, each with its own HSM sessions (a number or auto: one per CPU)', parseWorkers, 1)
    .action(serve);

  program
    .command('dev-token')
    .description('print a short-lived admin token from the dev setup\'s identity provider (var/dev), for the SRE console')
    .option('-r, --role <role...>', `roles: ${ADMIN_ROLES.join(', ')}`, ['operator'])
    .option('-s, --subject <name>', 'who the token names (the audit log\'s actor)', 'dev-operator')
    .option('-t, --ttl <minutes>', 'lifetime in minutes (1-720)', (value: string) => {
      const minutes = Number(value);
      if (!Number.isInteger(minutes) || minutes < 1 || minutes > 720) throw new InvalidArgumentError('must be a whole number of minutes from 1 to 720');
      return minutes;
    }, 60)
    .action(async (options: { role: string[]; subject: string; ttl: number }) => {
      const unknown = options.role.filter((role) => !(ADMIN_ROLES as readonly string[]).includes(role));
      if (unknown.length > 0) throw new InvalidArgumentError(`unknown role ${unknown.join(', ')} (roles: ${ADMIN_ROLES.join(', ')})`);
      if (!/^[\x21-\x7e]{1,64}$/.test(options.subject)) throw new InvalidArgumentError('--subject must be 1-64 visible ASCII characters');
      const dev = join(devDirectory(), 'admin', 'dev-idp-key.json');
      out(await signDevAdminToken({ adminSigningKeyFile: dev }, { roles: options.role, subject: options.subject, ttlMinutes: options.ttl }));
    });

  program
    .command('kms-config')
    .description('print the JSON file the AWS KMS console accepts for an external key store (contains the secret)')
    .requiredOption('-p, --prefix <uriPrefix>', 'URI prefix of the key store, e.g. /keystores/sales ("" for none)')
    .option('-c, --config <file>', 'configuration file (YAML)')
    .option('--access-key-id <id>', 'which credential to export (default: the last one listed, i.e. the newest)')
    .action((options: { prefix: string; config?: string; accessKeyId?: string }) => {
      const loaded = resolveConfig(options.config);
      const prefix = options.prefix === '' || options.prefix.startsWith('/') ? options.prefix : `/${options.prefix}`;
      const index = loaded.config.keyStores.findIndex((store) => store.uriPrefix === prefix);
      const store = loaded.config.keyStores[index];
      if (store === undefined) throw new InvalidArgumentError(`no key store with uriPrefix '${prefix}'`);
      const credentialIndex =
        options.accessKeyId === undefined
          ? store.credentials.length - 1
          : store.credentials.findIndex((credential) => credential.accessKeyId === options.accessKeyId);
      const credential = store.credentials[credentialIndex];
      if (credential === undefined) throw new InvalidArgumentError(`key store '${store.name}' has no access key id '${String(options.accessKeyId)}'`);
      const secret = readSecret(credential.secretAccessKey, `keyStores[${index}].credentials[${credentialIndex}].secretAccessKey`);
      out(
        JSON.stringify(
          {
            XksProxyUriPath: `${store.uriPrefix}${XKS_API_PATH_SUFFIX}`,
            XksProxyAuthenticationCredential: { AccessKeyId: credential.accessKeyId, RawSecretAccessKey: secret },
          },
          null,
          2,
        ),
      );
    });

  const keys = program.command('keys').description('create, import and check AES-256 keys on the HSM members');
  keys
    .command('create')
    .description('generate a key inside one token (never extractable; for clusters use `keys import --all`)')
    .requiredOption('-l, --label <label>', 'CKA_LABEL of the new key')
    .requiredOption('-t, --token <token>', 'token label or member id')
    .option('-u, --usage <list>', 'encrypt,decrypt | encrypt | decrypt | none', parseUsage, { encrypt: true, decrypt: true })
    .option('-c, --config <file>', 'configuration file (YAML)')
    .action(async (options: { label: string; token: string; usage: KeyUsageFlags; config?: string }) => {
      const loaded = resolveConfig(options.config);
      for (const { member, index } of selectMembers(loaded, options.token, false)) {
        const [result] = (await runTokenAdmin(tokenTarget(member, index), [{ op: 'generate', label: options.label, usage: options.usage }])) as Array<{ checkValue?: string }>;
        out(`${member.id}\t${options.label}\tKCV ${result?.checkValue ?? 'n/a'}`);
      }
    });
  keys
    .command('import')
    .description('import the same key material into one token or all members (CKA_SENSITIVE, not extractable)')
    .requiredOption('-l, --label <label>', 'CKA_LABEL of the new key')
    .option('-t, --token <token>', 'token label or member id')
    .option('-a, --all', 'import into every configured member', false)
    .option('-m, --material-file <file>', '32 bytes of key material (raw, hex or Base64); default: fresh random bytes')
    .option('-u, --usage <list>', 'encrypt,decrypt | encrypt | decrypt | none', parseUsage, { encrypt: true, decrypt: true })
    .option('-c, --config <file>', 'configuration file (YAML)')
    .action(async (options: { label: string; token?: string; all: boolean; materialFile?: string; usage: KeyUsageFlags; config?: string }) => {
      const loaded = resolveConfig(options.config);
      const targets = selectMembers(loaded, options.token, options.all);
      const material = options.materialFile === undefined ? randomBytes(32) : readMaterial(options.materialFile);
      try {
        for (const { member, index } of targets) {
          const [result] = (await runTokenAdmin(tokenTarget(member, index), [
            { op: 'import', label: options.label, usage: options.usage, material: material.toString('base64') },
          ])) as Array<{ checkValue?: string }>;
          out(`${member.id}\t${options.label}\tKCV ${result?.checkValue ?? 'n/a'}`);
        }
      } finally {
        material.fill(0);
      }
    });
  keys
    .command('check')
    .description("list every member's keys with their KCV and flag keys that differ or are missing; exit code 1 on a mismatch")
    .option('-c, --config <file>', 'configuration file (YAML)')
    .action(async (options: { config?: string }) => {
      const loaded = resolveConfig(options.config);
      const byLabel = new Map<string, Map<string, TokenKey>>();
      const members = loaded.config.hsm.members;
      for (const [index, member] of members.entries()) {
        const [listing] = (await runTokenAdmin(tokenTarget(member, index), [{ op: 'list' }])) as [TokenKey[]];
        for (const key of listing) {
          const perMember = byLabel.get(key.label) ?? new Map<string, TokenKey>();
          perMember.set(member.id, key);
          byLabel.set(key.label, perMember);
        }
      }
      let problems = 0;
      for (const [label, perMember] of [...byLabel].sort(([a], [b]) => a.localeCompare(b))) {
        const values = new Set([...perMember.values()].map((key) => key.checkValue ?? 'n/a'));
        const missing = members.filter((member) => !perMember.has(member.id)).map((member) => member.id);
        const flags = [
          ...(values.size > 1 ? ['KCV MISMATCH'] : []),
          ...(missing.length > 0 ? [`MISSING on ${missing.join(',')}`] : []),
          ...([...perMember.values()].some((key) => key.extractable || !key.sensitive) ? ['EXTRACTABLE or not SENSITIVE'] : []),
        ];
        if (flags.length > 0) problems += 1;
        const kcvs = members.map((member) => `${member.id}=${perMember.get(member.id)?.checkValue ?? '-'}`).join(' ');
        out(`${label}\t${kcvs}${flags.length > 0 ? `\t${flags.join('; ')}` : '\tok'}`);
      }
      if (problems > 0) process.exitCode = 1;
    });
  addRotateCommand(keys);

  program
    .command('audit')
    .description('audit log tools')
    .command('verify')
    .description('check the hash chain of an audit log file; exit code 1 when a line was changed or removed')
    .argument('<file>', 'audit log file')
    .action((file: string) => {
      const result = verifyAuditChain(readFileSync(file, 'utf8'));
      if (result.ok) out(`ok: ${result.lines} records, chain intact`);
      else {
        out(`BROKEN at line ${String(result.brokenAt)}: ${String(result.reason)}`);
        process.exitCode = 1;
      }
    });

  program
    .command('policy')
    .description('policy tools')
    .command('explain')
    .description('print the decision for a request and the statements that matched')
    .requiredOption('-i, --input <file>', 'JSON: {"action","keyStore","externalKeyId","attributes":{...}}')
    .option('-p, --policy <file>', 'policy file (default: the configured one)')
    .option('-c, --config <file>', 'configuration file (YAML)')
    .action((options: { input: string; policy?: string; config?: string }) => {
      const policyFile = options.policy ?? resolveConfig(options.config).config.policy.file;
      if (policyFile === undefined) throw new InvalidArgumentError('no --policy given and none configured');
      const engine = PolicyEngine.fromFile(policyFile);
      const input = JSON.parse(readFileSync(options.input, 'utf8')) as Parameters<PolicyEngine['explain']>[0];
      out(JSON.stringify({ policyVersion: engine.version, ...engine.explain({ ...input, attributes: input.attributes ?? {} }) }, null, 2));
    });

  addAdminCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  // `hyok-proxy` alone runs the dev proxy, like `npm start`.
  const args = argv.length <= 2 ? [...argv, 'serve'] : argv;
  try {
    await program.parseAsync(args);
  } catch (error) {
    if (error instanceof ConfigError) err(error.message);
    else if (error instanceof InvalidArgumentError) err(`error: ${error.message}`);
    else if (isHsmError(error)) err(`HSM error (${error.kind}): ${error.message}`);
    else err(`error: ${(error as Error).message}`);
    // Exit now: a `serve` that failed half-way (a port in use, say) has HSM agents and timers holding the loop open.
    process.exit(1);
  }
}
