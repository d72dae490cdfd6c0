import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Request } from 'express';
import { consoleCookieToken, type AdminIdentity } from '../../../src/admin/auth.js';
import { refuseCrossSite } from '../../../src/admin/console/routes.js';

const JWT = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';

function identity(fromConsoleCookie: boolean): AdminIdentity {
  return { actor: 'alice', via: 'jwt', roles: new Set(['operator']), fromConsoleCookie };
}

function request(method: string, headers: Record<string, string>): Request {
  return { method, headers: { host: 'admin.example:9443', ...headers } } as unknown as Request;
}

describe('console session cookie', () => {
  it('reads exactly one well-formed __Host-hyok-console cookie among others', () => {
    assert.equal(consoleCookieToken(`__Host-hyok-console=${JWT}`), JWT);
    assert.equal(consoleCookieToken(`theme=dark; __Host-hyok-console=${JWT}; other=1`), JWT);
  });

  it('ignores a missing, doubled, malformed or oversized cookie', () => {
    assert.equal(consoleCookieToken(undefined), undefined);
    assert.equal(consoleCookieToken('theme=dark'), undefined);
    assert.equal(consoleCookieToken(`__Host-hyok-console=${JWT}; __Host-hyok-console=${JWT}`), undefined);
    assert.equal(consoleCookieToken('__Host-hyok-console=not-a-jwt'), undefined);
    assert.equal(consoleCookieToken('__Host-hyok-console='), undefined);
    assert.equal(consoleCookieToken(`hyok-console=${JWT}`), undefined);
    assert.equal(consoleCookieToken(`__Host-hyok-console=${'a'.repeat(9000)}.b.c`), undefined);
  });
});

describe('console cross-site refusal', () => {
  it('lets reads through, and anything carried by a token header or certificate', () => {
    assert.doesNotThrow(() => refuseCrossSite(request('GET', {}), identity(true)));
    assert.doesNotThrow(() => refuseCrossSite(request('POST', {}), identity(false)));
  });

  it('needs the console header, and a same-origin Origin when one is sent, for a cookie-carried change', () => {
    assert.throws(() => refuseCrossSite(request('POST', {}), identity(true)), { status: 403 });
    assert.throws(() => refuseCrossSite(request('POST', { 'x-hyok-console': '0' }), identity(true)), { status: 403 });
    assert.throws(() => refuseCrossSite(request('PUT', { 'x-hyok-console': '1', origin: 'https://evil.example' }), identity(true)), { status: 403 });
    assert.throws(() => refuseCrossSite(request('POST', { 'x-hyok-console': '1', origin: 'http://admin.example:9443' }), identity(true)), { status: 403 });
    assert.doesNotThrow(() => refuseCrossSite(request('POST', { 'x-hyok-console': '1' }), identity(true)));
    assert.doesNotThrow(() => refuseCrossSite(request('DELETE', { 'x-hyok-console': '1', origin: 'https://admin.example:9443' }), identity(true)));
  });
});
