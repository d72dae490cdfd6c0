import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type ServerOptions } from 'node:https';
import { createRequire } from 'node:module';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, posix, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import dockerfileUtils from 'dockerfile-utils';
import { parse, stringify } from 'yaml';
import { locateP11Kit } from '../../../loadtest/drill/drill.js';
import { signalGroup } from '../../../loadtest/drill/process-group.js';
import { ProxyProcess } from '../../../loadtest/drill/proxy-process.js';
import { freePort } from '../../../loadtest/local-redis.js';
import { loadConfig } from '../../../src/config/load.js';
import { ConfigSchema, SecretRefSchema, type Config } from '../../../src/config/schema.js';
import { DEV_HEALTH_CHECK_KEY, DEV_KEYS, findSoftHsmModule } from '../../../src/dev/bootstrap.js';
import { createCertificateAuthority, issueCertificate } from '../../../src/dev/pki.js';
import { fromRoot } from '../../../src/lib/paths.js';
import { logFile, readAuditRecords, registerSecret } from '../../helpers/test-env.js';
import { XksTestClient } from '../../helpers/xks-client.js';

/**
 * The container deliverables (deploy/docker/, .dockerignore), checked without a Docker engine:
 * the Dockerfile is linted (dockerfile-utils) and its stages, user, ports, health check and
 * build arguments asserted; compose.yaml is parsed and its structure asserted; the demo config
 * is validated with the proxy's own schema. Then the demo's moving parts run for real on this
 * machine, with the containers' paths under a temp dir: the init script (secrets, PKI, three
 * SoftHSM tokens with identical keys), Redis with the config it wrote, the HSM node entrypoint
 * (one `p11-kit server` 0.25 per token) and a proxy on the demo config, reached by the image's
 * HEALTHCHECK script and by signed XKS requests. What is NOT covered: building the image,
 * Debian packages inside it, container users, read-only mounts and compose networking.
 */

const DOCKER_DIR = fromRoot('deploy', 'docker');
const DOCKERFILE = join(DOCKER_DIR, 'Dockerfile');
const COMPOSE = join(DOCKER_DIR, 'compose.yaml');
const DEMO_CONFIG = join(DOCKER_DIR, 'demo', 'hyok-proxy.yaml');
const INIT_SCRIPT = join(DOCKER_DIR, 'demo', 'init.mjs');
const HSM_ENTRYPOINT = join(DOCKER_DIR, 'hsm-node-entrypoint.sh');
const HEALTHCHECK = join(DOCKER_DIR, 'healthcheck.mjs');
const SECRET_NAME = /PIN|SECRET|PASSW|TOKEN|PRIVATE|CREDENTIAL|API_?KEY/i;
/** A name that says it holds a secret; a token *label* names an HSM token, not a secret. */
const looksSecret = (name: string): boolean => SECRET_NAME.test(name.replace(/TOKEN_LABEL/gi, ''));
const SERVICE_UID = 10001;

type Json = Record<string, unknown>;
const asObject = (value: unknown, what: string): Json => {
  assert.ok(value !== null && typeof value === 'object' && !Array.isArray(value), `${what} must be a mapping`);
  return value as Json;
};
const asArray = (value: unknown, what: string): unknown[] => {
  assert.ok(Array.isArray(value), `${what} must be a list`);
  return value;
};

// ---- Dockerfile, parsed as plain text ----

interface Instruction {
  readonly keyword: string;
  readonly args: string;
  readonly line: number;
  /** Index of the FROM stage it belongs to; -1 before the first FROM. */
  readonly stage: number;
}

/** Instructions with continuation lines joined; comments and parser directives skipped. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  let pending = '';
  let startLine = 0;
  text.split('\n').forEach((raw, index) => {
    const line = raw.trimEnd();
    if (pending === '' && (line.trim() === '' || line.trim().startsWith('#'))) return;
    if (pending !== '' && line.trim().startsWith('#')) return;
    if (pending === '') startLine = index + 1;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      return;
    }
    const full = (pending + line).trim();
    pending = '';
    const match = /^(\S+)\s*(.*)$/s.exec(full);
    if (match === null) return;
    const keyword = (match[1] as string).toUpperCase();
    if (keyword === 'FROM') stage += 1;
    out.push({ keyword, args: (match[2] as string).replace(/\s+/g, ' ').trim(), line: startLine, stage });
  });
  return out;
}

interface Stage {
  readonly index: number;
  readonly image: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

function stagesOf(instructions: readonly Instruction[]): Stage[] {
  return instructions
    .filter((instruction) => instruction.keyword === 'FROM')
    .map((from) => {
      const parts = from.args.split(' ').filter((part) => !part.startsWith('--'));
      const asIndex = parts.findIndex((part) => part.toLowerCase() === 'as');
      return {
        index: from.stage,
        image: parts[0] as string,
        name: asIndex >= 0 ? parts[asIndex + 1] : undefined,
        instructions: instructions.filter((instruction) => instruction.stage === from.stage),
      };
    });
}

/** ARG defaults declared before the first FROM (the ones a FROM line may use). */
function globalArgs(instructions: readonly Instruction[]): Map<string, string> {
  const args = new Map<string, string>();
  for (const instruction of instructions.filter((entry) => entry.keyword === 'ARG' && entry.stage === -1)) {
    const [name, value] = instruction.args.split('=', 2);
    args.set(name as string, (value ?? '').replace(/^"|"$/g, ''));
  }
  return args;
}

function expand(text: string, args: ReadonlyMap<string, string>): string {
  return text.replace(/\$\{(\w+)\}/g, (whole, name: string) => args.get(name) ?? whole);
}

/** The JSON-form arguments of CMD, ENTRYPOINT or HEALTHCHECK ... CMD. */
function jsonArgs(text: string): string[] {
  const start = text.indexOf('[');
  assert.ok(start >= 0, `expected exec (JSON) form: ${text}`);
  return JSON.parse(text.slice(start)) as string[];
}

// ---- .dockerignore ----

function dockerignorePatterns(): string[] {
  return readFileSync(fromRoot('.dockerignore'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

/** Docker's rule, reduced to what this file uses: a pattern matches the path or a parent of it (no "!" exceptions). */
function ignored(path: string, patterns: readonly string[]): boolean {
  const clean = posix.normalize(path).replace(/^\.\//, '').replace(/\/$/, '');
  return patterns.some((pattern) => {
    assert.ok(!pattern.startsWith('!'), 'the checker does not handle "!" exceptions; extend it');
    const body = pattern.replace(/^\//, '').replace(/\/$/, '');
    if (body.startsWith('**/')) {
      const suffix = body.slice(3);
      const regex = new RegExp(`(^|/)${suffix.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`);
      return clean.split('/').some((_part, index, parts) => regex.test(parts.slice(0, index + 1).join('/')));
    }
    const regex = new RegExp(`^${body.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/|$)`);
    return regex.test(clean);
  });
}

// ---- compose ----

function composeServices(): Record<string, Json> {
  // Compose resolves YAML merge keys (<<); so must the parser.
  const compose = asObject(parse(readFileSync(COMPOSE, 'utf8'), { merge: true }), 'compose.yaml');
  const services = asObject(compose['services'], 'services');
  return Object.fromEntries(Object.entries(services).map(([name, value]) => [name, asObject(value, `services.${name}`)]));
}

function environmentOf(service: Json): Record<string, string> {
  const env = service['environment'];
  if (env === undefined) return {};
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map((entry) => {
        const [name, ...rest] = String(entry).split('=');
        return [name as string, rest.join('=')];
      }),
    );
  }
  return Object.fromEntries(Object.entries(asObject(env, 'environment')).map(([name, value]) => [name, String(value)]));
}

interface Mount {
  readonly source: string;
  readonly target: string;
  readonly readOnly: boolean;
}

function mountsOf(service: Json): Mount[] {
  return (service['volumes'] === undefined ? [] : asArray(service['volumes'], 'volumes')).map((entry) => {
    assert.equal(typeof entry, 'string', 'volumes use the short syntax');
    const [source, target, mode] = String(entry).split(':');
    return { source: source as string, target: target as string, readOnly: (mode ?? '').split(',').includes('ro') };
  });
}

function buildTarget(service: Json): string | undefined {
  const build = service['build'];
  return build === undefined ? undefined : (asObject(build, 'build')['target'] as string | undefined);
}

function secretRefs(config: Config): Array<{ field: string; ref: { env: string } | { file: string } }> {
  return [
    ...config.hsm.members.map((member, index) => ({ field: `hsm.members[${index}].pin`, ref: member.pin })),
    ...config.keyStores.flatMap((store, s) =>
      store.credentials.map((credential, c) => ({ field: `keyStores[${s}].credentials[${c}].secretAccessKey`, ref: credential.secretAccessKey })),
    ),
    ...(config.redis === undefined ? [] : [{ field: 'redis.decisionSigningKey', ref: config.redis.decisionSigningKey }]),
    ...(config.redis?.password === undefined ? [] : [{ field: 'redis.password', ref: config.redis.password }]),
  ];
}

describe('deploy/docker: Dockerfile', () => {
  const text = readFileSync(DOCKERFILE, 'utf8');
  const instructions = parseDockerfile(text);
  const stages = stagesOf(instructions);
  const final = stages[stages.length - 1] as Stage;
  const args = globalArgs(instructions);

  it('passes dockerfile-utils validation with no errors or warnings', () => {
    const diagnostics = dockerfileUtils.validate(text);
    assert.deepEqual(
      diagnostics.map((diagnostic) => `line ${diagnostic.range.start.line + 1}: ${diagnostic.message}`),
      [],
    );
    // The linter is live: a broken file does produce diagnostics.
    assert.ok(dockerfileUtils.validate('FROM debian:bookworm-slim\nCOPY --bogus a /b\nuser root\n').length >= 2);
  });

  it('agrees with dockerfile-ast on the instructions and stages, when that parser is installed', async (t) => {
    const require = createRequire(import.meta.url);
    let specifier: string;
    try {
      specifier = require.resolve('dockerfile-ast');
    } catch {
      t.skip('dockerfile-ast (a dependency of dockerfile-utils) is not resolvable here; the plain-text parser stands alone');
      return;
    }
    interface AstInstruction {
      getKeyword(): string;
    }
    interface AstFrom extends AstInstruction {
      getBuildStage(): string | null;
    }
    const ast = (await import(specifier)) as { DockerfileParser: { parse(content: string): { getInstructions(): AstInstruction[]; getFROMs(): AstFrom[] } } };
    const parsed = ast.DockerfileParser.parse(text);
    assert.deepEqual(
      parsed.getInstructions().map((instruction) => instruction.getKeyword()),
      instructions.map((instruction) => instruction.keyword),
    );
    assert.deepEqual(
      parsed.getFROMs().map((from) => from.getBuildStage() ?? undefined),
      stages.map((stage) => stage.name),
    );
  });

  it('is multi-stage: npm ci, tsc and a production prune in a build stage; the runtime copies from it', () => {
    assert.ok(stages.length > 1, 'more than one FROM');
    const build = stages.find((stage) => stage.name === 'build');
    assert.ok(build !== undefined, 'a stage named build');
    const runs = build.instructions.filter((instruction) => instruction.keyword === 'RUN').map((instruction) => instruction.args).join('\n');
    assert.match(runs, /\bnpm ci\b/);
    assert.match(runs, /\btsc -p tsconfig\.json\b/);
    assert.match(runs, /\bnpm prune --omit=dev\b/);
    assert.equal(final.name, 'runtime', 'the default (last) stage is the proxy');
    const copiesFromBuild = final.instructions.filter((instruction) => instruction.keyword === 'COPY' && instruction.args.includes('--from=build'));
    assert.ok(copiesFromBuild.some((instruction) => instruction.args.includes('node_modules')));
    assert.ok(copiesFromBuild.some((instruction) => instruction.args.includes('dist/src')));
    // The package root the proxy looks for at run time (src/lib/paths.ts): package.json + contracts/.
    assert.ok(final.instructions.some((instruction) => instruction.keyword === 'COPY' && /package\.json/.test(instruction.args)));
    assert.ok(final.instructions.some((instruction) => instruction.keyword === 'COPY' && /contracts/.test(instruction.args)));
  });

  it('pins every base image by tag, on a current Node LTS line and a slim Debian runtime', () => {
    const nodeVersion = args.get('NODE_VERSION') ?? '';
    assert.match(nodeVersion, /^\d+\.\d+\.\d+$/, 'NODE_VERSION is an exact version');
    const major = Number(nodeVersion.split('.')[0]);
    assert.ok(major >= 22 && major % 2 === 0, `Node ${nodeVersion} is an even (LTS) line, 22 or later`);
    const stageNames = new Set(stages.map((stage) => stage.name));
    for (const stage of stages) {
      if (stageNames.has(stage.image)) continue;
      const image = expand(stage.image, args);
      assert.doesNotMatch(image, /\$\{/, `${stage.image}: every variable has a default`);
      const tag = image.split(':')[1];
      assert.ok(tag !== undefined && tag !== '' && tag !== 'latest', `${image} is pinned by a tag`);
    }
    assert.match(expand(final.image, args), new RegExp(`^node:${nodeVersion.replace(/\./g, '\\.')}-bookworm-slim$`));
  });

  it('runs the final stage as a non-root numeric user', () => {
    const users = final.instructions.filter((instruction) => instruction.keyword === 'USER');
    const user = users[users.length - 1]?.args ?? '';
    assert.match(user, /^\d+(:\d+)?$/, 'numeric uid[:gid], so Kubernetes runAsNonRoot can verify it');
    assert.notEqual(Number(user.split(':')[0]), 0);
    // Every stage that runs a service is non-root too (the HSM node).
    const hsmNode = stages.find((stage) => stage.name === 'hsm-node');
    assert.ok(hsmNode?.instructions.some((instruction) => instruction.keyword === 'USER' && /^[1-9]\d*(:\d+)?$/.test(instruction.args)));
  });

  it('carries no secret in ENV or ARG', () => {
    for (const instruction of instructions.filter((entry) => entry.keyword === 'ENV' || entry.keyword === 'ARG')) {
      for (const assignment of instruction.args.split(/\s+(?=\w+=)/)) {
        const [name, value] = assignment.split('=', 2);
        assert.ok(!looksSecret(name as string), `line ${instruction.line}: ${instruction.keyword} ${name} looks like a secret`);
        // A long random-looking value (key, token) would be a secret whatever its name.
        assert.doesNotMatch(value ?? '', /[A-Za-z0-9+/=_-]{32,}/, `line ${instruction.line}: ${instruction.keyword} ${name} has a random-looking value`);
      }
    }
  });

  it('exposes 8443 (XKS), 9443 (admin) and 9464 (metrics) and declares the audit log directory a volume', () => {
    const ports = final.instructions
      .filter((instruction) => instruction.keyword === 'EXPOSE')
      .flatMap((instruction) => instruction.args.split(' ').map((port) => port.replace(/\/tcp$/, '')));
    assert.deepEqual(new Set(ports), new Set(['8443', '9443', '9464']));
    const volumes = final.instructions.filter((instruction) => instruction.keyword === 'VOLUME').flatMap((instruction) => jsonArgs(instruction.args));
    assert.ok(volumes.includes('/var/log/hyok-proxy'), 'the audit log directory is a volume (read-only root filesystem)');
  });

  it('has a HEALTHCHECK that runs the node script shipped in the image (no curl)', () => {
    const checks = final.instructions.filter((instruction) => instruction.keyword === 'HEALTHCHECK');
    assert.equal(checks.length, 1);
    const command = jsonArgs((checks[0] as Instruction).args);
    assert.equal(command[0], 'node');
    assert.doesNotMatch(command.join(' '), /\bcurl\b|\bwget\b/);
    const script = command[1] as string;
    const workdir = final.instructions.find((instruction) => instruction.keyword === 'WORKDIR')?.args ?? '/';
    const copied = final.instructions
      .filter((instruction) => instruction.keyword === 'COPY' && !instruction.args.includes('--from='))
      .map((instruction) => instruction.args.split(' ').filter((part) => !part.startsWith('--')))
      .filter((parts) => posix.resolve(workdir, parts[parts.length - 1] as string) === script)
      .map((parts) => parts[0]);
    assert.deepEqual(copied, ['deploy/docker/healthcheck.mjs'], `${script} is deploy/docker/healthcheck.mjs`);
  });

  it('lets a build argument choose the PKCS#11 packages and ships the p11-kit 0.25 client module', () => {
    const arg = final.instructions.find((instruction) => instruction.keyword === 'ARG' && instruction.args.startsWith('PKCS11_DEB_PACKAGES'));
    assert.ok(arg !== undefined, 'ARG PKCS11_DEB_PACKAGES in the runtime stage');
    assert.ok(final.instructions.some((instruction) => instruction.keyword === 'RUN' && instruction.args.includes('${PKCS11_DEB_PACKAGES}')));
    const p11kit = stages.find((stage) => stage.name === 'p11kit');
    assert.ok(p11kit?.instructions.some((instruction) => instruction.keyword === 'RUN' && instruction.args.includes('build-p11kit.sh')), 'p11-kit is built by the project script');
    assert.ok(final.instructions.some((instruction) => instruction.keyword === 'COPY' && instruction.args.includes('--from=p11kit') && instruction.args.includes('p11-kit-client.so')));
    const entrypoint = jsonArgs(final.instructions.find((instruction) => instruction.keyword === 'ENTRYPOINT')?.args ?? '');
    assert.deepEqual(entrypoint.slice(0, 2), ['/usr/bin/tini', '--'], 'an init that reaps agents and forwards SIGHUP');
  });

  it('copies only files that exist and that .dockerignore lets through; .dockerignore keeps the host build and dev secrets out', () => {
    const patterns = dockerignorePatterns();
    for (const entry of ['node_modules', 'var', 'dist', '.git', 'test-output', '.cache', 'loadtest/results']) {
      assert.ok(ignored(entry, patterns), `.dockerignore excludes ${entry}`);
    }
    assert.ok(ignored('var/dev/secrets/hsm-pin', patterns), 'var/ is excluded with everything under it');
    for (const instruction of instructions.filter((entry) => (entry.keyword === 'COPY' || entry.keyword === 'ADD') && !entry.args.includes('--from='))) {
      assert.equal(instruction.keyword, 'COPY', `line ${instruction.line}: COPY, not ADD`);
      const parts = instruction.args.split(' ').filter((part) => !part.startsWith('--'));
      for (const source of parts.slice(0, -1)) {
        assert.ok(existsSync(fromRoot(source)), `line ${instruction.line}: ${source} exists`);
        assert.ok(!ignored(source, patterns), `line ${instruction.line}: ${source} is not excluded by .dockerignore`);
      }
    }
  });
});

describe('deploy/docker: compose.yaml and the demo config', () => {
  const services = composeServices();
  const dockerfileStages = new Set(stagesOf(parseDockerfile(readFileSync(DOCKERFILE, 'utf8'))).map((stage) => stage.name));
  const proxies = Object.entries(services).filter(([, service]) => buildTarget(service) === 'runtime' && service['entrypoint'] === undefined);
  const hsmNodes = Object.entries(services).filter(([, service]) => buildTarget(service) === 'hsm-node');
  const demo = parse(readFileSync(DEMO_CONFIG, 'utf8')) as unknown;

  it('runs three proxy replicas, Redis, three HSM nodes and a one-shot init, from stages the Dockerfile has', () => {
    const replicas = proxies.reduce((total, [, service]) => {
      const deploy = service['deploy'] === undefined ? {} : asObject(service['deploy'], 'deploy');
      return total + (typeof deploy['replicas'] === 'number' ? deploy['replicas'] : 1);
    }, 0);
    assert.equal(replicas, 3, 'three proxy replicas');
    assert.match(String(services['redis']?.['image']), /^redis:\d+(\.\d+)*-/, 'redis pinned by tag');
    assert.equal(hsmNodes.length, 3);
    for (const service of Object.values(services)) {
      const target = buildTarget(service);
      if (target !== undefined) assert.ok(dockerfileStages.has(target), `build target ${target} is a Dockerfile stage`);
      const build = service['build'] === undefined ? undefined : asObject(service['build'], 'build');
      if (build !== undefined) {
        assert.ok(existsSync(resolve(DOCKER_DIR, String(build['context']), String(build['dockerfile']))), 'build context and dockerfile resolve');
      }
    }
    const init = services['init'];
    assert.ok(init !== undefined);
    assert.deepEqual(init['entrypoint'], ['node', '/demo/init.mjs']);
    assert.ok(mountsOf(init).some((mount) => mount.source === './demo' && mount.target === '/demo' && mount.readOnly));
    for (const [name, service] of [...proxies, ...hsmNodes]) {
      const dependsOn = asObject(service['depends_on'], `${name}.depends_on`);
      assert.deepEqual(dependsOn['init'], { condition: 'service_completed_successfully' }, `${name} waits for init`);
    }
  });

  it('hardens the proxies: read-only root, non-root user, no capabilities, config and secrets mounted read-only, own audit volume', () => {
    const auditVolumes = new Set<string>();
    for (const [name, service] of proxies) {
      assert.equal(service['read_only'], true, `${name}: read_only`);
      assert.match(String(service['user']), /^[1-9]\d*:\d+$/, `${name}: non-root numeric user`);
      assert.deepEqual(service['cap_drop'], ['ALL'], `${name}: cap_drop ALL`);
      assert.equal(service['cap_add'], undefined, `${name}: no capability added`);
      assert.ok(asArray(service['security_opt'], 'security_opt').includes('no-new-privileges:true'));
      assert.ok(asArray(service['tmpfs'], 'tmpfs').includes('/tmp'), `${name}: /tmp is a tmpfs`);
      const mounts = mountsOf(service);
      const config = mounts.find((mount) => mount.target === '/etc/hyok-proxy/hyok-proxy.yaml');
      assert.ok(config?.readOnly === true && config.source === './demo/hyok-proxy.yaml', `${name}: config mounted read-only`);
      assert.ok(mounts.find((mount) => mount.target === '/run/hyok-demo')?.readOnly === true, `${name}: secrets read-only`);
      const audit = mounts.find((mount) => mount.target === '/var/log/hyok-proxy');
      assert.ok(audit !== undefined && !audit.readOnly, `${name}: writable audit volume`);
      auditVolumes.add(audit.source);
      for (const port of asArray(service['ports'], 'ports')) assert.match(String(port), /^127\.0\.0\.1:/, `${name}: published on loopback only`);
    }
    assert.equal(auditVolumes.size, proxies.length, 'one audit log per replica (a hash chain has one writer)');
    for (const [name, service] of hsmNodes) {
      assert.equal(service['read_only'], true, `${name}: read_only`);
      assert.match(String(service['user']), /^[1-9]\d*:\d+$/);
      assert.equal(service['network_mode'], 'none', `${name}: reached over its socket only`);
    }
  });

  it('writes no secret inline: no secret-named variable, no password on a command line', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const [variable, value] of Object.entries(environmentOf(service))) {
        assert.ok(!looksSecret(variable), `${name}: environment ${variable} looks like a secret`);
        assert.doesNotMatch(value, /[A-Za-z0-9+/=]{32,}/, `${name}: environment ${variable} has a random-looking value`);
      }
      const commandLine = [service['command'], service['entrypoint']].flat().filter((part) => part !== undefined).join(' ');
      assert.doesNotMatch(commandLine, /requirepass|--pass|\s-a\s|--pin/, `${name}: no secret on the command line`);
    }
  });

  it('validates the demo config with the proxy schema, all secrets as files in the read-only secrets volume', () => {
    const parsed = ConfigSchema.safeParse(demo);
    assert.ok(parsed.success, `demo config: ${parsed.success ? '' : JSON.stringify(parsed.error.issues)}`);
    const config = parsed.data;
    assert.equal(config.proxy.fleetSize, proxies.length);
    const refs = secretRefs(config);
    assert.ok(refs.length >= 4);
    for (const { field, ref } of refs) {
      assert.ok(SecretRefSchema.safeParse(ref).success);
      assert.ok('file' in ref && ref.file.startsWith('/run/hyok-demo/secrets/'), `${field} is a file in the secrets volume`);
    }
    assert.deepEqual(config.audit.destination, { file: '/var/log/hyok-proxy/audit.log' }, 'the audit log is in the declared volume');
    // The keys the init service imports are the ones the config serves.
    assert.deepEqual(
      config.keyStores.flatMap((store) => store.keys.map((key) => [key.id, key.enabled])),
      DEV_KEYS.map((key) => [key.id, key.enabled]),
    );
    assert.equal(config.hsm.healthCheck.keyLabel, DEV_HEALTH_CHECK_KEY);
  });

  it('wires each member to its HSM node: token label, socket in the shared volume, the client module the image ships', () => {
    const config = ConfigSchema.parse(demo);
    const dockerfile = readFileSync(DOCKERFILE, 'utf8');
    const nodes = hsmNodes.map(([, service]) => environmentOf(service));
    assert.deepEqual(
      config.hsm.members.map((member) => [member.tokenLabel, member.environment['P11_KIT_SERVER_ADDRESS']]),
      nodes.map((env) => [env['HSM_TOKEN_LABEL'], `unix:path=${env['HSM_NODE_SOCKET'] ?? ''}`]),
    );
    for (const member of config.hsm.members) assert.ok(dockerfile.includes(` ${member.module}\n`), `${member.module} is where the image puts p11-kit-client.so`);
    const socketDir = posix.dirname(nodes[0]?.['HSM_NODE_SOCKET'] ?? '');
    for (const [name, service] of [...proxies, ...hsmNodes]) {
      assert.ok(mountsOf(service).some((mount) => mount.source === 'p11-sockets' && mount.target === socketDir), `${name} mounts the socket volume`);
    }
    // Every file the config names is inside a volume the proxies mount.
    const files = [config.server.tls.certFile, config.server.tls.keyFile, config.server.tls.clientAuth.caFile ?? '', config.admin.clientCertificates?.caFile ?? ''];
    for (const [name, service] of proxies) {
      const targets = mountsOf(service).map((mount) => mount.target);
      for (const file of files) assert.ok(targets.some((target) => file.startsWith(`${target}/`)), `${name}: ${file} is in a mounted volume`);
    }
  });

  it('is accepted by `docker compose config` when the compose plugin is available', (t) => {
    const version = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8', timeout: 20_000 });
    if (version.status !== 0) {
      t.skip(`docker compose is not available here (${(version.error?.message ?? version.stderr).trim().split('\n')[0] ?? ''}); the structure checks above stand alone`);
      return;
    }
    const result = spawnSync('docker', ['compose', '-f', COMPOSE, 'config', '-q'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(result.status, 0, result.stderr);
  });
});

// ---- The image's HEALTHCHECK script against real listeners ----

function runHealthcheck(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolveRun) => {
    const child = spawn(process.execPath, [HEALTHCHECK], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.once('exit', (code) => resolveRun({ code, output }));
  });
}

async function listen(options: ServerOptions, status: number): Promise<{ server: Server; port: number }> {
  const server = createServer(options, (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end('{}');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

describe('deploy/docker: healthcheck.mjs', () => {
  let tls: { cert: string; key: string; ca: string };
  const servers: Server[] = [];

  before(async () => {
    const ca = await createCertificateAuthority({ commonName: 'healthcheck test CA' });
    const leaf = await issueCertificate(ca, { commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], usage: 'server' });
    tls = { cert: leaf.certPem, key: leaf.keyPem, ca: ca.certPem };
  });
  after(() => {
    for (const server of servers) server.close();
  });

  it('exits 0 on 200 from /ping and 1 on any other status or no listener', async () => {
    const up = await listen({ cert: tls.cert, key: tls.key }, 200);
    const sick = await listen({ cert: tls.cert, key: tls.key }, 503);
    servers.push(up.server, sick.server);
    const ok = await runHealthcheck({ HYOK_LISTEN_PORT: String(up.port) });
    assert.equal(ok.code, 0, ok.output);
    const bad = await runHealthcheck({ HYOK_HEALTHCHECK_URL: `https://127.0.0.1:${sick.port}/ping` });
    assert.equal(bad.code, 1, bad.output);
    const closed = await freePort();
    const none = await runHealthcheck({ HYOK_LISTEN_PORT: String(closed) });
    assert.equal(none.code, 1, none.output);
  });

  it('counts a listener that demands a client certificate as alive, over TLS 1.3 and TLS 1.2', async () => {
    for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
      const strict = await listen({ cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true, maxVersion }, 200);
      servers.push(strict.server);
      const result = await runHealthcheck({ HYOK_LISTEN_PORT: String(strict.port) });
      assert.equal(result.code, 0, `${maxVersion}: ${result.output}`);
      assert.match(result.output, /alive \(listener requires a client certificate/);
    }
  });
});

// ---- The demo, run on this machine without containers ----

/** The demo config with the containers' paths moved under `root`, the local p11-kit client and ephemeral loopback ports. */
function localDemoConfig(root: string, clientModule: string, redisPort: number): string {
  const raw = parse(readFileSync(DEMO_CONFIG, 'utf8')) as Json;
  const relocate = (value: unknown): unknown => {
    if (typeof value === 'string') return value.replace(/(^|unix:path=)\/(run|var)\//, (_whole, lead: string, top: string) => `${lead}${root}/${top}/`);
    if (Array.isArray(value)) return value.map(relocate);
    if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([key, child]) => [key, relocate(child)]));
    return value;
  };
  const config = relocate(raw) as Json;
  const server = asObject(config['server'], 'server');
  server['host'] = '127.0.0.1';
  const hsm = asObject(config['hsm'], 'hsm');
  for (const member of asArray(hsm['members'], 'members')) asObject(member, 'member')['module'] = clientModule;
  config['admin'] = { ...asObject(config['admin'], 'admin'), host: '127.0.0.1', port: 0 };
  config['metrics'] = { ...asObject(config['metrics'], 'metrics'), host: '127.0.0.1', port: 0 };
  config['redis'] = { ...asObject(config['redis'], 'redis'), url: `redis://127.0.0.1:${redisPort}` };
  return stringify(config);
}

function accepts(path: string): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((resolveAccepts) => {
    const socket = connect(path);
    const done = (ok: boolean): void => {
      socket.destroy();
      resolveAccepts(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(500, () => done(false));
  });
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** RESP reply to one inline command on a fresh connection. */
function redisReply(port: number, command: string): Promise<string> {
  return new Promise((resolveReply, reject) => {
    const socket = connect(port, '127.0.0.1');
    socket.setTimeout(2000, () => socket.destroy(new Error('redis timeout')));
    socket.once('connect', () => socket.write(`${command}\r\n`));
    socket.once('data', (data) => {
      socket.destroy();
      resolveReply(data.toString('utf8').trim());
    });
    socket.once('error', reject);
  });
}

function runInit(root: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolveRun) => {
    const child = spawn(process.execPath, [INIT_SCRIPT], {
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HYOK_DEMO_ROOT: root, HYOK_APP_DIR: fromRoot() },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const collect = (chunk: Buffer): void => {
      output += chunk.toString('utf8');
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.once('exit', (code) => {
      writeFileSync(logFile('deploy-demo-init'), output, { flag: 'a' });
      resolveRun({ code, output });
    });
  });
}

describe('deploy/docker: the demo init, HSM nodes and a proxy on the demo config, run locally', { timeout: 240_000 }, () => {
  const root = mkdtempSync(join(tmpdir(), 'hyok-demo-'));
  const at = (path: string): string => join(root, path);
  const groups: number[] = [];
  let redis: ChildProcess | undefined;
  let redisPort = 0;
  let proxy: ProxyProcess | undefined;
  let initOutput = '';

  before(async () => {
    const result = await runInit(root);
    initOutput = result.output;
    assert.equal(result.code, 0, `init failed:\n${result.output}`);
    registerSecret('pin', readFileSync(at('run/hyok-demo/secrets/hsm-pin'), 'utf8').trim());
    registerSecret('sigv4-secret', readFileSync(at('run/hyok-demo/secrets/sigv4-secret'), 'utf8').trim());
    registerSecret('sigv4-secret', readFileSync(at('run/hyok-demo/secrets/decision-signing-key'), 'utf8').trim());
    registerSecret('sigv4-secret', readFileSync(at('run/hyok-demo/secrets/redis-password'), 'utf8').trim());
    for (const file of ['server-key.pem', 'kms-client-key.pem', 'admin-key.pem']) {
      registerSecret('private-key', readFileSync(at(`run/hyok-demo/pki/${file}`), 'utf8').split('\n')[1] ?? '');
    }
  });

  after(async () => {
    await proxy?.stop();
    for (const group of groups) signalGroup(group, 'SIGKILL');
    redis?.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  });

  it('init makes private secrets, the PKI and three tokens with identical keys, owned by the service user, and runs once', async () => {
    for (const file of ['hsm-pin', 'sigv4-secret', 'decision-signing-key', 'redis-password']) {
      const stat = statSync(at(`run/hyok-demo/secrets/${file}`));
      assert.equal(stat.mode & 0o777, 0o600, `${file} is 0600`);
      if (process.getuid?.() === 0) assert.equal(stat.uid, SERVICE_UID, `${file} belongs to the proxies' user`);
    }
    assert.equal(statSync(at('run/hyok-demo/pki/server-key.pem')).mode & 0o777, 0o600);
    assert.ok(!existsSync(at('run/hyok-demo/pki/ca-key.pem')), 'the demo CA key is not kept');
    for (const n of [1, 2, 3]) assert.ok(existsSync(at(`var/lib/hsm-node-${n}/softhsm2.conf`)));
    // `keys check` printed one line per key with the same KCV on every member.
    for (const key of [...DEV_KEYS.map((entry) => entry.id), DEV_HEALTH_CHECK_KEY]) {
      assert.match(initOutput, new RegExp(`^${key}\\thsm-node-1=(\\w+) hsm-node-2=\\1 hsm-node-3=\\1\\tok$`, 'm'), `${key} identical on all three tokens`);
    }
    for (const secret of ['hsm-pin', 'sigv4-secret', 'redis-password']) {
      assert.ok(!initOutput.includes(readFileSync(at(`run/hyok-demo/secrets/${secret}`), 'utf8').trim()), `init never prints ${secret}`);
    }
    const again = await runInit(root);
    assert.equal(again.code, 0);
    assert.match(again.output, /already initialised/);
  });

  it('Redis accepts only the password init wrote into its config', async () => {
    redisPort = await freePort();
    redis = spawn('redis-server', [at('run/redis-config/redis.conf'), '--port', String(redisPort), '--bind', '127.0.0.1', '--dir', root], { stdio: 'ignore' });
    await until('redis', async () => ((await redisReply(redisPort, 'PING').catch(() => '')) === '' ? undefined : true));
    assert.match(await redisReply(redisPort, 'PING'), /^-NOAUTH/);
    const password = readFileSync(at('run/hyok-demo/secrets/redis-password'), 'utf8').trim();
    assert.match(await redisReply(redisPort, `AUTH ${password}`), /^\+OK/);
  });

  it('the HSM node entrypoint exports each token with p11-kit server 0.25', async () => {
    const p11kit = locateP11Kit();
    for (const n of [1, 2, 3]) {
      const socket = at(`run/p11-kit/hsm-node-${n}.sock`);
      const child = spawn('sh', [HSM_ENTRYPOINT], {
        detached: true,
        stdio: ['ignore', 'ignore', 'ignore'],
        env: {
          PATH: process.env['PATH'] ?? '/usr/bin:/bin',
          HSM_NODE_SOCKET: socket,
          HSM_TOKEN_LABEL: `hyok-demo-${n}`,
          SOFTHSM2_CONF: at(`var/lib/hsm-node-${n}/softhsm2.conf`),
          HSM_PKCS11_MODULE: findSoftHsmModule(),
          P11KIT_PREFIX: p11kit.prefix,
        },
      });
      if (child.pid !== undefined) groups.push(child.pid);
      await until(`hsm-node-${n} socket`, async () => ((await accepts(socket)) ? true : undefined));
    }
  });

  it('a proxy on the demo config serves: HEALTHCHECK script, three ACTIVE members, encrypt and decrypt, Redis, audit, SIGHUP reload', async () => {
    const p11kit = locateP11Kit();
    const configFile = at('etc/hyok-proxy/hyok-proxy.yaml');
    mkdirSync(at('etc/hyok-proxy'), { recursive: true });
    mkdirSync(at('var/log/hyok-proxy'), { recursive: true });
    writeFileSync(configFile, localDemoConfig(root, p11kit.clientModule, redisPort));
    const loaded = loadConfig(configFile);
    assert.equal(loaded.config.hsm.members.length, 3);

    proxy = await ProxyProcess.start({ configFile, logFile: logFile('deploy-demo-proxy') });
    const health = await runHealthcheck({ HYOK_LISTEN_PORT: String(proxy.port) });
    assert.equal(health.code, 0, health.output);
    assert.match(health.output, /^ok$/m);

    const store = loaded.config.keyStores[0];
    assert.ok(store !== undefined);
    const client = new XksTestClient({
      baseUrl: `https://localhost:${proxy.port}`,
      uriPrefix: store.uriPrefix,
      credential: { accessKeyId: store.credentials[0]?.accessKeyId ?? '', secretAccessKey: readFileSync(at('run/hyok-demo/secrets/sigv4-secret'), 'utf8').trim() },
      ca: readFileSync(at('run/hyok-demo/pki/ca.pem'), 'utf8'),
    });
    const members = await until('three ACTIVE members', async () => {
      const response = await client.health();
      const fleet = (response.body['ekmFleetDetails'] ?? []) as Array<Record<string, string>>;
      return response.status === 200 && fleet.length === 3 && fleet.every((member) => member['healthStatus'] === 'ACTIVE') ? fleet : undefined;
    });
    assert.deepEqual(members.map((member) => member['id']).sort(), ['hsm-node-1', 'hsm-node-2', 'hsm-node-3']);

    const plaintext = Buffer.from('compose demo round trip');
    const { decrypted } = await client.roundTrip('foo', plaintext, Buffer.from('demo additional data'));
    assert.equal(decrypted.status, 200, decrypted.text);
    assert.equal(Buffer.from(decrypted.body['plaintext'] as string, 'base64').toString('utf8'), plaintext.toString('utf8'));

    const metricsUrl = proxy.metricsUrl;
    assert.ok(metricsUrl !== undefined);
    await until('hyok_redis_up 1', async () => {
      const text = await fetch(metricsUrl).then((response) => response.text());
      return /^hyok_redis_up 1$/m.test(text) ? true : undefined;
    });

    const records = readAuditRecords(at('var/log/hyok-proxy/audit.log'));
    assert.ok(records.some((record) => record['kmsOperation'] === 'Encrypt'), 'the encrypt is in the audit log file');

    const log = logFile('deploy-demo-proxy');
    proxy.child.kill('SIGHUP');
    await until('configuration reloaded', async () => (readFileSync(log, 'utf8').includes('configuration reloaded') ? true : undefined));
  });
});
