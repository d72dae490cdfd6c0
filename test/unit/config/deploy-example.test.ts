import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { ConfigSchema } from '../../../src/config/schema.js';
import { fromRoot } from '../../../src/lib/paths.js';

describe('deploy/config/hyok-proxy.example.yaml', () => {
  it('is a valid configuration (schema only: its secret files exist only on a real host)', () => {
    const parsed = ConfigSchema.safeParse(parse(readFileSync(fromRoot('deploy', 'config', 'hyok-proxy.example.yaml'), 'utf8')));
    assert.equal(parsed.success, true, parsed.success ? '' : JSON.stringify(parsed.error.issues));
    assert.equal(parsed.data?.server.tls.clientAuth.mode, 'required');
    // The example shows the production shape of every optional section.
    assert.ok(parsed.data?.redis?.sentinel !== undefined);
    assert.equal(parsed.data?.admin.enabled, true);
    assert.ok(parsed.data?.admin.jwt !== undefined && parsed.data.admin.clientCertificates !== undefined);
  });
});
