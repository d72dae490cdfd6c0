import { request } from 'node:https';
import { writeFileSync } from 'node:fs';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { join } from 'node:path';
import { createFixture, type ProxyFixture } from './proxy-fixture.js';
import { registerSecret } from './test-env.js';

export const ADMIN_ISSUER = 'https://idp.test.example';
export const ADMIN_AUDIENCE = 'hyok-admin';

export interface JwtIssuer {
  readonly jwks: { keys: object[] };
  sign(claims: JWTPayload & { roles?: unknown }, options?: { subject?: string; expiresIn?: string | number; issuer?: string; audience?: string; alg?: string }): Promise<string>;
}

/** A test identity provider: an ES256 key pair, its public JWKS and a token signer. */
export async function createJwtIssuer(kid = 'test-key-1'): Promise<JwtIssuer> {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  return {
    jwks: { keys: [jwk] },
    async sign(claims, options = {}) {
      const token = await new SignJWT(claims)
        .setProtectedHeader({ alg: options.alg ?? 'ES256', kid })
        .setSubject(options.subject ?? 'sre-alice')
        .setIssuer(options.issuer ?? ADMIN_ISSUER)
        .setAudience(options.audience ?? ADMIN_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime(options.expiresIn ?? '10m')
        .sign(privateKey);
      registerSecret('signature', token.split('.')[2] as string);
      return token;
    },
  };
}

export function writeJwks(file: string, issuer: JwtIssuer): void {
  writeFileSync(file, JSON.stringify(issuer.jwks));
}

export interface AdminCallOptions {
  readonly token?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly body?: unknown;
  readonly rawBody?: string;
  readonly headers?: Record<string, string>;
}

export interface AdminCallResult {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

/** One call to the admin API over real TLS (servername localhost, dev CA), its body parsed as JSON. */
export async function adminCall(baseUrl: string, ca: string, method: string, path: string, options: AdminCallOptions = {}): Promise<AdminCallResult> {
  const payload = options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  const headers = { ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }), ...options.headers };
  const client = options.cert === undefined || options.key === undefined ? undefined : { cert: options.cert, key: options.key };
  const result = await adminRaw(baseUrl, ca, method, path, headers, payload, client);
  return { status: result.status, body: result.text === '' ? {} : (JSON.parse(result.text) as Record<string, unknown>) };
}

export interface RawAdminResult {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

/** One call to the admin listener that keeps the raw answer (pages, redirects, cookies, Prometheus text). */
export function adminRaw(
  baseUrl: string,
  ca: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  payload?: string,
  client?: { readonly cert: string; readonly key: string },
): Promise<RawAdminResult> {
  const url = new URL(path, baseUrl);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: url.port,
        path: `${url.pathname}${url.search}`,
        method,
        servername: 'localhost',
        ca,
        ...client,
        headers: { ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }), ...headers },
        timeout: 5000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('admin call timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}

/** A dev-setup proxy whose admin listener takes bearer JWTs from `issuer` (no client certificates). */
export async function startJwtAdminFixture(name: string, issuer: JwtIssuer): Promise<ProxyFixture> {
  const fixture = await createFixture({
    name,
    start: false,
    configure: (config, dev) => {
      writeJwks(join(dev.dir, 'admin-jwks.json'), issuer);
      config.admin = { enabled: true, port: 0, jwt: { jwksFile: 'admin-jwks.json', issuer: ADMIN_ISSUER, audience: ADMIN_AUDIENCE } };
    },
  });
  await fixture.startProxy();
  return fixture;
}
