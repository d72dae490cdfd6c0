import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import helmet from 'helmet';
import { captureStaticHeaders } from '../../../src/listener/security-headers.js';

describe('captureStaticHeaders', () => {
  it('records every header helmet sets, in order, with string values', () => {
    const headers = captureStaticHeaders(helmet({ hsts: { maxAge: 31_536_000, includeSubDomains: false } }));
    const names = headers.map(([name]) => name);
    assert.ok(names.includes('Strict-Transport-Security') && names.includes('X-Content-Type-Options') && names.includes('Content-Security-Policy'));
    assert.deepEqual(headers.find(([name]) => name === 'Strict-Transport-Security'), ['Strict-Transport-Security', 'max-age=31536000']);
    assert.ok(headers.every(([, value]) => typeof value === 'string' && value.length > 0));
  });

  it('refuses a middleware that reads the request, touches the response beyond headers, fails or finishes late', () => {
    assert.throws(() => captureStaticHeaders((req, _res, next) => (req.url === '/' ? next() : next())), /beyond headers/);
    assert.throws(() => captureStaticHeaders((_req, res, next) => (res.statusCode === 200 ? next() : next())), /beyond headers/);
    assert.throws(() => captureStaticHeaders((_req, _res, next) => next(new Error('boom'))), /boom/);
    assert.throws(() => captureStaticHeaders(() => undefined), /did not finish synchronously/);
  });
});
