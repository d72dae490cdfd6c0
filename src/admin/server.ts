import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import helmet from 'helmet';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.js';
import type { AdminRole, Config } from '../config/schema.js';
import { DEFAULT_TLS_CIPHERS } from '../config/schema.js';
import type { HsmCluster } from '../hsm/cluster.js';
import type { MemberSnapshot } from '../hsm/member.js';
import { AdminAuthError, AdminAuthenticator, identityOf, requireRole, type AdminIdentity } from './auth.js';
import { AdminRequestError } from './errors.js';
import { JwksSource } from './jwks.js';
import { lifecycleRoutes, type LifecycleRoutesContext } from './lifecycle-routes.js';
import type { ProxyMetrics } from '../observability/metrics.js';
import { consoleRoutes, refuseCrossSite } from './console/routes.js';
import { MemberDrills } from './drills.js';
import { opsRoutes } from './ops-routes.js';

/**
 * The admin API, on its own listener and with its own authentication: members
 * with breaker state, in-flight work, latency and last error; drain, fence and
 * restore. Every action is audited with its actor, whether allowed or not.
 */

export interface AdminServerOptions {
  readonly config: Config['admin'];
  /** Certificate and key when config.admin.tls is absent (the data plane's). */
  readonly defaultTls: { readonly certFile: string; readonly keyFile: string };
  readonly cluster: HsmCluster;
  readonly audit: AuditLog;
  readonly logger: Logger;
  /** The console's live figures, and GET /metrics behind admin authentication. */
  readonly metrics: ProxyMetrics;
  /** Key lifecycle, kill switch, approvals and policy routes. */
  readonly lifecycle?: Omit<LifecycleRoutesContext, 'record'>;
}

export interface RunningAdminServer {
  readonly server: Server;
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

export interface MemberView {
  readonly id: string;
  readonly model: string;
  readonly zone: string | null;
  readonly weight: number;
  readonly health: MemberSnapshot['health'];
  /** serving, draining, drained (draining with nothing in flight) or fenced. */
  readonly mode: 'serving' | 'draining' | 'drained' | 'fenced';
  readonly breaker: MemberSnapshot['breaker'];
  readonly inFlight: number;
  readonly latencyMs: number | null;
  readonly agents: { readonly serving: number; readonly total: number };
  readonly lastError: { readonly message: string; readonly at: string } | null;
  readonly lastProbe: { readonly ok: boolean; readonly latencyMs: number; readonly at: string; readonly error: string | null } | null;
  readonly fence: { readonly reason: string; readonly by: string; readonly at: string } | null;
}

export function memberView(snapshot: MemberSnapshot): MemberView {
  const iso = (ms: number): string => new Date(ms).toISOString();
  return {
    id: snapshot.id,
    model: snapshot.model,
    zone: snapshot.zone ?? null,
    weight: snapshot.weight,
    health: snapshot.health,
    mode: snapshot.drained ? 'drained' : snapshot.mode,
    breaker: snapshot.breaker,
    inFlight: snapshot.inFlight,
    latencyMs: snapshot.latencyMs === undefined ? null : Math.round(snapshot.latencyMs * 1000) / 1000,
    agents: { serving: snapshot.servingAgents, total: snapshot.agents },
    lastError: snapshot.lastError === undefined ? null : { message: snapshot.lastError, at: iso(snapshot.lastErrorAt ?? Date.now()) },
    lastProbe:
      snapshot.lastProbe === undefined
        ? null
        : {
            ok: snapshot.lastProbe.ok,
            latencyMs: Math.round(snapshot.lastProbe.latencyMs * 1000) / 1000,
            at: iso(snapshot.lastProbe.at),
            error: snapshot.lastProbe.error ?? null,
          },
    fence: snapshot.fence === undefined ? null : { reason: snapshot.fence.reason, by: snapshot.fence.by, at: iso(snapshot.fence.at) },
  };
}

const READ_ROLES: readonly AdminRole[] = ['operator', 'auditor'];
const BODY_LIMIT = '4kb';
/** A policy text is at most 256 KiB (lifecycle routes), plus its JSON encoding. */
const POLICY_BODY_LIMIT = '320kb';
const OPERATE_ROLES: readonly AdminRole[] = ['operator'];
const MAX_REASON_LENGTH = 256;

function reasonFrom(body: unknown): string | undefined {
  if (body === undefined || body === null || (typeof body === 'object' && Object.keys(body).length === 0)) return undefined;
  const reason = (body as { reason?: unknown }).reason;
  if (typeof body !== 'object' || Object.keys(body).some((key) => key !== 'reason') || (reason !== undefined && typeof reason !== 'string')) {
    throw new AdminRequestError(400, 'bad_request', 'the body may only carry {"reason": string}');
  }
  if (reason !== undefined && (reason.length > MAX_REASON_LENGTH || !/^[\x20-\x7e]*$/.test(reason))) {
    throw new AdminRequestError(400, 'bad_request', `reason must be printable ASCII of at most ${MAX_REASON_LENGTH} characters`);
  }
  return reason;
}

export async function startAdminServer(options: AdminServerOptions): Promise<RunningAdminServer> {
  const { config, cluster, audit, logger } = options;
  const jwks =
    config.jwt === undefined
      ? undefined
      : new JwksSource(config.jwt.jwksFile !== undefined ? { file: config.jwt.jwksFile } : { url: config.jwt.jwksUrl as string }, config.jwt.refreshIntervalMs, logger);
  await jwks?.start();
  const authenticator = new AdminAuthenticator(config, jwks);

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(helmet({ contentSecurityPolicy: { directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } } }));

  const record = (req: Request, res: Response, action: string, target: string | undefined, outcome: 'success' | 'denied' | 'failure', reason?: string): void => {
    const identity = res.locals['identity'] as AdminIdentity | undefined;
    audit.write({
      event: 'admin.action',
      actor: identity?.actor ?? 'anonymous',
      via: identity?.via ?? 'none',
      roles: identity === undefined ? [] : [...identity.roles],
      action,
      target,
      outcome,
      reason,
      sourceIp: req.socket.remoteAddress,
    });
  };

  app.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  app.use(consoleRoutes({ authenticator, record }));
  app.use((req, res, next) => {
    authenticator.authenticate(req).then(
      (identity) => {
        res.locals['identity'] = identity;
        try {
          refuseCrossSite(req, identity);
        } catch (error) {
          const refused = error as AdminAuthError;
          record(req, res, `${req.method} ${req.path}`.slice(0, 200), undefined, 'denied', refused.message);
          res.status(refused.status).json({ error: 'forbidden', message: refused.message });
          return;
        }
        next();
      },
      (error: unknown) => {
        const failure = error instanceof AdminAuthError ? error : new AdminAuthError(401, 'authentication failed');
        record(req, res, `${req.method} ${req.path}`.slice(0, 200), undefined, 'denied', failure.detail ?? failure.message);
        res.status(failure.status).json({ error: 'unauthenticated', message: failure.message });
      },
    );
  });
  // Bodies are parsed only for authenticated callers; a policy text may be large, everything else is small.
  app.put('/admin/v1/policy', express.json({ limit: POLICY_BODY_LIMIT, strict: true }));
  app.use(express.json({ limit: BODY_LIMIT, strict: true }));

  const member = (id: string): ReturnType<HsmCluster['member']> & object => {
    const found = cluster.member(id);
    if (found === undefined) throw new AdminRequestError(404, 'not_found', `no member '${id.slice(0, 64)}'`);
    return found;
  };

  app.get('/admin/v1/members', (_req, res) => {
    requireRole(identityOf(res), READ_ROLES);
    res.json({ members: cluster.snapshot().map(memberView) });
  });

  app.get('/admin/v1/members/:id', (req, res) => {
    requireRole(identityOf(res), READ_ROLES);
    res.json(memberView(member(req.params['id'] as string).snapshot()));
  });

  app.get('/admin/v1/key-consistency', (_req, res) => {
    requireRole(identityOf(res), READ_ROLES);
    const report = cluster.keyConsistencyReport();
    res.json(report === undefined ? { checkedAt: null, labels: {}, fenced: [] } : { checkedAt: new Date(report.at).toISOString(), labels: report.labels, fenced: report.fenced });
  });

  const action = (name: 'drain' | 'fence' | 'restore') =>
    async (req: Request, res: Response): Promise<void> => {
      const id = req.params['id'] as string;
      try {
        requireRole(identityOf(res), OPERATE_ROLES);
        const reason = reasonFrom(req.body);
        const target = member(id);
        const actor = `operator:${identityOf(res).actor}`;
        if (name === 'drain') target.drain(actor);
        else if (name === 'fence') target.fenceOff(reason ?? 'fenced by an operator', actor);
        else await cluster.restore(id, actor);
        const view = memberView(target.snapshot());
        // A restore the key check undoes is reported as a conflict, not a success.
        if (name === 'restore' && view.mode === 'fenced') {
          record(req, res, `member.${name}`, id, 'failure', view.fence?.reason);
          res.status(409).json({ error: 'conflict', message: `member stays fenced: ${view.fence?.reason ?? 'unknown'}`, member: view });
          return;
        }
        record(req, res, `member.${name}`, id, 'success', reason);
        res.json(view);
      } catch (error) {
        const denied = error instanceof AdminAuthError;
        record(req, res, `member.${name}`, id.slice(0, 64), denied ? 'denied' : 'failure', (error as Error).message);
        throw error;
      }
    };
  for (const name of ['drain', 'fence', 'restore'] as const) {
    app.post(`/admin/v1/members/:id/${name}`, (req, res, next) => void action(name)(req, res).catch(next));
  }
  if (options.lifecycle !== undefined) app.use(lifecycleRoutes({ ...options.lifecycle, record }));
  const drills = new MemberDrills({ cluster, audit, logger: logger.child({ component: 'drills' }), totals: () => options.metrics.requestTotals() });
  options.metrics.watchDrills(() => drills.active());
  app.use(opsRoutes({ cluster, audit, metrics: options.metrics, drills, record, memberView: (id) => memberView(member(id).snapshot()) }));

  app.use((_req, res) => {
    res.status(404).json({ error: 'not_found', message: 'no such admin resource' });
  });
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (error instanceof AdminAuthError) {
      res.status(error.status).json({ error: error.status === 401 ? 'unauthenticated' : 'forbidden', message: error.message });
    } else if (error instanceof AdminRequestError) {
      res.status(error.status).json({ error: error.code, message: error.message });
    } else if ((error as { type?: string }).type === 'entity.too.large') {
      res.status(413).json({ error: 'payload_too_large', message: `the body may be at most ${BODY_LIMIT} (${POLICY_BODY_LIMIT} for a policy)` });
    } else if ((error as { type?: string }).type === 'entity.parse.failed') {
      res.status(400).json({ error: 'bad_request', message: 'the body must be a JSON object' });
    } else {
      logger.error({ err: error }, 'admin request failed');
      res.status(500).json({ error: 'internal', message: 'the admin request failed' });
    }
  });

  const tls = config.tls ?? options.defaultTls;
  const server = createServer(
    {
      cert: readFileSync(tls.certFile),
      key: readFileSync(tls.keyFile),
      minVersion: 'TLSv1.2',
      ciphers: DEFAULT_TLS_CIPHERS.join(':'),
      // Certificates are optional here (bearer tokens work without one); a presented one must chain to the admin CA.
      requestCert: config.clientCertificates !== undefined,
      rejectUnauthorized: false,
      ...(config.clientCertificates === undefined ? {} : { ca: readFileSync(config.clientCertificates.caFile) }),
    },
    app,
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  logger.info({ port: address.port }, 'admin API serving');
  return {
    server,
    port: address.port,
    url: `https://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
    async close() {
      jwks?.stop();
      drills.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
