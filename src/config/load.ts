import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { ZodError } from 'zod';
import { ConfigSchema, SECRET_ACCESS_KEY_PATTERN, type Config, type SecretRef } from './schema.js';

/** A configuration problem; each issue names the file, the field and what was expected. */
export class ConfigError extends Error {
  readonly issues: readonly string[];

  constructor(issues: readonly string[]) {
    super(`invalid configuration:\n  ${issues.join('\n  ')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export interface LoadedConfig {
  readonly config: Config;
  /** Absolute path of the file it came from. */
  readonly file: string;
}

type Environment = Readonly<Record<string, string | undefined>>;

export function formatFieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(root)' : out;
}

function zodIssues(file: string, error: ZodError): string[] {
  return error.issues.map((issue) => `${file}: ${formatFieldPath(issue.path)}: ${issue.message}`);
}

/** Parses and validates; secrets are checked for presence and shape but not kept in the result. */
export function loadConfig(file: string, env: Environment = process.env): LoadedConfig {
  const absolute = resolve(file);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (error) {
    throw new ConfigError([`${absolute}: cannot read the file (${(error as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  return parseConfigText(text, absolute, env);
}

export function parseConfigText(text: string, file: string, env: Environment = process.env): LoadedConfig {
  const document = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (document.errors.length > 0) {
    throw new ConfigError(document.errors.map((error) => `${file}: ${(error.message.split('\n')[0] ?? 'YAML error').replace(/:$/, '')}`));
  }
  const raw: unknown = document.toJS();
  const withEnv = applyEnvironmentOverrides(raw, file, env);
  const parsed = ConfigSchema.safeParse(withEnv);
  if (!parsed.success) throw new ConfigError(zodIssues(file, parsed.error));
  const config = resolveRelativePaths(parsed.data, dirname(file));
  preflightSecrets(config, file, env);
  return { config: deepFreeze(config), file };
}

function portFromEnvironment(name: string, value: string, file: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) throw new ConfigError([`${file}: environment ${name}: expected a port number 0-65535`]);
  return Number(value);
}

/**
 * HYOK_LISTEN_HOST, HYOK_LISTEN_PORT, HYOK_METRICS_PORT and HYOK_ADMIN_PORT override the file (containers, tests,
 * a second dev instance). The admin port applies only to a file that has an admin section.
 */
function applyEnvironmentOverrides(raw: unknown, file: string, env: Environment): unknown {
  const given = (name: string): string | undefined => (env[name] === undefined || env[name] === '' ? undefined : env[name]);
  const host = given('HYOK_LISTEN_HOST');
  const port = given('HYOK_LISTEN_PORT');
  const metricsPort = given('HYOK_METRICS_PORT');
  const adminPort = given('HYOK_ADMIN_PORT');
  if (host === undefined && port === undefined && metricsPort === undefined && adminPort === undefined) return raw;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  const root = raw as Record<string, unknown>;
  const section = (name: string): Record<string, unknown> =>
    ({ ...(root[name] !== null && typeof root[name] === 'object' ? (root[name] as Record<string, unknown>) : {}) });
  const next: Record<string, unknown> = { ...root };
  if (host !== undefined || port !== undefined) {
    const server = section('server');
    if (host !== undefined) server['host'] = host;
    if (port !== undefined) server['port'] = portFromEnvironment('HYOK_LISTEN_PORT', port, file);
    next['server'] = server;
  }
  if (metricsPort !== undefined) next['metrics'] = { ...section('metrics'), port: portFromEnvironment('HYOK_METRICS_PORT', metricsPort, file) };
  if (adminPort !== undefined && root['admin'] !== undefined) next['admin'] = { ...section('admin'), port: portFromEnvironment('HYOK_ADMIN_PORT', adminPort, file) };
  return next;
}

function resolveRelativePaths(config: Config, baseDir: string): Config {
  const abs = (path: string): string => (isAbsolute(path) ? path : resolve(baseDir, path));
  const secret = (ref: SecretRef): SecretRef => ('file' in ref ? { file: abs(ref.file) } : ref);
  const destination = <T>(value: T): T =>
    value !== null && typeof value === 'object' && 'file' in value ? ({ file: abs((value as { file: string }).file) } as T) : value;
  const tls = config.server.tls;
  return {
    ...config,
    server: {
      ...config.server,
      tls: {
        ...tls,
        certFile: abs(tls.certFile),
        keyFile: abs(tls.keyFile),
        clientAuth: {
          ...tls.clientAuth,
          ...(tls.clientAuth.caFile === undefined ? {} : { caFile: abs(tls.clientAuth.caFile) }),
        },
      },
    },
    hsm: {
      ...config.hsm,
      members: config.hsm.members.map((member) => ({ ...member, module: abs(member.module), pin: secret(member.pin) })),
    },
    ...(config.redis === undefined
      ? {}
      : {
          redis: {
            ...config.redis,
            decisionSigningKey: secret(config.redis.decisionSigningKey),
            ...(config.redis.password === undefined ? {} : { password: secret(config.redis.password) }),
          },
        }),
    keyStores: config.keyStores.map((store) => ({
      ...store,
      credentials: store.credentials.map((credential) => ({ ...credential, secretAccessKey: secret(credential.secretAccessKey) })),
    })),
    policy: config.policy.file === undefined ? config.policy : { ...config.policy, file: abs(config.policy.file) },
    admin: {
      ...config.admin,
      ...(config.admin.tls === undefined ? {} : { tls: { certFile: abs(config.admin.tls.certFile), keyFile: abs(config.admin.tls.keyFile) } }),
      ...(config.admin.clientCertificates === undefined
        ? {}
        : { clientCertificates: { ...config.admin.clientCertificates, caFile: abs(config.admin.clientCertificates.caFile) } }),
      ...(config.admin.jwt?.jwksFile === undefined ? {} : { jwt: { ...config.admin.jwt, jwksFile: abs(config.admin.jwt.jwksFile) } }),
    },
    audit: { destination: destination(config.audit.destination) },
    logging: { ...config.logging, destination: destination(config.logging.destination) },
  };
}

/** Reads a secret; errors name the field and never include the value. */
export function readSecret(ref: SecretRef, field: string, env: Environment = process.env): string {
  if ('env' in ref) {
    const value = env[ref.env];
    if (value === undefined || value === '') throw new ConfigError([`${field}: environment variable ${ref.env} is not set`]);
    return value;
  }
  let text: string;
  try {
    text = readFileSync(ref.file, 'utf8');
  } catch (error) {
    throw new ConfigError([`${field}: cannot read secret file ${ref.file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  // Files written by editors or `echo` end with a newline that is not part of the secret.
  const value = text.replace(/\r?\n$/, '');
  if (value === '') throw new ConfigError([`${field}: secret file ${ref.file} is empty`]);
  return value;
}

function preflightSecrets(config: Config, file: string, env: Environment): void {
  const issues: string[] = [];
  const check = (ref: SecretRef, field: string, pattern?: RegExp, expected?: string): void => {
    try {
      const value = readSecret(ref, `${file}: ${field}`, env);
      if (pattern !== undefined && !pattern.test(value)) issues.push(`${file}: ${field}: ${expected ?? 'has the wrong format'}`);
    } catch (error) {
      if (error instanceof ConfigError) issues.push(...error.issues);
      else throw error;
    }
  };
  config.hsm.members.forEach((member, index) => check(member.pin, `hsm.members[${index}].pin`));
  if (config.redis?.password !== undefined) check(config.redis.password, 'redis.password');
  if (config.redis !== undefined) check(config.redis.decisionSigningKey, 'redis.decisionSigningKey', /^.{32,}$/s, 'must be at least 32 characters');
  config.keyStores.forEach((store, s) =>
    store.credentials.forEach((credential, c) =>
      check(
        credential.secretAccessKey,
        `keyStores[${s}].credentials[${c}].secretAccessKey`,
        SECRET_ACCESS_KEY_PATTERN,
        "must be 43-64 characters of a-z, A-Z, 0-9, '/', '+' and '='",
      ),
    ),
  );
  if (issues.length > 0) throw new ConfigError(issues);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as Record<string, unknown>)) deepFreeze(child);
  }
  return value;
}
