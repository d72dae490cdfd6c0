import { createHash } from 'node:crypto';
import type { Request, Response, Router } from 'express';
import express from 'express';
import type { AdminRole } from '../config/schema.js';
import type { KeyCatalog, KeyEntry } from '../keys/catalog.js';
import { ConfigError } from '../config/load.js';
import { parsePolicy, type PolicyDocument } from '../policy/engine.js';
import type { PolicyProvider } from '../policy/provider.js';
import { wideningReasons } from '../policy/widening.js';
import { ApprovalError, approve, executeApproval, pruneApprovals, reject, requestApproval } from '../state/approvals.js';
import { KEY_STATES, keyRef, type ApprovalAction, type ApprovalRecord, type KeyState, type StateDocument } from '../state/document.js';
import { effectiveKey, initialRecord, LifecycleError, transitionMode } from '../state/lifecycle.js';
import { rotateKey, type RotationContext } from '../state/rotation.js';
import type { StateService } from '../state/service.js';
import { actorOf, AdminAuthError, identityOf, READ_ROLES, requireRole, type AdminActionRecorder } from './auth.js';
import { AdminRequestError } from './errors.js';

/**
 * Admin routes for key lifecycle, rotation, kill switches, dual-control
 * approvals and the managed policy. Every change goes through
 * StateService.mutate, so it reaches the HSMs before it is acknowledged.
 */

export interface LifecycleRoutesContext {
  readonly state: StateService;
  readonly catalog: () => KeyCatalog;
  readonly rotation: RotationContext;
  readonly policy: PolicyProvider;
  readonly memberIds: readonly string[];
  readonly dualControl: { readonly requiredApprovals: number; readonly windowMinutes: number };
  /** Writes the admin.action audit record. */
  readonly record: AdminActionRecorder;
}

const READ = READ_ROLES;
const KEY_ADMIN: readonly AdminRole[] = ['key-admin'];
const KILL_SWITCH: readonly AdminRole[] = ['operator', 'key-admin'];
const MAX_TEXT = 500;

function bodyOf(req: Request): Record<string, unknown> {
  const body: unknown = req.body;
  if (body === undefined) return {};
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new AdminRequestError(400, 'bad_request', 'the body must be a JSON object');
  return body as Record<string, unknown>;
}

function optionalText(body: Record<string, unknown>, field: string): string | undefined {
  const value = body[field];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length > MAX_TEXT || !/^[\x20-\x7e]*$/.test(value)) {
    throw new AdminRequestError(400, 'bad_request', `${field} must be printable ASCII of at most ${MAX_TEXT} characters`);
  }
  return value;
}

function optionalTime(body: Record<string, unknown>, field: string): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) throw new AdminRequestError(400, 'bad_request', `${field} must be an ISO 8601 time`);
  return new Date(value).toISOString();
}

function findKey(catalog: KeyCatalog, keyStore: string, keyId: string): KeyEntry {
  const store = catalog.stores().find((candidate) => candidate.name === keyStore);
  const key = store?.keys.get(keyId);
  if (key === undefined) throw new AdminRequestError(404, 'not_found', `no key '${keyId.slice(0, 128)}' in key store '${keyStore.slice(0, 64)}'`);
  return key;
}

export function keyView(document: StateDocument, keyStore: string, key: KeyEntry): Record<string, unknown> {
  const effective = effectiveKey(document, keyStore, key.id);
  const record = effective.record;
  return {
    keyStore,
    id: key.id,
    label: key.label,
    enabled: key.enabled,
    state: effective.state,
    storedState: record?.state ?? 'active',
    storeKilled: effective.storeKilled,
    currentVersion: effective.currentVersion,
    versions: record?.versions ?? { '1': { state: 'active' } },
    activateAt: record?.activateAt ?? null,
    expireAt: record?.expireAt ?? null,
    killSwitch: record?.killSwitch ?? null,
    compromisedDecryptUntil: record?.compromisedDecryptUntil ?? null,
    erasePending: record?.erasePending ?? [],
    rotationPeriodDays: key.rotationPeriodDays ?? null,
  };
}

function approvalView(record: ApprovalRecord): Record<string, unknown> {
  // The policy text of a widening request can be long; the digest identifies it.
  const params = record.action === 'policy.widen' ? { version: record.params['version'], reasons: record.params['reasons'] } : record.params;
  return { ...record, params };
}

function toAdminError(error: unknown): unknown {
  if (error instanceof ApprovalError) return new AdminRequestError(error.status, error.status === 403 ? 'forbidden' : error.status === 404 ? 'not_found' : 'conflict', error.message);
  if (error instanceof LifecycleError) return new AdminRequestError(409, 'conflict', error.message);
  if (error instanceof ConfigError) return new AdminRequestError(400, 'bad_request', error.issues.join('; ').slice(0, 2000));
  return error;
}

export function lifecycleRoutes(context: LifecycleRoutesContext): Router {
  const router = express.Router();
  const { state } = context;

  /** Runs a handler, turning domain errors into admin errors and auditing the outcome. */
  const handle =
    (action: string, roles: readonly AdminRole[], run: (req: Request, res: Response) => Promise<{ status: number; body: unknown; target?: string; reason?: string }>) =>
    (req: Request, res: Response, next: (error: unknown) => void): void => {
      const target = [req.params['store'], req.params['id'] ?? req.params['approval']].filter((part) => part !== undefined).join('/') || undefined;
      (async () => {
        requireRole(identityOf(res), roles);
        const result = await run(req, res);
        context.record(req, res, action, result.target ?? target, 'success', result.reason);
        res.status(result.status).json(result.body);
      })().catch((error: unknown) => {
        const mapped = toAdminError(error);
        const denied = mapped instanceof AdminAuthError || (mapped instanceof AdminRequestError && mapped.status === 403);
        context.record(req, res, action, target, denied ? 'denied' : 'failure', (mapped as Error).message);
        next(mapped);
      });
    };

  /** Creates a dual-control request and answers 202 with it. */
  const ask = async (res: Response, action: ApprovalAction, target: string, params: Record<string, unknown>): Promise<ApprovalRecord> => {
    let created: ApprovalRecord | undefined;
    await state.mutate(actorOf(res), (draft) => {
      pruneApprovals(draft, Date.now());
      created = requestApproval(draft, {
        action,
        target,
        params,
        requestedBy: actorOf(res),
        roles: identityOf(res).roles,
        windowMinutes: context.dualControl.windowMinutes,
        now: Date.now(),
      });
    });
    return created as ApprovalRecord;
  };

  router.get('/admin/v1/keys', (_req, res) => {
    requireRole(identityOf(res), READ);
    const document = state.current;
    res.json({ keys: context.catalog().stores().flatMap((store) => [...store.keys.values()].map((key) => keyView(document, store.name, key))) });
  });

  router.get('/admin/v1/keys/:store/:id', (req, res) => {
    requireRole(identityOf(res), READ);
    const key = findKey(context.catalog(), req.params['store'] as string, req.params['id'] as string);
    res.json(keyView(state.current, req.params['store'] as string, key));
  });

  router.post(
    '/admin/v1/keys/:store/:id/state',
    handle('key.state', KEY_ADMIN, async (req, res) => {
      const keyStore = req.params['store'] as string;
      const key = findKey(context.catalog(), keyStore, req.params['id'] as string);
      const body = bodyOf(req);
      const to = body['state'];
      if (typeof to !== 'string' || !(KEY_STATES as readonly string[]).includes(to)) {
        throw new AdminRequestError(400, 'bad_request', `state must be one of ${KEY_STATES.join(', ')}`);
      }
      const reason = optionalText(body, 'reason');
      const current = effectiveKey(state.current, keyStore, key.id);
      const mode = transitionMode(current.state, to as KeyState, current.record?.killSwitch !== undefined);
      const target = `keystore/${keyStore}/key/${key.id}`;
      if (mode === 'approval') {
        const action: ApprovalAction = to === 'destroyed' ? 'key.destroy' : current.state === 'compromised' ? 'key.reenable-compromised' : 'killswitch.restore';
        const approval = await ask(res, action, target, reason === undefined ? {} : { reason });
        return { status: 202, body: { approval: approvalView(approval) }, reason: `needs dual control (${action})` };
      }
      const now = new Date().toISOString();
      await state.mutate(actorOf(res), (draft) => {
        const ref = keyRef(keyStore, key.id);
        const record = draft.keys[ref] ?? initialRecord(now, actorOf(res));
        // Checked again against the newest state: another replica may have moved the key meanwhile.
        if (transitionMode(effectiveKey(draft, keyStore, key.id).state, to as KeyState, record.killSwitch !== undefined) !== 'direct') {
          throw new LifecycleError('needs-approval', 'the key changed meanwhile; this transition now needs dual control');
        }
        // Moving a stopped key on (to deactivated or compromised) supersedes the kill switch.
        const { killSwitch: _superseded, ...rest } = record;
        draft.keys[ref] = { ...rest, state: to as KeyState, changedAt: now, changedBy: actorOf(res), ...(reason === undefined ? {} : { reason }) };
      });
      return { status: 200, body: keyView(state.current, keyStore, key), ...(reason === undefined ? {} : { reason }) };
    }),
  );

  router.post(
    '/admin/v1/keys/:store/:id/cryptoperiod',
    handle('key.cryptoperiod', KEY_ADMIN, async (req, res) => {
      const keyStore = req.params['store'] as string;
      const key = findKey(context.catalog(), keyStore, req.params['id'] as string);
      const body = bodyOf(req);
      const activateAt = optionalTime(body, 'activateAt');
      const expireAt = optionalTime(body, 'expireAt');
      if (activateAt !== undefined && expireAt !== undefined && Date.parse(expireAt) <= Date.parse(activateAt)) {
        throw new AdminRequestError(400, 'bad_request', 'expireAt must be after activateAt');
      }
      const now = new Date().toISOString();
      await state.mutate(actorOf(res), (draft) => {
        const ref = keyRef(keyStore, key.id);
        const record = draft.keys[ref] ?? initialRecord(now, actorOf(res));
        if (record.state === 'destroyed') throw new LifecycleError('forbidden', 'a destroyed key has no cryptoperiod');
        const next = { ...record, changedAt: now, changedBy: actorOf(res) };
        if (body['activateAt'] !== undefined) {
          if (activateAt === undefined) delete next.activateAt;
          else next.activateAt = activateAt;
        }
        if (body['expireAt'] !== undefined) {
          if (expireAt === undefined) delete next.expireAt;
          else next.expireAt = expireAt;
        }
        draft.keys[ref] = next;
      });
      return { status: 200, body: keyView(state.current, keyStore, key) };
    }),
  );

  router.post(
    '/admin/v1/keys/:store/:id/rotate',
    handle('key.rotate', KEY_ADMIN, async (req, res) => {
      const keyStore = req.params['store'] as string;
      const key = findKey(context.catalog(), keyStore, req.params['id'] as string);
      const version = await rotateKey(context.rotation, keyStore, key, actorOf(res));
      return { status: 200, body: keyView(state.current, keyStore, key), reason: `now version ${version}` };
    }),
  );

  router.post(
    '/admin/v1/keys/:store/:id/versions/:version/retire',
    handle('key.version.retire', KEY_ADMIN, async (req, res) => {
      const keyStore = req.params['store'] as string;
      const key = findKey(context.catalog(), keyStore, req.params['id'] as string);
      const version = req.params['version'] as string;
      await state.mutate(actorOf(res), (draft) => {
        const record = draft.keys[keyRef(keyStore, key.id)];
        const entry = record?.versions[version];
        if (record === undefined || entry === undefined) throw new AdminRequestError(404, 'not_found', `no version ${version.slice(0, 10)}`);
        if (record.currentVersion === Number(version)) throw new LifecycleError('forbidden', 'the current version cannot be retired; rotate first');
        if (entry.state !== 'decrypt-only') throw new LifecycleError('forbidden', `a ${entry.state} version cannot be retired`);
        record.versions[version] = { ...entry, state: 'retired' };
      });
      return { status: 200, body: keyView(state.current, keyStore, key) };
    }),
  );

  router.post(
    '/admin/v1/keys/:store/:id/compromised-decrypt',
    handle('key.compromised-decrypt', KEY_ADMIN, async (req, res) => {
      const keyStore = req.params['store'] as string;
      const key = findKey(context.catalog(), keyStore, req.params['id'] as string);
      const minutes = bodyOf(req)['minutes'] ?? 60;
      if (typeof minutes !== 'number' || !Number.isInteger(minutes) || minutes < 1 || minutes > 7 * 24 * 60) {
        throw new AdminRequestError(400, 'bad_request', 'minutes must be an integer from 1 to 10080');
      }
      const approval = await ask(res, 'key.compromised-decrypt', `keystore/${keyStore}/key/${key.id}`, { minutes });
      return { status: 202, body: { approval: approvalView(approval) } };
    }),
  );

  router.post(
    '/admin/v1/killswitch',
    handle('killswitch.engage', KILL_SWITCH, async (req, res) => {
      const body = bodyOf(req);
      const keyStore = optionalText(body, 'keyStore');
      const keyId = optionalText(body, 'keyId');
      const reason = optionalText(body, 'reason');
      if (keyStore === undefined || !context.catalog().stores().some((store) => store.name === keyStore)) {
        throw new AdminRequestError(400, 'bad_request', 'keyStore must name a configured key store');
      }
      const key = keyId === undefined ? undefined : findKey(context.catalog(), keyStore, keyId);
      const now = new Date().toISOString();
      const stop = { at: now, by: actorOf(res), ...(reason === undefined ? {} : { reason }) };
      await state.mutate(actorOf(res), (draft) => {
        if (key === undefined) {
          draft.killedStores[keyStore] = stop;
          return;
        }
        const ref = keyRef(keyStore, key.id);
        const record = draft.keys[ref] ?? initialRecord(now, actorOf(res));
        if (record.state === 'destroyed') throw new LifecycleError('forbidden', 'the key is destroyed');
        if (record.killSwitch !== undefined) return;
        // The kill switch works from any live state; restoring (dual control) returns the key to that state.
        draft.keys[ref] = { ...record, state: 'suspended', changedAt: now, changedBy: actorOf(res), killSwitch: { ...stop, previousState: record.state } };
      });
      const target = key === undefined ? `keystore/${keyStore}` : `keystore/${keyStore}/key/${key.id}`;
      return { status: 200, body: { stopped: target, at: now }, target, ...(reason === undefined ? {} : { reason }) };
    }),
  );

  router.post(
    '/admin/v1/killswitch/restore',
    handle('killswitch.restore.request', KILL_SWITCH, async (req, res) => {
      const body = bodyOf(req);
      const keyStore = optionalText(body, 'keyStore');
      const keyId = optionalText(body, 'keyId');
      const reason = optionalText(body, 'reason');
      if (keyStore === undefined) throw new AdminRequestError(400, 'bad_request', 'keyStore is required');
      const target = keyId === undefined ? `keystore/${keyStore}` : `keystore/${keyStore}/key/${keyId}`;
      const approval = await ask(res, 'killswitch.restore', target, {});
      return { status: 202, body: { approval: approvalView(approval) }, target, ...(reason === undefined ? {} : { reason }) };
    }),
  );

  router.get('/admin/v1/approvals', (_req, res) => {
    requireRole(identityOf(res), READ);
    res.json({ approvals: state.current.approvals.map(approvalView), requiredApprovals: context.dualControl.requiredApprovals });
  });

  router.post(
    '/admin/v1/approvals/:approval/approve',
    handle('approval.approve', ['approver'], async (req, res) => {
      const digest = bodyOf(req)['digest'];
      if (typeof digest !== 'string') throw new AdminRequestError(400, 'bad_request', 'digest (of the request being approved) is required');
      let executed: ApprovalRecord | undefined;
      let recorded: ApprovalRecord | undefined;
      await state.mutate(actorOf(res), (draft) => {
        const now = Date.now();
        const result = approve(draft, {
          id: req.params['approval'] as string,
          by: actorOf(res),
          roles: identityOf(res).roles,
          digest,
          requiredApprovals: context.dualControl.requiredApprovals,
          now,
        });
        recorded = result.record;
        if (result.ready) {
          executeApproval(draft, result.record, { now, members: context.memberIds, installPolicy: (document, text, actor) => installPolicy(document, text, actor) });
          executed = result.record;
        }
      });
      const view = approvalView((executed ?? recorded) as ApprovalRecord);
      return { status: 200, body: view, target: recorded?.target, reason: executed === undefined ? 'approval recorded' : `executed ${executed.action}` };
    }),
  );

  router.post(
    '/admin/v1/approvals/:approval/reject',
    handle('approval.reject', ['approver'], async (req, res) => {
      let rejected: ApprovalRecord | undefined;
      await state.mutate(actorOf(res), (draft) => {
        rejected = reject(draft, req.params['approval'] as string, actorOf(res), identityOf(res).roles, Date.now());
      });
      return { status: 200, body: approvalView(rejected as ApprovalRecord), target: rejected?.target };
    }),
  );

  router.get('/admin/v1/policy', (_req, res) => {
    requireRole(identityOf(res), READ);
    const engine = context.policy.currentEngine();
    res.json({ source: context.policy.source, version: engine?.version ?? null, text: engine?.text ?? null, reads: engine?.attributesRead ?? [] });
  });

  router.put(
    '/admin/v1/policy',
    handle('policy.update', KEY_ADMIN, async (req, res) => {
      if (context.policy.source !== 'managed') {
        throw new AdminRequestError(409, 'conflict', 'the policy comes from a file (policy.source: file); change the file through your deployment review');
      }
      const text = bodyOf(req)['text'];
      if (typeof text !== 'string' || text.length > 256 * 1024) throw new AdminRequestError(400, 'bad_request', 'text (the policy YAML, at most 256 KiB) is required');
      const next = parsePolicy(text, 'policy');
      const reasons = wideningReasons(context.policy.currentEngine()?.document ?? currentManaged(state.current), next);
      const version = createHash('sha256').update(text).digest('hex');
      if (reasons.length > 0) {
        const approval = await ask(res, 'policy.widen', 'policy', { text, version, reasons });
        return { status: 202, body: { approval: approvalView(approval), reasons }, target: 'policy', reason: reasons.join('; ').slice(0, 400) };
      }
      await state.mutate(actorOf(res), (draft) => installPolicy(draft, text, actorOf(res)));
      return { status: 200, body: { version, source: 'managed' }, target: 'policy', reason: 'narrowing change' };
    }),
  );

  return router;
}

function currentManaged(document: StateDocument): PolicyDocument | undefined {
  return document.policy === undefined ? undefined : parsePolicy(document.policy.text, 'managed policy');
}

function installPolicy(document: StateDocument, text: string, actor: string): void {
  parsePolicy(text, 'policy');
  document.policy = { text, version: createHash('sha256').update(text).digest('hex'), changedAt: new Date().toISOString(), changedBy: actor };
}

