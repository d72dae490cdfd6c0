import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { adminCall, createJwtIssuer, startJwtAdminFixture, type JwtIssuer } from '../../helpers/admin.js';
import type { ProxyFixture } from '../../helpers/proxy-fixture.js';
import { readAuditRecords, testOutputDir } from '../../helpers/test-env.js';

/** Debian's Chromium (scripts/ensure-test-deps.sh); playwright-core never downloads a browser. */
const CHROMIUM = '/usr/bin/chromium';
/** Without these, Chromium keeps trying to reach Google's hosts, which this machine's network refuses. */
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

describe('SRE console in headless Chromium: log in, see three members, fence one, see it change', () => {
  let fixture: ProxyFixture;
  let issuer: JwtIssuer;
  let browser: Browser;
  let page: Page;
  let url: string;
  const pageErrors: string[] = [];

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/ensure-test-deps.sh`);
    issuer = await createJwtIssuer();
    fixture = await startJwtAdminFixture('console-browser', issuer);
    url = fixture.proxy?.adminUrl ?? '';
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    // The dev CA is not in Chromium's store; the test trusts this one listener.
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 1000 } });
    page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(`pageerror: ${error.message}`));
    // Every page, script, style and API call answers; the only expected refusal is the redirect to the login page.
    page.on('response', (response) => {
      if (response.status() >= 400) pageErrors.push(`${response.status()} ${response.request().method()} ${new URL(response.url()).pathname}`);
    });
    // CSP violations and failed scripts are reported as console errors.
    page.on('console', (message) => {
      if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) pageErrors.push(`console: ${message.text()}`);
    });
  });
  after(async () => {
    await browser?.close();
    await fixture?.close();
  });

  it('logs in, shows the members, fences one through the confirmation dialog and shows the new state', async () => {
    const token = await issuer.sign({ roles: ['operator'] }, { subject: 'sre-erin' });
    await page.goto(`${url}/console`);
    assert.equal(new URL(page.url()).pathname, '/console/login');
    await page.fill('#token', token);
    await Promise.all([page.waitForURL(`${url}/console`), page.click('#login')]);

    const rows = page.locator('#members tbody tr');
    await rows.nth(2).waitFor();
    assert.equal(await rows.count(), 3);
    assert.deepEqual(await page.locator('#members tbody td.id').allTextContents(), ['softhsm-1', 'softhsm-2', 'softhsm-3']);
    await page.locator('#whoami').filter({ hasText: 'sre-erin' }).waitFor();

    // Some traffic, so the chart, the API table and the audit list have something to show.
    for (let i = 0; i < 5; i++) await Promise.all(Array.from({ length: 10 }, () => fixture.client.encrypt('foo', { plaintext: randomBytes(32) })));
    await page.locator('#apis tbody tr', { hasText: 'Encrypt' }).waitFor({ timeout: 5000 });
    assert.deepEqual(await page.locator('#member-legend .member-name').allTextContents(), ['softhsm-1', 'softhsm-2', 'softhsm-3']);

    const member = page.locator('tr[data-member="softhsm-2"]');
    const mode = member.locator('td').nth(3);
    assert.equal(await mode.textContent(), 'serving');
    await member.locator('button[data-action="fence"]').click();
    const dialog = page.locator('dialog#confirm');
    await dialog.waitFor({ state: 'visible' });
    assert.match((await page.locator('#confirm-text').textContent()) ?? '', /Fence member softhsm-2\?/);
    await page.fill('#confirm-reason', 'browser drill');
    await page.click('#confirm-ok');
    await page.locator('tr[data-member="softhsm-2"] td.state-fenced').waitFor({ timeout: 5000 });
    assert.equal(await mode.textContent(), 'fenced');
    assert.match((await member.locator('td').nth(8).textContent()) ?? '', /fenced by operator:sre-erin: browser drill/);
    await page.locator('#audit tbody tr', { hasText: 'member.fence' }).waitFor({ timeout: 5000 });

    const artifacts = join(testOutputDir(), 'artifacts');
    mkdirSync(artifacts, { recursive: true });
    const screenshot = join(artifacts, 'console-member-fenced.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    assert.ok(statSync(screenshot).size > 10_000, 'a screenshot with content');

    // The server agrees, and audited who did it and why.
    const auditor = await issuer.sign({ roles: ['auditor'] });
    assert.equal((await adminCall(url, fixture.ca, 'GET', '/admin/v1/members/softhsm-2', { token: auditor })).body['mode'], 'fenced');
    const record = readAuditRecords(fixture.auditFile).find((entry) => entry['action'] === 'member.fence' && entry['target'] === 'softhsm-2');
    assert.equal(record?.['actor'], 'sre-erin');
    assert.equal(record?.['reason'], 'browser drill');

    // Cancel leaves things as they are; Restore brings the member back.
    await member.locator('button[data-action="restore"]').click();
    await page.click('#confirm-cancel');
    assert.equal(await mode.textContent(), 'fenced');
    await member.locator('button[data-action="restore"]').click();
    await page.click('#confirm-ok');
    await page.locator('tr[data-member="softhsm-2"] td.state-serving').waitFor({ timeout: 5000 });

    assert.deepEqual(pageErrors, []);
  });

  it('an approver sees a pending kill-switch restore and approves it through the dialog, with the digest it shows', async () => {
    const operator = await issuer.sign({ roles: ['operator'] }, { subject: 'sre-erin' });
    assert.equal((await adminCall(url, fixture.ca, 'POST', '/admin/v1/killswitch', { token: operator, body: { keyStore: 'dev', keyId: 'canary', reason: 'browser test' } })).status, 200);
    const asked = await adminCall(url, fixture.ca, 'POST', '/admin/v1/killswitch/restore', { token: operator, body: { keyStore: 'dev', keyId: 'canary' } });
    assert.equal(asked.status, 202, JSON.stringify(asked.body));
    const approval = asked.body['approval'] as { id: string; digest: string };

    await page.context().clearCookies();
    await page.goto(`${url}/console`);
    await page.fill('#token', await issuer.sign({ roles: ['approver'] }, { subject: 'approver-fay' }));
    await Promise.all([page.waitForURL(`${url}/console`), page.click('#login')]);
    const row = page.locator(`tr[data-approval="${approval.id}"]`);
    await row.waitFor({ timeout: 5000 });
    assert.equal(await row.locator('td.digest').textContent(), approval.digest.slice(0, 16));
    assert.equal(await row.locator('td').nth(3).textContent(), '0 of 2');
    // An approver may not act on members.
    assert.equal(await page.locator('tr[data-member="softhsm-1"] button[data-action="fence"]').isDisabled(), true);
    await row.locator('button[data-action="approve"]').click();
    await page.click('#confirm-ok');
    await row.locator('td', { hasText: '1 of 2' }).waitFor({ timeout: 5000 });

    const auditor = await issuer.sign({ roles: ['auditor'] });
    const listed = await adminCall(url, fixture.ca, 'GET', '/admin/v1/approvals', { token: auditor });
    const stored = (listed.body['approvals'] as Array<{ id: string; approvals: Array<{ by: string }> }>).find((entry) => entry.id === approval.id);
    assert.deepEqual(stored?.approvals.map((entry) => entry.by), ['jwt:approver-fay']);
    assert.deepEqual(pageErrors, []);
  });

  it('logging out ends the session: the console sends the browser back to the login page', async () => {
    await Promise.all([page.waitForURL(`${url}/console/login`), page.click('#logout')]);
    await page.goto(`${url}/console`);
    assert.equal(new URL(page.url()).pathname, '/console/login');
    assert.deepEqual(pageErrors, []);
  });
});
