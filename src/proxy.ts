import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { SecureContextOptions, TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';
import express, { type Request } from 'express';
import helmet from 'helmet';
import type { Logger } from 'pino';
import { startAdminServer } from './admin/server.js';
import { AuditLog } from './audit/audit-log.js';
import { CredentialStore } from './auth/credentials.js';
import { SigV4Verifier } from './auth/sigv4.js';
import { ConfigError, loadConfig, readSecret, type LoadedConfig } from './config/load.js';
import type { Config, SecretRef } from './config/schema.js';
import { OpenApiContract } from './contract/openapi.js';
import type { XksDependencies } from './contract/aws-xks/context.js';
import { renderXksError } from './contract/aws-xks/errors.js';
import { createXksRouter } from './contract/aws-xks/router.js';
import { captureStaticHeaders } from './listener/security-headers.js';
import { ProxyError } from './errors/proxy-error.js';
import { HsmCluster } from './hsm/cluster.js';
import { HealthMonitor } from './hsm/health.js';
import { KeyConsistency, type KeyExpectation } from './hsm/key-consistency.js';
import { HsmMember } from './hsm/member.js';
import { KeyCatalog, objectLabel } from './keys/catalog.js';
import { KeyService } from './keys/key-service.js';
import { createLogger } from './lib/logger.js';
import { DecisionCache } from './cache/decision-cache.js';
import { RedisStateNotifier, RedisTier } from './cache/redis.js';
import { keyRef, type StateDocument } from './state/document.js';
import { HsmStateStore } from './state/hsm-store.js';
import { KeyLifecycle } from './state/key-lifecycle.js';
import { effectiveKey } from './state/lifecycle.js';
import { LifecycleMaintenance } from './state/maintenance.js';
import { StateService } from './state/service.js';
import { FileWatchSet } from './lib/file-watch.js';
import { fromRoot } from './lib/paths.js';
import { ProxyMetrics } from './observability/metrics.js';
import { PolicyProvider } from './policy/provider.js';
import { checkClientCertificate, loadSecureContextOptions, serverTlsSettings } from './listener/tls.js';

export const PRODUCT_VERSION = '0.1.0';
const SIGV4_SERVICE = 'kms-xks-proxy';
const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;
const DRAIN_TIMEOUT_MS = 5000;

type Environment = Readonly<Record<string, string | undefined>>;

export interface ProxyOptions {
  /** Defaults to a logger built from the config's logging section. */
  readonly logger?: Logger;
  readonly env?: Environment;
  /** Reload automatically when the config, secret, policy or certificate files change (SIGHUP always works through reload()). */
  readonly watchFiles?: boolean;
  /** Applied to the configuration at start and at every reload (a worker of `serve --workers` adjusts its own). */
  readonly adjustConfig?: (loaded: LoadedConfig) => LoadedConfig;
}

export interface ReloadResult {
  readonly ok: boolean;
  readonly issues: readonly string[];
}

export interface RunningProxy {
  readonly server: HttpsServer;
  readonly port: number;
  readonly url: string;
  readonly metricsUrl: string | undefined;
  readonly adminUrl: string | undefined;
  readonly cluster: HsmCluster;
  /** Fleet state (lifecycle, kill switches, approvals). */
  readonly state: StateService;
  /** Background lifecycle work (scheduled rotation, pending crypto-erase); its ticks take a clock for tests. */
  readonly maintenance: LifecycleMaintenance;
  readonly metrics: ProxyMetrics;
  readonly logger: Logger;
  ready(): boolean;
  reload(): Promise<ReloadResult>;
  close(): Promise<void>;
}

function buildMembers(config: Config, env: Environment, logger: Logger): HsmMember[] {
  const { hsm } = config;
  return hsm.members.map(
    (member, index) =>
      new HsmMember(
        {
          id: member.id,
          model: member.model,
          module: member.module,
          tokenLabel: member.tokenLabel,
          weight: member.weight,
          zone: member.zone,
          agents: member.agents,
          environment: member.environment,
          readPin: () => readSecret(member.pin, `hsm.members[${index}].pin`, env),
          callTimeoutMs: hsm.callTimeoutMs,
          hungAfterMs: hsm.hungAfterMs,
          agentStartTimeoutMs: hsm.agentStartTimeoutMs,
          maxRestartBackoffMs: hsm.maxRestartBackoffMs,
          maxQueuedPerAgent: hsm.maxQueuedPerAgent,
          breaker: hsm.breaker,
          healthCheckKeyLabel: hsm.healthCheck.keyLabel,
          degradedLatencyMs: hsm.healthCheck.degradedLatencyMs,
        },
        logger.child({ component: 'hsm' }),
      ),
  );
}

function listen(server: HttpServer | HttpsServer, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

/** Every key object the members must hold identically: each live version of each key, plus the health-check key. */
function keyExpectations(catalog: KeyCatalog, config: Config, state: StateDocument): KeyExpectation[] {
  const byLabel = new Map<string, string | undefined>();
  for (const store of catalog.stores()) {
    for (const key of store.keys.values()) {
      const record = state.keys[keyRef(store.name, key.id)];
      const versions = record === undefined ? [1] : Object.entries(record.versions).filter(([, entry]) => entry.state !== 'destroyed').map(([version]) => Number(version));
      // The pin names version 1, the object provisioned by hand; later versions are made by rotation.
      for (const version of versions) byLabel.set(objectLabel(key, version), version === 1 ? (key.checkValue ?? byLabel.get(key.label)) : undefined);
    }
  }
  byLabel.set(config.hsm.healthCheck.keyLabel, config.hsm.healthCheck.checkValue);
  return [...byLabel].map(([label, checkValue]) => ({ label, checkValue }));
}

/** Configured keys by effective lifecycle state; keys of a stopped key store count as "store-stopped". */
function countKeyStates(catalog: KeyCatalog, state: StateDocument): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const store of catalog.stores()) {
    for (const key of store.keys.values()) {
      const effective = effectiveKey(state, store.name, key.id);
      const name = effective.storeKilled ? 'store-stopped' : effective.state;
      counts[name] = (counts[name] ?? 0) + 1;
    }
  }
  return counts;
}

/** What the audit log says about a server certificate: its fingerprint, subject and expiry (public facts). */
function certificateSummary(pem: SecureContextOptions['cert']): { readonly fingerprint: string; readonly text: string } {
  const first = Array.isArray(pem) ? pem[0] : pem;
  const certificate = new X509Certificate(first as string | Buffer);
  return {
    fingerprint: certificate.fingerprint256,
    text: `${certificate.subject.replace(/\n/g, ', ')} (SHA-256 ${certificate.fingerprint256.slice(0, 23)}..., valid to ${new Date(certificate.validTo).toISOString()})`,
  };
}

/** Every file whose change should trigger a reload. */
function watchedFiles(config: Config, file: string): string[] {
  const secretFiles = (refs: readonly SecretRef[]): string[] => refs.flatMap((ref) => ('file' in ref ? [ref.file] : []));
  const { tls } = config.server;
  return [
    file,
    tls.certFile,
    tls.keyFile,
    ...(tls.clientAuth.caFile === undefined ? [] : [tls.clientAuth.caFile]),
    ...(config.policy.file === undefined ? [] : [config.policy.file]),
    ...secretFiles(config.keyStores.flatMap((store) => store.credentials.map((credential) => credential.secretAccessKey))),
  ];
}

/** The composition root: config in, a serving proxy out. No globals; tests start several side by side. */
export async function startProxy(given: LoadedConfig, options: ProxyOptions = {}): Promise<RunningProxy> {
  const adjust = options.adjustConfig ?? ((unchanged: LoadedConfig): LoadedConfig => unchanged);
  const loaded = adjust(given);
  const env = options.env ?? process.env;
  const config = loaded.config;
  const logger = options.logger ?? createLogger(config.logging);
  const audit = new AuditLog(config.audit.destination);
  const metrics = new ProxyMetrics();
  const contract = OpenApiContract.load(fromRoot('contracts', 'aws-xks-v1.openapi.yaml'));

  let catalog = KeyCatalog.fromConfig(config);
  let credentials = CredentialStore.fromConfig(config, env);
  let clientAuth = config.server.tls.clientAuth;

  const redis = config.redis === undefined ? undefined : new RedisTier(config.redis, logger.child({ component: 'redis' }));
  if (redis !== undefined) metrics.watchRedis(() => redis.status());
  const decisions = new DecisionCache({
    entries: config.policy.decisionCacheEntries,
    ttlMs: config.policy.decisionTtlMs,
    redis:
      redis === undefined || config.redis === undefined
        ? undefined
        : { tier: redis, signingKey: Buffer.from(readSecret(config.redis.decisionSigningKey, 'redis.decisionSigningKey', env), 'utf8') },
    counters: metrics.decisionCache,
  });
  const policy = new PolicyProvider(config.policy, decisions, logger.child({ component: 'policy' }));

  const cluster = new HsmCluster(buildMembers(config, env, logger), logger.child({ component: 'cluster' }));
  const stateStore = new HsmStateStore(
    cluster,
    config.hsm.members.map((member, index) => ({
      id: member.id,
      target: () => ({
        module: member.module,
        tokenLabel: member.tokenLabel,
        pin: readSecret(member.pin, `hsm.members[${index}].pin`, env),
        environment: member.environment,
      }),
    })),
    Math.max(config.hsm.callTimeoutMs * 5, 1000),
    logger.child({ component: 'state' }),
  );
  const notifier = redis === undefined || config.redis === undefined ? undefined : new RedisStateNotifier(config.redis, redis, logger.child({ component: 'redis' }));
  const state = new StateService(stateStore, { syncIntervalMs: config.state.syncIntervalMs }, notifier, logger.child({ component: 'state' }));
  cluster.useKeyConsistency(
    new KeyConsistency(
      cluster,
      { intervalMs: config.hsm.keyCheck.intervalMs, timeoutMs: Math.max(config.hsm.callTimeoutMs * 5, 1000) },
      () => keyExpectations(catalog, config, state.current),
      logger.child({ component: 'key-consistency' }),
    ),
  );
  metrics.watchCluster(cluster);
  await cluster.start();
  // The state lives on the members (ADR 0004): read it before serving, so a kill switch survives restarts.
  await state.start();
  metrics.watchKeyStates(() => countKeyStates(catalog, state.current));
  policy.loadConfig(config.policy, state.current);
  state.onChange((document) => policy.onState(document));
  const keyService = new KeyService(cluster);
  const maintenance = new LifecycleMaintenance({
    state,
    store: stateStore,
    catalog: () => catalog,
    rotation: config.state.rotationScheduler ? { state, store: stateStore, keys: keyService } : undefined,
    intervalMs: config.state.syncIntervalMs,
    logger: logger.child({ component: 'lifecycle' }),
    audit,
  });
  maintenance.start();
  const health = new HealthMonitor(
    cluster,
    {
      intervalMs: config.hsm.healthCheck.intervalMs,
      maxAgeMs: config.hsm.healthCheck.maxAgeMs,
      probeTimeoutMs: Math.max(config.hsm.callTimeoutMs * 4, 400),
      requestProbeTimeoutMs: Math.max(config.hsm.callTimeoutMs * 2, 200),
    },
    logger.child({ component: 'health' }),
  );
  health.start();

  const deps: XksDependencies = {
    keys: keyService,
    lifecycle: new KeyLifecycle(state),
    health,
    authorizer: () => policy.current(),
    limits: { maxPlaintextBytes: config.server.limits.maxPlaintextBytes, maxAadBytes: config.server.limits.maxAadBytes },
    proxy: {
      vendor: config.proxy.vendor,
      model: config.proxy.model ?? `hyok-proxy ${PRODUCT_VERSION}`,
      fleetSize: config.proxy.fleetSize,
      ekmVendor: config.hsm.ekmVendor,
    },
  };

  const peerSubjects = new WeakMap<object, string>();
  const securityHeaders = helmet({
    contentSecurityPolicy: { directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    crossOriginResourcePolicy: { policy: 'same-origin' },
    hsts: { maxAge: 31_536_000, includeSubDomains: false },
  });
  // The XKS APIs bypass express: one function from socket to response on the hot path (docs/performance.md).
  const xks = createXksRouter({
    deps,
    catalog: () => catalog,
    credentials: () => credentials,
    verifier: new SigV4Verifier({ service: SIGV4_SERVICE, maxClockSkewMs: MAX_CLOCK_SKEW_MS }),
    contract,
    audit,
    logger: logger.child({ component: 'xks' }),
    metrics,
    limits: config.server.limits,
    clientCertificateSubject: (req) => peerSubjects.get(req.socket),
    responseHeaders: captureStaticHeaders(securityHeaders),
  });
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(securityHeaders);
  app.get('/ping', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/ready', (_req, res) => {
    const members = cluster.snapshot().map((member) => ({ id: member.id, healthStatus: member.health }));
    const ready = cluster.canServe();
    res.status(ready ? 200 : 503).json({ ready, members });
  });
  app.use((_req, res) => {
    const rendered = renderXksError(new ProxyError('INVALID_URI_PATH', 'The request was rejected because the specified URI path is not valid.'));
    res.status(rendered.status).json(rendered.body);
  });
  app.use((error: unknown, _req: Request, res: express.Response, _next: express.NextFunction) => {
    logger.error({ err: error }, 'unhandled error on the data plane');
    const rendered = renderXksError(error);
    if (!res.headersSent) res.status(rendered.status).json(rendered.body);
  });

  const { limits } = config.server;
  const server = createHttpsServer(
    {
      ...serverTlsSettings(config.server.tls),
      ALPNProtocols: ['http/1.1'],
      maxHeaderSize: limits.maxHeaderBytes,
      requestTimeout: limits.requestTimeoutMs,
      headersTimeout: limits.headersTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
    },
    (req, res) => {
      if (!xks(req, res)) app(req, res);
    },
  );
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  // Runs before the HTTP parser sees a byte: a disallowed client certificate never reaches the application.
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    const verdict = checkClientCertificate(socket, clientAuth);
    if (!verdict.accepted) {
      logger.warn({ remote: socket.remoteAddress, subject: verdict.subject, reason: verdict.reason }, 'TLS client rejected');
      socket.destroy();
      return;
    }
    if (verdict.subject !== undefined) peerSubjects.set(socket, verdict.subject);
  });
  server.on('tlsClientError', (error, socket) => {
    // With clientAuth "required" OpenSSL's chain check rejects before 'secureConnection'; the reason is on the socket.
    const untrusted = (socket as TLSSocket).authorizationError as unknown as string | null | undefined;
    if (untrusted !== null && untrusted !== undefined) {
      logger.warn({ remote: socket.remoteAddress, reason: `client certificate not trusted (${String(untrusted)})` }, 'TLS client rejected');
    } else {
      logger.debug({ remote: socket.remoteAddress, code: (error as NodeJS.ErrnoException).code }, 'TLS handshake failed');
    }
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
    if (error.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const { body } = renderXksError(new ProxyError('VALIDATION', 'The request is not valid HTTP/1.1.'));
    const json = JSON.stringify(body);
    socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\nConnection: close\r\n\r\n${json}`);
  });

  let servingCertificate = certificateSummary(readFileSync(config.server.tls.certFile));
  const address = await listen(server, config.server.host, config.server.port);
  const hostForUrl = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  let metricsServer: HttpServer | undefined;
  let metricsUrl: string | undefined;
  if (config.metrics.enabled) {
    metricsServer = createHttpServer((req, res) => {
      if (req.method === 'GET' && req.url === '/metrics') {
        metrics.registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
            res.end(text);
          },
          () => {
            res.writeHead(500);
            res.end();
          },
        );
        return;
      }
      res.writeHead(404);
      res.end();
    });
    const metricsAddress = await listen(metricsServer, config.metrics.host, config.metrics.port);
    metricsUrl = `http://${metricsAddress.address}:${metricsAddress.port}/metrics`;
  }

  const admin = config.admin.enabled
    ? await startAdminServer({
        config: config.admin,
        defaultTls: { certFile: config.server.tls.certFile, keyFile: config.server.tls.keyFile },
        cluster,
        audit,
        metrics,
        logger: logger.child({ component: 'admin' }),
        lifecycle: {
          state,
          catalog: () => catalog,
          rotation: { state, store: stateStore, keys: keyService },
          policy,
          memberIds: config.hsm.members.map((member) => member.id),
          dualControl: config.dualControl,
        },
      })
    : undefined;

  audit.write({ event: 'proxy.start', detail: `listening on ${hostForUrl}:${address.port}` });
  logger.info({ port: address.port, metricsUrl, adminUrl: admin?.url, members: cluster.snapshot().length, keyStores: catalog.stores().length }, 'hyok-proxy serving');

  // Synchronous from start to swap, so two reloads can never interleave.
  const reloadNow = (): ReloadResult => {
    try {
      const next = adjust(loadConfig(loaded.file, env));
      const nextCredentials = CredentialStore.fromConfig(next.config, env);
      // Validates the policy file before anything is swapped; throws (and the reload is refused) when it is invalid.
      policy.loadConfig(next.config.policy, state.current);
      // The running client-auth mode decides whether the client CA belongs in the context (mode is restart-only).
      const runningMode = loaded.config.server.tls.clientAuth.mode;
      if (runningMode !== 'off' && next.config.server.tls.clientAuth.caFile === undefined) {
        throw new ConfigError([`${loaded.file}: server.tls.clientAuth.caFile: is required while the running clientAuth mode is '${runningMode}'`]);
      }
      const nextTls = loadSecureContextOptions({
        ...next.config.server.tls,
        clientAuth: { ...next.config.server.tls.clientAuth, mode: runningMode },
      });
      // Compared with what is running (the start-up config): these are bound to live sockets and processes.
      const running = loaded.config;
      const restartOnly: Array<[string, unknown, unknown]> = [
        ['hsm', running.hsm, next.config.hsm],
        ['server.host/port', [running.server.host, running.server.port], [next.config.server.host, next.config.server.port]],
        ['server.limits', running.server.limits, next.config.server.limits],
        ['server.tls.clientAuth.mode', running.server.tls.clientAuth.mode, next.config.server.tls.clientAuth.mode],
        ['metrics', running.metrics, next.config.metrics],
        ['audit', running.audit, next.config.audit],
        ['redis', running.redis, next.config.redis],
        ['state', running.state, next.config.state],
        ['dualControl', running.dualControl, next.config.dualControl],
        ['admin', running.admin, next.config.admin],
        ['server.tls.watchFiles', running.server.tls.watchFiles, next.config.server.tls.watchFiles],
      ];
      for (const [section, before, after] of restartOnly) {
        if (JSON.stringify(before) !== JSON.stringify(after)) logger.warn({ section }, 'setting changed; it takes effect after a restart');
      }
      server.setSecureContext(nextTls);
      const nextCertificate = certificateSummary(nextTls.cert);
      if (nextCertificate.fingerprint !== servingCertificate.fingerprint) {
        audit.write({ event: 'tls.reload', detail: `server certificate ${nextCertificate.text} replaces ${servingCertificate.text}` });
        servingCertificate = nextCertificate;
      }
      catalog = KeyCatalog.fromConfig(next.config);
      credentials = nextCredentials;
      clientAuth = { ...next.config.server.tls.clientAuth, mode: running.server.tls.clientAuth.mode };
      fileWatch?.watch(watchedFiles(next.config, loaded.file));
      audit.write({ event: 'config.reload', detail: 'configuration, credentials, policy and certificates reloaded' });
      logger.info('configuration reloaded');
      return { ok: true, issues: [] };
    } catch (error) {
      const issues = error instanceof ConfigError ? error.issues : [(error as Error).message];
      audit.write({ event: 'config.reload.rejected', detail: issues.join('; ').slice(0, 1000) });
      logger.error({ issues }, 'reload rejected; the previous configuration stays in force');
      return { ok: false, issues };
    }
  };
  const reload = (): Promise<ReloadResult> => Promise.resolve(reloadNow());

  // server.tls.watchFiles false leaves reloads to SIGHUP (or reload()) only.
  const fileWatch = options.watchFiles === true && config.server.tls.watchFiles ? new FileWatchSet(() => void reload(), logger) : undefined;
  fileWatch?.watch(watchedFiles(config, loaded.file));

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      fileWatch?.close();
      health.stop();
      maintenance.stop();
      state.stop();
      const drained = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), DRAIN_TIMEOUT_MS);
      await drained;
      clearTimeout(timer);
      if (metricsServer !== undefined) await new Promise<void>((resolve) => metricsServer?.close(() => resolve()));
      await admin?.close();
      await cluster.close();
      await notifier?.close();
      await redis?.close();
      audit.write({ event: 'proxy.stop', detail: 'shut down' });
      audit.close();
      logger.info('hyok-proxy stopped');
      logger.flush();
    })();
    return closing;
  };

  return {
    server,
    port: address.port,
    url: `https://${hostForUrl}:${address.port}`,
    metricsUrl,
    adminUrl: admin?.url,
    cluster,
    state,
    maintenance,
    metrics,
    logger,
    ready: () => cluster.canServe(),
    reload,
    close,
  };
}
