import { execFileSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { stringify } from 'yaml';
import type { ConfigInput } from '../config/schema.js';
import { runTokenAdmin } from '../hsm/token-admin.js';
import type { KeyUsageFlags } from '../hsm/token-admin-protocol.js';
import { fromRoot } from '../lib/paths.js';
import { createCertificateAuthority, issueCertificate } from './pki.js';

/**
 * The embedded development setup behind `npm start`: three SoftHSM tokens with
 * identical keys, a dev PKI, random SigV4 credentials and a config using them,
 * all under var/dev/. Created once, reused afterwards. Never for production.
 */

export const DEV_URI_PREFIX = '/keystores/dev';
export const DEV_CLIENT_CN = 'cks.kms.us-east-1.amazonaws.com';
const COMPLETE_MARKER = '.complete';
const TOKEN_LABELS = ['hyok-dev-1', 'hyok-dev-2', 'hyok-dev-3'] as const;

/** The dev keys, named as the public XKS test client expects. */
export const DEV_KEYS: ReadonlyArray<{ readonly id: string; readonly usage: KeyUsageFlags; readonly enabled: boolean }> = [
  { id: 'foo', usage: { encrypt: true, decrypt: true }, enabled: true },
  { id: 'encrypt_only_key', usage: { encrypt: true, decrypt: false }, enabled: true },
  { id: 'decrypt_only_key', usage: { encrypt: false, decrypt: true }, enabled: true },
  { id: 'impotent_key', usage: { encrypt: false, decrypt: false }, enabled: true },
  { id: 'disabled_key', usage: { encrypt: true, decrypt: true }, enabled: false },
];
export const DEV_HEALTH_CHECK_KEY = 'xks-health-check';
/** The dev identity provider behind the SRE console's login: a local ES256 key, never a real IdP. */
export const DEV_ADMIN_ISSUER = 'https://hyok-dev-idp.invalid';
export const DEV_ADMIN_AUDIENCE = 'hyok-admin';
export const DEV_ADMIN_PORT = 9443;
const DEV_ADMIN_KID = 'hyok-dev-idp-1';

export interface DevEnvironment {
  readonly dir: string;
  readonly configFile: string;
  readonly caFile: string;
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
  readonly accessKeyId: string;
  readonly secretFile: string;
  readonly uriPrefix: string;
  readonly softhsmConf: string;
  readonly modulePath: string;
  readonly pinFile: string;
  /** Private JWK of the dev identity provider (`hyok-proxy dev-token` signs with it). */
  readonly adminSigningKeyFile: string;
}

const SOFTHSM_MODULE_CANDIDATES = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
];

export function findSoftHsmModule(): string {
  const found = SOFTHSM_MODULE_CANDIDATES.find((candidate) => existsSync(candidate));
  if (found === undefined) throw new Error('SoftHSM2 is not installed (libsofthsm2.so not found); run scripts/ensure-deps.sh as root');
  return found;
}

/** Random string of 'A'-'Z' and '2'-'7' (the spec's access key id alphabet). */
export function randomAccessKeyId(length = 26): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  return Array.from({ length }, () => alphabet[randomInt(alphabet.length)]).join('');
}

/** 256 bits of entropy, Base64: 44 characters of the spec's secret alphabet. */
export function randomSecretAccessKey(): string {
  return randomBytes(32).toString('base64');
}

function writePrivate(file: string, content: string): void {
  writeFileSync(file, content, { mode: 0o600 });
  chmodSync(file, 0o600);
}

function paths(dir: string): DevEnvironment {
  return {
    dir,
    configFile: join(dir, 'config.yaml'),
    caFile: join(dir, 'pki', 'ca.pem'),
    clientCertFile: join(dir, 'pki', 'client.pem'),
    clientKeyFile: join(dir, 'pki', 'client-key.pem'),
    accessKeyId: '',
    secretFile: join(dir, 'secrets', 'sigv4-secret'),
    uriPrefix: DEV_URI_PREFIX,
    softhsmConf: join(dir, 'softhsm2.conf'),
    modulePath: findSoftHsmModule(),
    pinFile: join(dir, 'secrets', 'hsm-pin'),
    adminSigningKeyFile: join(dir, 'admin', 'dev-idp-key.json'),
  };
}

export interface EnsureOptions {
  /** Port written into the config (the env var HYOK_LISTEN_PORT still overrides it). */
  readonly port?: number;
  /** Progress lines for a human; never given secrets. */
  readonly progress?: (line: string) => void;
}

/** Creates var/dev/ when it is missing or incomplete; otherwise reuses it. */
export async function ensureDevEnvironment(dir = fromRoot('var', 'dev'), options: EnsureOptions = {}): Promise<DevEnvironment> {
  const root = resolve(dir);
  const progress = options.progress ?? (() => undefined);
  if (existsSync(join(root, COMPLETE_MARKER))) {
    const existing = paths(root);
    const accessKeyId = readFileSync(join(root, 'secrets', 'sigv4-access-key-id'), 'utf8').trim();
    progress(`reusing the dev environment in ${root}`);
    return { ...existing, accessKeyId };
  }
  // A half-made environment (interrupted run) is rebuilt from scratch rather than patched.
  rmSync(root, { recursive: true, force: true });
  for (const sub of ['tokens', 'pki', 'secrets', 'admin']) mkdirSync(join(root, sub), { recursive: true, mode: 0o700 });
  const env = paths(root);
  progress(`creating the dev environment in ${root}`);

  writeFileSync(env.softhsmConf, `directories.tokendir = ${join(root, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const pin = randomBytes(12).toString('hex');
  const soPin = randomBytes(12).toString('hex');
  writePrivate(env.pinFile, `${pin}\n`);
  writePrivate(join(root, 'secrets', 'hsm-so-pin'), `${soPin}\n`);
  for (const label of TOKEN_LABELS) {
    // Dev only: softhsm2-util takes PINs as arguments; they are random and local to var/dev.
    execFileSync('softhsm2-util', ['--init-token', '--free', '--label', label, '--so-pin', soPin, '--pin', pin], {
      env: { ...process.env, SOFTHSM2_CONF: env.softhsmConf },
      stdio: 'ignore',
    });
  }
  progress(`initialised SoftHSM tokens ${TOKEN_LABELS.join(', ')}`);

  // The same random material goes into every token (a cluster must hold identical keys), then is wiped.
  const keys = [...DEV_KEYS.map((key) => ({ label: key.id, usage: key.usage })), { label: DEV_HEALTH_CHECK_KEY, usage: { encrypt: true, decrypt: true } }];
  const materials = keys.map(() => randomBytes(32));
  try {
    for (const label of TOKEN_LABELS) {
      await runTokenAdmin(
        { module: env.modulePath, tokenLabel: label, pin, environment: { SOFTHSM2_CONF: env.softhsmConf } },
        keys.map((key, index) => ({ op: 'import', label: key.label, usage: key.usage, material: (materials[index] as Buffer).toString('base64') })),
      );
    }
  } finally {
    for (const material of materials) material.fill(0);
  }
  progress(`imported ${keys.length} AES-256 keys into each token`);

  const ca = await createCertificateAuthority({ commonName: 'hyok-proxy dev CA' });
  const server = await issueCertificate(ca, { commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'], usage: 'server' });
  const client = await issueCertificate(ca, { commonName: DEV_CLIENT_CN, usage: 'client' });
  writeFileSync(env.caFile, ca.certPem);
  writePrivate(join(root, 'pki', 'ca-key.pem'), ca.keyPem);
  writeFileSync(join(root, 'pki', 'server.pem'), server.certPem);
  writePrivate(join(root, 'pki', 'server-key.pem'), server.keyPem);
  writeFileSync(env.clientCertFile, client.certPem);
  writePrivate(env.clientKeyFile, client.keyPem);
  progress('issued a dev CA, a server certificate for localhost and a client certificate');

  const idp = await generateKeyPair('ES256', { extractable: true });
  writePrivate(env.adminSigningKeyFile, JSON.stringify({ ...(await exportJWK(idp.privateKey)), kid: DEV_ADMIN_KID, alg: 'ES256' }));
  writeFileSync(join(root, 'admin', 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(idp.publicKey)), kid: DEV_ADMIN_KID, alg: 'ES256', use: 'sig' }] }));
  progress('made a dev identity provider for the SRE console (hyok-proxy dev-token signs with it)');

  const accessKeyId = randomAccessKeyId();
  writeFileSync(join(root, 'secrets', 'sigv4-access-key-id'), `${accessKeyId}\n`);
  writePrivate(env.secretFile, `${randomSecretAccessKey()}\n`);

  const config: ConfigInput = {
    server: {
      host: '127.0.0.1',
      port: options.port ?? 8443,
      tls: {
        certFile: 'pki/server.pem',
        keyFile: 'pki/server-key.pem',
        // Dev serves callers with and without client certificates; a presented certificate must still be valid.
        clientAuth: { mode: 'optional', caFile: 'pki/ca.pem', allowedSubjects: { commonNames: [DEV_CLIENT_CN] } },
      },
    },
    proxy: { vendor: 'hyok-proxy', fleetSize: 1 },
    hsm: {
      ekmVendor: 'SoftHSM',
      members: TOKEN_LABELS.map((tokenLabel, index) => ({
        id: `softhsm-${index + 1}`,
        model: 'SoftHSM 2 (dev token)',
        module: env.modulePath,
        tokenLabel,
        pin: { file: 'secrets/hsm-pin' },
        zone: `dev-${index + 1}`,
        environment: { SOFTHSM2_CONF: env.softhsmConf },
      })),
      healthCheck: { keyLabel: DEV_HEALTH_CHECK_KEY },
    },
    keyStores: [
      {
        name: 'dev',
        uriPrefix: DEV_URI_PREFIX,
        credentials: [{ accessKeyId, secretAccessKey: { file: 'secrets/sigv4-secret' } }],
        keys: DEV_KEYS.map((key) => ({ id: key.id, enabled: key.enabled })),
      },
    ],
    audit: { destination: 'stdout' },
    logging: { level: 'info', destination: 'stderr' },
    metrics: { enabled: true, host: '127.0.0.1', port: 9464 },
    // The admin API and SRE console; dev tokens come from `hyok-proxy dev-token` (HYOK_ADMIN_PORT overrides the port).
    admin: {
      enabled: true,
      host: '127.0.0.1',
      port: DEV_ADMIN_PORT,
      jwt: { jwksFile: 'admin/jwks.json', issuer: DEV_ADMIN_ISSUER, audience: DEV_ADMIN_AUDIENCE, algorithms: ['ES256'] },
    },
  };
  writeFileSync(env.configFile, `# hyok-proxy dev configuration, generated by \`npm start\`. Not for production.\n${stringify(config)}`);
  writeFileSync(join(root, COMPLETE_MARKER), `${new Date().toISOString()}\n`);
  progress(`wrote ${env.configFile}`);
  return { ...env, accessKeyId };
}

/** The `export` lines the public curl-based XKS test client reads, plus DISABLED_KEY_ID. */
export function testClientEnvironment(env: DevEnvironment, port: number): string {
  const secret = readFileSync(env.secretFile, 'utf8').trim();
  const lines: Record<string, string> = {
    XKS_PROXY_HOST: `localhost:${port}`,
    URI_PREFIX: env.uriPrefix.replace(/^\//, ''),
    SIGV4_ACCESS_KEY_ID: env.accessKeyId,
    SIGV4_SECRET_ACCESS_KEY: secret,
    KEY_ID: 'foo',
    ENCRYPT_ONLY_KEY_ID: 'encrypt_only_key',
    DECRYPT_ONLY_KEY_ID: 'decrypt_only_key',
    IMPOTENT_KEY_ID: 'impotent_key',
    DISABLED_KEY_ID: 'disabled_key',
    SCHEME: 'https://',
    SECURE: `--cacert ${env.caFile}`,
    MTLS: `--key ${env.clientKeyFile} --cert ${env.clientCertFile}`,
  };
  return `${Object.entries(lines)
    .map(([name, value]) => `export ${name}="${value}"`)
    .join('\n')}\n`;
}

export function writeTestClientEnvironment(env: DevEnvironment, port: number): string {
  const file = join(env.dir, 'xks-test-client.env');
  writePrivate(file, testClientEnvironment(env, port));
  return file;
}

/** A ready-to-paste curl call; it reads the secret from the env file instead of printing it. */
export function curlExample(envFile: string): string {
  return [
    `source ${envFile}`,
    `curl --silent $SECURE $MTLS \\`,
    `  --aws-sigv4 "aws:amz:us-east-1:kms-xks-proxy" --user "$SIGV4_ACCESS_KEY_ID:$SIGV4_SECRET_ACCESS_KEY" \\`,
    `  -H "Content-Type: application/json" \\`,
    `  --data '{"requestMetadata":{"awsPrincipalArn":"arn:aws:iam::123456789012:user/Alice","kmsKeyArn":"arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab","kmsOperation":"Encrypt","kmsRequestId":"4112f4d6-db54-4af4-ae30-c55a22a8dfae"},"plaintext":"SGVsbG8gV29ybGQh","encryptionAlgorithm":"AES_GCM"}' \\`,
    `  "$SCHEME$XKS_PROXY_HOST/$URI_PREFIX/kms/xks/v1/keys/$KEY_ID/encrypt"`,
  ].join('\n');
}

/** A short-lived admin token from the dev identity provider, for the SRE console or `hyok-proxy admin` on the dev setup. */
export async function signDevAdminToken(env: Pick<DevEnvironment, 'adminSigningKeyFile'>, options: { roles: readonly string[]; subject: string; ttlMinutes: number }): Promise<string> {
  if (!existsSync(env.adminSigningKeyFile)) {
    throw new Error(`no dev identity provider in ${env.adminSigningKeyFile}: this dev environment predates the console; remove var/dev and run \`npm start\` again`);
  }
  const jwk = JSON.parse(readFileSync(env.adminSigningKeyFile, 'utf8')) as JWK;
  const key = await importJWK(jwk, 'ES256');
  return new SignJWT({ roles: [...options.roles] })
    .setProtectedHeader({ alg: 'ES256', kid: jwk.kid ?? DEV_ADMIN_KID })
    .setSubject(options.subject)
    .setIssuer(DEV_ADMIN_ISSUER)
    .setAudience(DEV_ADMIN_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(`${options.ttlMinutes}m`)
    .sign(key);
}
