import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { ConfigInput } from '../../src/config/schema.js';
import { adminCall, ADMIN_AUDIENCE, ADMIN_ISSUER, createJwtIssuer, writeJwks, type AdminCallResult, type JwtIssuer } from './admin.js';
import { after, before } from 'node:test';
import { createFixture, type FixtureOptions, type ProxyFixture } from './proxy-fixture.js';

/** Admins with the roles dual control needs, as bearer tokens of one test identity provider. */
export interface Admins {
  readonly keyAdmin: string;
  readonly keyAdmin2: string;
  readonly approver1: string;
  readonly approver2: string;
  readonly approver3: string;
  readonly operator: string;
  readonly auditor: string;
  /** Holds key-admin and approver: separation of duties forbids it to approve. */
  readonly conflicted: string;
}

export async function createAdmins(issuer: JwtIssuer): Promise<Admins> {
  const token = (subject: string, roles: string[]): Promise<string> => issuer.sign({ roles }, { subject, expiresIn: '2h' });
  return {
    keyAdmin: await token('ka-alice', ['key-admin']),
    keyAdmin2: await token('ka-dave', ['key-admin']),
    approver1: await token('ap-bob', ['approver']),
    approver2: await token('ap-carol', ['approver']),
    approver3: await token('ap-erin', ['approver']),
    operator: await token('op-frank', ['operator']),
    auditor: await token('au-grace', ['auditor']),
    conflicted: await token('both-heidi', ['key-admin', 'approver']),
  };
}

/** Enables the admin API with JWT authentication for a fixture's config. */
export function enableAdmin(config: ConfigInput, devDir: string, issuer: JwtIssuer): void {
  writeJwks(join(devDir, 'admin-jwks.json'), issuer);
  config.admin = { enabled: true, port: 0, jwt: { jwksFile: 'admin-jwks.json', issuer: ADMIN_ISSUER, audience: ADMIN_AUDIENCE } };
}

export type AdminCall = (token: string, method: string, path: string, body?: unknown) => Promise<AdminCallResult>;

export function adminCaller(fixture: ProxyFixture): AdminCall {
  return (token, method, path, body) => adminCall(fixture.proxy?.adminUrl ?? '', fixture.ca, method, path, body === undefined ? { token } : { token, body });
}

/** A proxy with the admin API on, started before the suite's tests and closed after them. */
export interface AdminSuite {
  readonly fixture: ProxyFixture;
  readonly admins: Admins;
  readonly call: AdminCall;
}

export function useAdminFixture(options: FixtureOptions): AdminSuite {
  let suite: AdminSuite | undefined;
  before(async () => {
    const issuer = await createJwtIssuer();
    const admins = await createAdmins(issuer);
    const fixture = await createFixture({
      ...options,
      configure: (config, dev) => {
        enableAdmin(config, dev.dir, issuer);
        options.configure?.(config, dev);
      },
    });
    suite = { fixture, admins, call: adminCaller(fixture) };
  });
  after(async () => {
    await suite?.fixture.close();
  });
  const started = (): AdminSuite => {
    if (suite === undefined) throw new Error('the admin fixture is used before its suite started');
    return suite;
  };
  return {
    get fixture() {
      return started().fixture;
    },
    get admins() {
      return started().admins;
    },
    get call() {
      return started().call;
    },
  };
}

export { createJwtIssuer };

/** Approves a request with the given approver tokens, asserting each step succeeds. */
export async function approveWith(call: AdminCall, approval: Record<string, unknown>, ...tokens: string[]): Promise<AdminCallResult> {
  let last: AdminCallResult | undefined;
  for (const token of tokens) {
    last = await call(token, 'POST', `/admin/v1/approvals/${String(approval['id'])}/approve`, { digest: approval['digest'] });
    assert.equal(last.status, 200, JSON.stringify(last.body));
  }
  return last as AdminCallResult;
}
