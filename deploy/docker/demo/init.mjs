// One-shot init of the compose demo (service `init`, runs in the hyok-proxy image as root so it can
// hand fresh named volumes to the service users; everything it writes ends up owned by them).
// Creates, once:
//   /run/hyok-demo/secrets   HSM PIN, SigV4 secret, decision signing key, Redis password (random)
//   /run/hyok-demo/pki       demo CA certificate, server certificate, KMS-like and admin client certificates
//   /var/lib/hsm-node-N      softhsm2.conf + one SoftHSM token (hyok-demo-N) per HSM node volume
//   /run/redis-config        redis.conf with the password (owned by the redis user)
// and imports the same key material into the three tokens with `hyok-proxy keys import --all`
// (the dev keys of src/dev/bootstrap.ts plus the health-check key), then checks it with `keys check`.
// Never prints a secret. Demo only: softhsm2-util takes the PINs as arguments, like `npm start` does.
//   HYOK_DEMO_ROOT  prefix of every path above (default "/"; the tests run it in a temp dir)
//   HYOK_APP_DIR    the installed proxy (default /opt/hyok-proxy)
// Plain JSON config and no bare imports: this file is mounted into the image, outside its node_modules.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = process.env.HYOK_DEMO_ROOT || '/';
const APP = process.env.HYOK_APP_DIR || '/opt/hyok-proxy';
const CLI = join(APP, 'dist', 'src', 'main.js');
// These paths and ids are also in compose.yaml and demo/hyok-proxy.yaml.
const SERVICE_UID = 10001;
const SERVICE_GID = 10001;
const REDIS_UID = 999;
const REDIS_GID = 999;
const DEMO = '/run/hyok-demo';
const SECRETS = `${DEMO}/secrets`;
const PKI = `${DEMO}/pki`;
const SOCKETS = '/run/p11-kit';
const REDIS_CONFIG = '/run/redis-config';
const NODES = [1, 2, 3].map((n) => ({ id: `hsm-node-${n}`, tokenLabel: `hyok-demo-${n}`, dir: `/var/lib/hsm-node-${n}` }));
const SERVER_NAMES = ['localhost', 'hyok-proxy', 'proxy-1', 'proxy-2', 'proxy-3'];
const KMS_CLIENT_CN = 'cks.kms.us-east-1.amazonaws.com';
const ADMIN_CN = 'demo-operator';

const at = (path) => join(ROOT, path);
const log = (line) => process.stderr.write(`init: ${line}\n`);
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

const { createCertificateAuthority, issueCertificate } = await import(pathToFileURL(join(APP, 'dist', 'src', 'dev', 'pki.js')).href);
const { DEV_KEYS, DEV_HEALTH_CHECK_KEY, findSoftHsmModule, randomSecretAccessKey } = await import(
  pathToFileURL(join(APP, 'dist', 'src', 'dev', 'bootstrap.js')).href
);

function writeFile(path, content, mode) {
  writeFileSync(at(path), content, { mode });
  chmodSync(at(path), mode);
}

/** Empties a directory without removing it: it may be a volume's mount point. */
function emptyDir(path) {
  mkdirSync(at(path), { recursive: true });
  for (const entry of readdirSync(at(path))) rmSync(join(at(path), entry), { recursive: true, force: true });
}

function chownTree(path, uid, gid) {
  if (!isRoot) return;
  chownSync(at(path), uid, gid);
  for (const entry of readdirSync(at(path), { withFileTypes: true })) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) chownTree(child, uid, gid);
    else chownSync(at(child), uid, gid);
  }
}

function cli(args) {
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  process.stderr.write(result.stdout + result.stderr);
  if (result.status !== 0) throw new Error(`hyok-proxy ${args.slice(0, 2).join(' ')} failed (exit ${String(result.status)})`);
  return result.stdout;
}

function usageArgument(usage) {
  const parts = [...(usage.encrypt ? ['encrypt'] : []), ...(usage.decrypt ? ['decrypt'] : [])];
  return parts.length === 0 ? 'none' : parts.join(',');
}

if (existsSync(at(`${DEMO}/.complete`))) {
  log('already initialised; remove the volumes (docker compose down -v) to start again');
  process.exit(0);
}
process.umask(0o077);
// A half-made run is redone from scratch: re-initialising a token label would add a second token.
for (const dir of [DEMO, REDIS_CONFIG, SOCKETS, ...NODES.map((node) => node.dir)]) emptyDir(dir);
for (const dir of [SECRETS, PKI]) mkdirSync(at(dir), { recursive: true, mode: 0o700 });
chmodSync(at(DEMO), 0o711);

const pin = randomBytes(12).toString('hex');
const soPin = randomBytes(12).toString('hex');
writeFile(`${SECRETS}/hsm-pin`, `${pin}\n`, 0o600);
writeFile(`${SECRETS}/sigv4-secret`, `${randomSecretAccessKey()}\n`, 0o600);
writeFile(`${SECRETS}/decision-signing-key`, `${randomBytes(48).toString('base64')}\n`, 0o600);
const redisPassword = randomBytes(24).toString('hex');
writeFile(`${SECRETS}/redis-password`, `${redisPassword}\n`, 0o600);
// Redis reads its password from its config file; the root filesystem is read-only and nothing is persisted.
writeFile(`${REDIS_CONFIG}/redis.conf`, `requirepass ${redisPassword}\nsave ""\nappendonly no\ndir /tmp\n`, 0o600);
log('wrote random secrets');

const ca = await createCertificateAuthority({ commonName: 'hyok-proxy compose demo CA' });
const server = await issueCertificate(ca, { commonName: 'hyok-proxy', dnsNames: SERVER_NAMES, ipAddresses: ['127.0.0.1'], usage: 'server' });
const kmsClient = await issueCertificate(ca, { commonName: KMS_CLIENT_CN, usage: 'client' });
const admin = await issueCertificate(ca, { commonName: ADMIN_CN, usage: 'client' });
writeFile(`${PKI}/ca.pem`, ca.certPem, 0o644);
writeFile(`${PKI}/server.pem`, server.certPem, 0o644);
writeFile(`${PKI}/server-key.pem`, server.keyPem, 0o600);
writeFile(`${PKI}/kms-client.pem`, kmsClient.certPem, 0o644);
writeFile(`${PKI}/kms-client-key.pem`, kmsClient.keyPem, 0o600);
writeFile(`${PKI}/admin.pem`, admin.certPem, 0o644);
writeFile(`${PKI}/admin-key.pem`, admin.keyPem, 0o600);
// The CA key is not kept: new certificates mean a new demo (docker compose down -v).
log(`issued the demo CA, a server certificate (${SERVER_NAMES.join(', ')}) and client certificates ${KMS_CLIENT_CN}, ${ADMIN_CN}`);

const softhsm = findSoftHsmModule();
for (const node of NODES) {
  mkdirSync(at(`${node.dir}/tokens`), { recursive: true, mode: 0o700 });
  // Init and the node mount the volume at the same path, so one file serves both.
  writeFile(`${node.dir}/softhsm2.conf`, `directories.tokendir = ${at(`${node.dir}/tokens`)}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`, 0o600);
  const result = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', node.tokenLabel, '--so-pin', soPin, '--pin', pin], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', SOFTHSM2_CONF: at(`${node.dir}/softhsm2.conf`) },
    stdio: 'ignore',
  });
  if (result.status !== 0) throw new Error(`softhsm2-util could not initialise ${node.tokenLabel}`);
}
log(`initialised SoftHSM tokens ${NODES.map((node) => node.tokenLabel).join(', ')}`);

// The members as `keys import --all` reaches them at init time: SoftHSM directly, one config per volume.
const work = mkdtempSync(join(tmpdir(), 'hyok-demo-init-'));
try {
  const initConfig = join(work, 'init.json');
  writeFileSync(
    initConfig,
    JSON.stringify({
      server: { tls: { certFile: at(`${PKI}/server.pem`), keyFile: at(`${PKI}/server-key.pem`) } },
      hsm: {
        ekmVendor: 'SoftHSM',
        members: NODES.map((node) => ({
          id: node.id,
          model: 'SoftHSM 2 (compose demo)',
          module: softhsm,
          tokenLabel: node.tokenLabel,
          pin: { file: at(`${SECRETS}/hsm-pin`) },
          environment: { SOFTHSM2_CONF: at(`${node.dir}/softhsm2.conf`) },
        })),
      },
      keyStores: [
        {
          name: 'init',
          uriPrefix: '',
          credentials: [{ accessKeyId: 'DEMOINITONLYAAAAAAAAAA', secretAccessKey: { file: at(`${SECRETS}/sigv4-secret`) } }],
          keys: [{ id: DEV_HEALTH_CHECK_KEY }],
        },
      ],
      audit: { destination: 'stderr' },
    }),
    { mode: 0o600 },
  );
  const keys = [...DEV_KEYS.map((key) => ({ label: key.id, usage: key.usage })), { label: DEV_HEALTH_CHECK_KEY, usage: { encrypt: true, decrypt: true } }];
  for (const key of keys) cli(['keys', 'import', '--all', '--label', key.label, '--usage', usageArgument(key.usage), '--config', initConfig]);
  // Exit code 1 on a KCV mismatch or a missing key.
  cli(['keys', 'check', '--config', initConfig]);
  log(`imported ${keys.length} AES-256 keys with identical material into every token`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

chmodSync(at(SOCKETS), 0o700);
writeFile(`${DEMO}/.complete`, `${new Date().toISOString()}\n`, 0o644);
// Last: hands the volumes to the users of the services (the proxies and HSM nodes run as 10001).
for (const node of NODES) chownTree(node.dir, SERVICE_UID, SERVICE_GID);
chownTree(SOCKETS, SERVICE_UID, SERVICE_GID);
chownTree(DEMO, SERVICE_UID, SERVICE_GID);
chownTree(REDIS_CONFIG, REDIS_UID, REDIS_GID);
log('done');
