import express, { type Router } from 'express';
import type { AuditLog } from '../audit/audit-log.js';
import type { AdminRole } from '../config/schema.js';
import type { HsmCluster } from '../hsm/cluster.js';
import type { ProxyMetrics } from '../observability/metrics.js';
import { actorOf, AdminAuthError, identityOf, READ_ROLES, requireRole, type AdminActionRecorder } from './auth.js';
import { DRILL_DURATION_S, DRILL_SCENARIOS, type DrillScenario, type MemberDrills } from './drills.js';
import { AdminRequestError } from './errors.js';

/**
 * What the SRE console reads and does beyond the member and lifecycle routes:
 * who am I, one live overview, recent audit records, console drills, and the
 * Prometheus scrape behind admin authentication.
 */

export interface OpsRoutesContext {
  readonly cluster: HsmCluster;
  readonly audit: AuditLog;
  readonly metrics: ProxyMetrics;
  readonly drills: MemberDrills;
  readonly memberView: (id: string) => unknown;
  readonly record: AdminActionRecorder;
}

const READ = READ_ROLES;
/** Audit records name principals and key ids: operators and auditors only. */
const AUDIT_READ: readonly AdminRole[] = ['operator', 'auditor'];
const OPERATE: readonly AdminRole[] = ['operator'];
const SCRAPE: readonly AdminRole[] = ['metrics', 'operator', 'auditor'];
const MAX_AUDIT_RECORDS = 200;
/** The console's "now": short enough to show a drill within seconds, long enough to smooth one slow second. */
const LIVE_WINDOW_S = 10;
const MAX_REASON = 256;

function drillRequest(body: unknown): { scenario: DrillScenario; member?: string; durationSeconds: number; reason?: string } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new AdminRequestError(400, 'bad_request', 'the body must be a JSON object');
  const allowed = new Set(['scenario', 'member', 'durationSeconds', 'reason']);
  const record = body as Record<string, unknown>;
  const unknown = Object.keys(record).find((key) => !allowed.has(key));
  if (unknown !== undefined) throw new AdminRequestError(400, 'bad_request', `unknown field '${unknown.slice(0, 32)}'`);
  const { scenario, member, durationSeconds, reason } = record;
  if (typeof scenario !== 'string' || !(DRILL_SCENARIOS as readonly string[]).includes(scenario)) {
    throw new AdminRequestError(400, 'bad_request', `scenario must be one of ${DRILL_SCENARIOS.join(', ')}`);
  }
  if (member !== undefined && (typeof member !== 'string' || member.length === 0 || member.length > 64)) {
    throw new AdminRequestError(400, 'bad_request', 'member must be a member id');
  }
  if (typeof durationSeconds !== 'number' || !Number.isInteger(durationSeconds) || durationSeconds < DRILL_DURATION_S.min || durationSeconds > DRILL_DURATION_S.max) {
    throw new AdminRequestError(400, 'bad_request', `durationSeconds must be an integer from ${DRILL_DURATION_S.min} to ${DRILL_DURATION_S.max}`);
  }
  if (reason !== undefined && (typeof reason !== 'string' || reason.length > MAX_REASON || !/^[\x20-\x7e]*$/.test(reason))) {
    throw new AdminRequestError(400, 'bad_request', `reason must be printable ASCII of at most ${MAX_REASON} characters`);
  }
  return {
    scenario: scenario as DrillScenario,
    durationSeconds,
    ...(member === undefined ? {} : { member: member as string }),
    ...(reason === undefined || reason === '' ? {} : { reason: reason as string }),
  };
}

export function opsRoutes(context: OpsRoutesContext): Router {
  const { cluster, audit, metrics, drills, record } = context;
  const router = express.Router();

  router.get('/admin/v1/whoami', (_req, res) => {
    const identity = identityOf(res);
    res.json({
      actor: identity.actor,
      via: identity.via,
      roles: [...identity.roles].sort(),
      expiresAt: identity.expiresAt === undefined ? null : new Date(identity.expiresAt * 1000).toISOString(),
    });
  });

  router.get('/admin/v1/overview', (_req, res) => {
    requireRole(identityOf(res), READ);
    res.json({
      generatedAt: new Date().toISOString(),
      // With `serve --workers N` this is the answering worker's view (ADR 0005).
      pid: process.pid,
      members: cluster.snapshot().map((member) => context.memberView(member.id)),
      apis: metrics.apiSummaries(LIVE_WINDOW_S),
      totals: metrics.requestTotals(),
      memberOperations: metrics.memberOperationTotals(),
      drill: drills.current() ?? null,
    });
  });

  router.get('/admin/v1/audit/recent', (req, res) => {
    requireRole(identityOf(res), AUDIT_READ);
    const raw = req.query['limit'];
    const limit = raw === undefined ? 50 : typeof raw === 'string' && /^\d{1,3}$/.test(raw) ? Number(raw) : Number.NaN;
    if (!(limit >= 1 && limit <= MAX_AUDIT_RECORDS)) throw new AdminRequestError(400, 'bad_request', `limit must be an integer from 1 to ${MAX_AUDIT_RECORDS}`);
    res.json({ records: audit.recent(limit) });
  });

  router.get('/admin/v1/drills/current', (_req, res) => {
    requireRole(identityOf(res), READ);
    res.json({ drill: drills.current() ?? null });
  });

  router.post('/admin/v1/drills', (req, res) => {
    let target: string | undefined;
    try {
      requireRole(identityOf(res), OPERATE);
      const request = drillRequest(req.body);
      target = request.member;
      const view = drills.start({ ...request, actor: actorOf(res) });
      record(req, res, 'drill.start', view.member, 'success', `${view.scenario} for ${request.durationSeconds} s${request.reason === undefined ? '' : `: ${request.reason}`}`);
      res.status(201).json({ drill: view });
    } catch (error) {
      record(req, res, 'drill.start', target, error instanceof AdminAuthError ? 'denied' : 'failure', (error as Error).message);
      throw error;
    }
  });

  router.post('/admin/v1/drills/current/stop', (req, res, next) => {
    void (async () => {
      try {
        requireRole(identityOf(res), OPERATE);
        const view = await drills.stop(actorOf(res));
        record(req, res, 'drill.stop', view.member, 'success');
        res.json({ drill: view });
      } catch (error) {
        record(req, res, 'drill.stop', undefined, error instanceof AdminAuthError ? 'denied' : 'failure', (error as Error).message);
        throw error;
      }
    })().catch(next);
  });

  router.get('/metrics', (_req, res, next) => {
    requireRole(identityOf(res), SCRAPE);
    metrics.registry.metrics().then((text) => {
      res.setHeader('Content-Type', metrics.registry.contentType);
      res.send(text);
    }, next);
  });

  return router;
}
