import type { Request, Response } from 'express';
import { errors as joseErrors, jwtVerify } from 'jose';
import type { TLSSocket } from 'node:tls';
import { ADMIN_ROLES, type AdminRole, type Config } from '../config/schema.js';
import type { JwksSource } from './jwks.js';

export interface AdminIdentity {
  /** JWT subject or client-certificate CN. */
  readonly actor: string;
  readonly via: 'mtls' | 'jwt';
  readonly roles: ReadonlySet<AdminRole>;
  /** The JWT came from the console's session cookie, so a state-changing call must prove it is not cross-site. */
  readonly fromConsoleCookie: boolean;
  /** When a JWT expires (seconds since the epoch); undefined for certificates. */
  readonly expiresAt?: number;
}

/** The console's session cookie: `__Host-` binds it to this origin, Secure and Path=/. */
export const CONSOLE_COOKIE = '__Host-hyok-console';
/** The header the console sends on every state-changing call: a cross-site form or image cannot set it. */
export const CONSOLE_CSRF_HEADER = 'x-hyok-console';

export class AdminAuthError extends Error {
  readonly status: 401 | 403;
  /** For the audit log only (e.g. which JWT check failed); never sent to the caller. */
  readonly detail: string | undefined;

  constructor(status: 401 | 403, message: string, detail?: string) {
    super(message);
    this.name = 'AdminAuthError';
    this.status = status;
    this.detail = detail;
  }
}

type AdminConfig = Config['admin'];

const JWT_SHAPE = '[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+';
const BEARER = new RegExp(`^Bearer (${JWT_SHAPE})$`);
const BARE_JWT = new RegExp(`^${JWT_SHAPE}$`);
/** A JWT is a few kilobytes at most; anything longer is refused before parsing. */
export const MAX_TOKEN_LENGTH = 8192;

/** The console cookie's value, when the Cookie header carries exactly one well-formed one. */
export function consoleCookieToken(header: string | undefined): string | undefined {
  if (header === undefined || header.length > MAX_TOKEN_LENGTH + 1024) return undefined;
  const values = header
    .split(';')
    .map((part) => part.trim())
    .filter((part) => part.startsWith(`${CONSOLE_COOKIE}=`))
    .map((part) => part.slice(CONSOLE_COOKIE.length + 1));
  const value = values.length === 1 ? (values[0] as string) : '';
  return value.length <= MAX_TOKEN_LENGTH && BARE_JWT.test(value) ? value : undefined;
}
const KNOWN_ROLES: ReadonlySet<string> = new Set(ADMIN_ROLES);

function rolesFrom(value: unknown): Set<AdminRole> {
  const list = Array.isArray(value) ? value : typeof value === 'string' ? value.split(' ') : [];
  return new Set(list.filter((role): role is AdminRole => typeof role === 'string' && KNOWN_ROLES.has(role)));
}

/**
 * Who is calling the admin API: a client certificate chained to the admin CA
 * and listed by CN, or else a bearer JWT signed by a key of the configured
 * JWKS with the pinned issuer, audience and algorithms. Anything else is 401.
 */
export class AdminAuthenticator {
  private readonly config: AdminConfig;
  private readonly jwks: JwksSource | undefined;

  constructor(config: AdminConfig, jwks: JwksSource | undefined) {
    this.config = config;
    this.jwks = jwks;
  }

  async authenticate(req: Request): Promise<AdminIdentity> {
    const certificates = this.config.clientCertificates;
    const socket = req.socket as TLSSocket;
    if (certificates !== undefined && socket.authorized) {
      const cn = socket.getPeerCertificate().subject?.CN;
      const name = Array.isArray(cn) ? cn[0] : cn;
      const roles = name === undefined ? undefined : certificates.roles[name];
      if (name !== undefined && roles !== undefined) return { actor: name, via: 'mtls', roles: new Set(roles), fromConsoleCookie: false };
    }
    const header = req.headers.authorization;
    if (header === undefined) {
      const cookie = consoleCookieToken(req.headers.cookie);
      if (cookie !== undefined) return this.verifyToken(cookie, true);
      throw new AdminAuthError(401, 'authentication required: a listed client certificate or a bearer token');
    }
    const match = header.length <= MAX_TOKEN_LENGTH + 7 ? BEARER.exec(header) : null;
    if (match === null) throw new AdminAuthError(401, 'malformed Authorization header');
    return this.verifyToken(match[1] as string, false);
  }

  /** Verifies a JWT the same way whether it came in a header, the console cookie or the console's login form. */
  async verifyToken(token: string, fromConsoleCookie: boolean): Promise<AdminIdentity> {
    if (this.config.jwt === undefined || this.jwks === undefined) throw new AdminAuthError(401, 'bearer tokens are not accepted here');
    if (token.length > MAX_TOKEN_LENGTH || !BARE_JWT.test(token)) throw new AdminAuthError(401, 'malformed token');
    const jwt = this.config.jwt;
    try {
      const { payload } = await jwtVerify(token, this.jwks.getKey, {
        issuer: jwt.issuer,
        audience: jwt.audience,
        algorithms: jwt.algorithms,
        clockTolerance: jwt.clockToleranceS,
        requiredClaims: ['exp', 'sub'],
      });
      return { actor: payload.sub as string, via: 'jwt', roles: rolesFrom(payload[jwt.rolesClaim]), fromConsoleCookie, expiresAt: payload.exp as number };
    } catch (error) {
      // One answer for every verification failure: no oracle on which check failed; the audit log has it.
      const code = error instanceof joseErrors.JOSEError ? error.code : 'ERR_UNKNOWN';
      throw new AdminAuthError(401, 'invalid bearer token', code);
    }
  }
}

export function requireRole(identity: AdminIdentity, allowed: readonly AdminRole[]): void {
  if (!allowed.some((role) => identity.roles.has(role))) {
    throw new AdminAuthError(403, `needs one of the roles: ${allowed.join(', ')}`);
  }
}

/** Every role that may read the admin API and open the console; `metrics` may only scrape. */
export const READ_ROLES: readonly AdminRole[] = ['operator', 'auditor', 'key-admin', 'approver'];

/** The identity the authentication middleware put on the response. */
export function identityOf(res: Response): AdminIdentity {
  return res.locals['identity'] as AdminIdentity;
}

/** "via:actor", as state records and approvals name who acted. */
export function actorOf(res: Response): string {
  const identity = identityOf(res);
  return `${identity.via}:${identity.actor}`;
}

/** Writes the admin.action audit record of one request (see the admin server). */
export type AdminActionRecorder = (req: Request, res: Response, action: string, target: string | undefined, outcome: 'success' | 'denied' | 'failure', reason?: string) => void;
