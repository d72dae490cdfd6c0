import { request } from 'node:https';
import { writeFileSync } from 'node:fs';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
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

/** One call to the admin API over real TLS (servername localhost, dev CA). */
export function adminCall(baseUrl: string, ca: string, method: string, path: string, options: AdminCallOptions = {}): Promise<AdminCallResult> {
  const url = new URL(path, baseUrl);
  const payload = options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: url.port,
        path: url.pathname,
        method,
        servername: 'localhost',
        ca,
        ...(options.cert === undefined ? {} : { cert: options.cert, key: options.key }),
        headers: {
          ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
          ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
          ...options.headers,
        },
        timeout: 5000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('admin call timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}
