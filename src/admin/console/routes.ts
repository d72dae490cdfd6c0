import { readFileSync } from 'node:fs';
import express, { type Request, type Response, type Router } from 'express';
import { fromRoot } from '../../lib/paths.js';
import {
  AdminAuthError,
  CONSOLE_COOKIE,
  CONSOLE_CSRF_HEADER,
  MAX_TOKEN_LENGTH,
  READ_ROLES,
  type AdminActionRecorder,
  type AdminAuthenticator,
  type AdminIdentity,
} from '../auth.js';

/**
 * The SRE console: static pages served by the admin listener. The login page
 * and the page code hold no data and are public; the console page and every
 * call it makes need admin authentication: a client certificate, or a bearer
 * JWT kept in an HttpOnly, SameSite=Strict `__Host-` cookie after login. The
 * cookie is only ever the JWT itself, so it expires when the token does.
 */

const ASSETS = {
  'login.html': 'text/html; charset=utf-8',
  'console.html': 'text/html; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
  'login.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
  'icon.svg': 'image/svg+xml',
} as const;
type AssetName = keyof typeof ASSETS;

/** Scripts and styles from this origin only, no inline code; data only from this origin; never framed. */
const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Who may open the console: any role that may read the API; everything on it goes through the API's own role checks. */
const CONSOLE_ROLES = READ_ROLES;

export interface ConsoleRoutesContext {
  readonly authenticator: AdminAuthenticator;
  readonly record: AdminActionRecorder;
}

function loadAssets(): ReadonlyMap<AssetName, Buffer> {
  const assets = new Map<AssetName, Buffer>();
  for (const name of Object.keys(ASSETS) as AssetName[]) assets.set(name, readFileSync(fromRoot('src', 'admin', 'console', 'static', name)));
  return assets;
}

function sendAsset(res: Response, assets: ReadonlyMap<AssetName, Buffer>, name: AssetName): void {
  res.setHeader('Content-Type', ASSETS[name]);
  res.setHeader('Content-Security-Policy', PAGE_CSP);
  res.setHeader('Cache-Control', 'no-store');
  res.send(assets.get(name));
}

function sessionCookie(token: string, maxAgeSeconds: number): string {
  return `${CONSOLE_COOKIE}=${token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}`;
}

/**
 * A call carried by the console cookie that changes something must come from
 * the console itself: the custom header cannot be set cross-site without a
 * CORS preflight (which this listener never grants), and a sent Origin must be ours.
 */
export function refuseCrossSite(req: Request, identity: AdminIdentity): void {
  if (!identity.fromConsoleCookie || req.method === 'GET' || req.method === 'HEAD') return;
  const origin = req.headers.origin;
  const sameOrigin = origin === undefined || origin === `https://${req.headers.host ?? ''}`;
  if (req.headers[CONSOLE_CSRF_HEADER] !== '1' || !sameOrigin) {
    throw new AdminAuthError(403, 'a console session may only change things from the console page');
  }
}

/** Routes that run before authentication: pages, page code, login and logout. */
export function consoleRoutes(context: ConsoleRoutesContext): Router {
  const assets = loadAssets();
  const router = express.Router();

  router.get('/console/login', (_req, res) => sendAsset(res, assets, 'login.html'));
  router.get('/console/assets/:name', (req, res, next) => {
    const name = req.params['name'] as string;
    if (name === 'login.html' || name === 'console.html' || !Object.hasOwn(ASSETS, name)) return next();
    sendAsset(res, assets, name as AssetName);
  });

  router.get(['/console', '/console/'], (req, res) => {
    context.authenticator.authenticate(req).then(
      (identity) => {
        if (!CONSOLE_ROLES.some((role) => identity.roles.has(role))) {
          res.status(403).json({ error: 'forbidden', message: `needs one of the roles: ${CONSOLE_ROLES.join(', ')}` });
          return;
        }
        sendAsset(res, assets, 'console.html');
      },
      () => {
        res.setHeader('Cache-Control', 'no-store');
        res.redirect(303, '/console/login');
      },
    );
  });

  router.post('/console/session', express.json({ limit: MAX_TOKEN_LENGTH + 256, strict: true }), (req, res) => {
    const token = (req.body as { token?: unknown } | undefined)?.token;
    const fail = (status: 400 | 401 | 403, message: string, detail?: string): void => {
      context.record(req, res, 'console.login', undefined, 'denied', detail ?? message);
      res.status(status).json({ error: status === 400 ? 'bad_request' : status === 401 ? 'unauthenticated' : 'forbidden', message });
    };
    if (req.headers[CONSOLE_CSRF_HEADER] !== '1') return fail(403, 'log in from the console page');
    if (typeof token !== 'string' || token.length === 0) return fail(400, 'the body must be {"token": "<JWT>"}');
    context.authenticator.verifyToken(token.trim(), true).then(
      (identity) => {
        res.locals['identity'] = identity;
        if (!CONSOLE_ROLES.some((role) => identity.roles.has(role))) return fail(403, `needs one of the roles: ${CONSOLE_ROLES.join(', ')}`);
        const maxAge = Math.max(0, Math.floor((identity.expiresAt ?? 0) - Date.now() / 1000));
        res.setHeader('Set-Cookie', sessionCookie(token.trim(), maxAge));
        res.setHeader('Cache-Control', 'no-store');
        context.record(req, res, 'console.login', undefined, 'success');
        res.json({ actor: identity.actor, roles: [...identity.roles].sort(), expiresAt: new Date((identity.expiresAt ?? 0) * 1000).toISOString() });
      },
      (error: unknown) => {
        const failure = error instanceof AdminAuthError ? error : new AdminAuthError(401, 'invalid bearer token');
        fail(failure.status, failure.message, failure.detail);
      },
    );
  });

  // Logging out needs no valid session: it only clears the cookie.
  router.delete('/console/session', (req, res) => {
    if (req.headers[CONSOLE_CSRF_HEADER] !== '1') {
      res.status(403).json({ error: 'forbidden', message: 'log out from the console page' });
      return;
    }
    res.setHeader('Set-Cookie', sessionCookie('', 0));
    res.status(204).end();
  });

  return router;
}
