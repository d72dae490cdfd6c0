import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { adminCall } from '../../helpers/admin.js';
import { startCli, type CliProcess } from '../../helpers/cli.js';
import { createAdmins, createJwtIssuer, enableAdmin, type Admins } from '../../helpers/lifecycle.js';
import { createFixture, type ProxyFixture } from '../../helpers/proxy-fixture.js';
import { logFile, readAuditRecords } from '../../helpers/test-env.js';
import { XksTestClient } from '../../helpers/xks-client.js';
import { workerAuditFile } from '../../../src/workers/messages.js';

/**
 * `hyok-proxy serve --workers 2` on real SoftHSM tokens: both workers serve
 * the shared port, the primary sums their metrics, an operator's fence reaches
 * both, a killed worker is replaced without failed requests, SIGHUP reaches
 * both, and SIGTERM stops everything.
 */
describe('serve --workers 2', () => {
  let fixture: ProxyFixture;
  let admins: Admins;
  let proxy: CliProcess;
  let client: XksTestClient;
  let adminUrl: string;
  let metricsUrl: string;
  const auditFile = logFile('workers-audit');

  const countOf = (pattern: RegExp): number => proxy.output().match(new RegExp(pattern.source, 'gm'))?.length ?? 0;
  const workerPids = (): Map<number, number> => {
    const pids = new Map<number, number>();
    for (const match of proxy.output().matchAll(/^\{.*"worker":(\d+),"pid":(\d+),"msg":"worker serving".*$/gm)) pids.set(Number(match[1]), Number(match[2]));
    return pids;
  };
  const agentPids = (): number[] => [...proxy.output().matchAll(/^\{.*"pid":(\d+),.*"msg":"agent serving".*$/gm)].map((match) => Number(match[1]));
  const waitUntilDead = async (pids: readonly number[]): Promise<number[]> => {
    for (let attempt = 0; attempt < 50 && pids.some(alive); attempt++) await new Promise((resolve) => setTimeout(resolve, 100));
    return pids.filter(alive);
  };
  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const scrape = async (): Promise<string> => {
    const response = await fetch(metricsUrl);
    assert.equal(response.status, 200);
    return response.text();
  };

  before(async () => {
    const issuer = await createJwtIssuer();
    admins = await createAdmins(issuer);
    fixture = await createFixture({ name: 'workers', start: false, configure: (config, dev) => enableAdmin(config, dev.dir, issuer) });
    const config = fixture.readConfig();
    config.server.port = 0;
    config.metrics = { enabled: true, host: '127.0.0.1', port: 0 };
    config.audit = { destination: { file: auditFile } };
    config.logging = { level: 'info', destination: 'stderr' };
    const file = join(fixture.dev.dir, 'workers.yaml');
    writeFileSync(file, stringify(config));
    proxy = startCli(['serve', '--config', file, '--workers', '2'], { logName: 'workers', env: { HYOK_LISTEN_PORT: '', HYOK_METRICS_PORT: '', HYOK_LISTEN_HOST: '' } });
    const line = await proxy.waitFor(/^\{.*"workers":2,"msg":"hyok-proxy serving".*\}$/m, 90_000);
    const serving = JSON.parse(line[0]) as { port: number; metricsUrl: string };
    metricsUrl = serving.metricsUrl;
    const workerLine = /^\{.*"adminUrl":"([^"]+)".*"msg":"hyok-proxy serving".*\}$/m.exec(proxy.output());
    assert.ok(workerLine !== null, 'a worker printed its admin URL');
    adminUrl = workerLine[1] as string;
    client = new XksTestClient({ baseUrl: `https://localhost:${serving.port}`, uriPrefix: fixture.dev.uriPrefix, credential: fixture.credential, ca: fixture.ca });
  });

  after(async () => {
    if (proxy !== undefined && proxy.child.exitCode === null) await proxy.stop('SIGKILL');
    await fixture?.close();
  });

  it('serves from both workers, each with its own audit chain, and the primary sums their metrics', async () => {
    assert.equal(workerPids().size, 2);
    for (let i = 0; i < 40; i++) {
      const response = await client.encrypt('foo', { plaintext: randomBytes(16) });
      assert.equal(response.status, 200, response.text);
    }
    for (const index of [1, 2]) {
      const file = workerAuditFile(auditFile, index);
      assert.ok(existsSync(file), file);
      const served = readAuditRecords(file).filter((record) => record['api'] === 'Encrypt' && record['outcome'] === 'success').length;
      assert.ok(served > 0, `worker ${index} served some of the 40 requests (each a new connection)`);
    }
    assert.ok(!existsSync(auditFile), 'no worker writes the shared file name: one writer per hash chain');
    const text = await scrape();
    const total = /^hyok_requests_total\{contract="aws-xks",api="Encrypt",key_store="dev",outcome="success"\} (\d+)$/m.exec(text);
    assert.equal(Number(total?.[1]), 40, 'counters are summed across workers');
    assert.match(text, /^hyok_hsm_member_agents\{member="softhsm-1",state="serving"\} 2$/m, 'one agent per worker and member');
    assert.match(text, /^hyok_hsm_member_health\{member="softhsm-1"\} 2$/m, 'health is the worst view, not a sum');
  });

  it('applies an operator\'s fence and restore in every worker, whichever worker took the call', async () => {
    const fenced = await adminCall(adminUrl, fixture.ca, 'POST', '/admin/v1/members/softhsm-2/fence', { token: admins.operator, body: { reason: 'workers test' } });
    assert.equal(fenced.status, 200, JSON.stringify(fenced.body));
    // Each call is a new connection: the primary hands them to the workers in turn.
    for (let i = 0; i < 6; i++) {
      let mode: unknown;
      for (let attempt = 0; attempt < 20; attempt++) {
        const members = await adminCall(adminUrl, fixture.ca, 'GET', '/admin/v1/members', { token: admins.auditor });
        mode = (members.body['members'] as Array<{ id: string; mode: string }>).find((member) => member.id === 'softhsm-2')?.mode;
        if (mode === 'fenced') break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(mode, 'fenced', `answer ${i}`);
    }
    assert.match(await scrape(), /^hyok_hsm_member_fenced\{member="softhsm-2"\} 1$/m);
    assert.ok(countOf(/"msg":"applying a member action taken on another worker"/) >= 1);
    const restored = await adminCall(adminUrl, fixture.ca, 'POST', '/admin/v1/members/softhsm-2/restore', { token: admins.operator });
    assert.equal(restored.status, 200, JSON.stringify(restored.body));
    for (let attempt = 0; attempt < 40 && /^hyok_hsm_member_fenced\{member="softhsm-2"\} 1$/m.test(await scrape()); attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.match(await scrape(), /^hyok_hsm_member_fenced\{member="softhsm-2"\} 0$/m, 'restored in both workers');
  });

  it('reloads every worker on SIGHUP to the primary', async () => {
    const before = countOf(/"msg":"configuration reloaded"/);
    proxy.child.kill('SIGHUP');
    await proxy.waitFor(new RegExp(`(?:"msg":"configuration reloaded"[^]*){${before + 2}}`), 15_000);
  });

  it('replaces a killed worker while the other one keeps serving', async () => {
    const [firstPid] = [...workerPids().values()];
    assert.ok(firstPid !== undefined);
    const agentsBefore = agentPids();
    const restartsBefore = countOf(/"msg":"worker serving"/);
    process.kill(firstPid, 'SIGKILL');
    await proxy.waitFor(/"msg":"worker exited; restarting"/, 10_000);
    for (let i = 0; i < 10; i++) {
      const response = await client.encrypt('foo', { plaintext: randomBytes(16) });
      assert.equal(response.status, 200, `while a worker restarts: ${response.text}`);
    }
    await proxy.waitFor(new RegExp(`(?:"msg":"worker serving"[^]*){${restartsBefore + 1}}`), 60_000);
    const pids = [...workerPids().values()];
    assert.ok(!pids.includes(firstPid) && pids.length === 2, `a new worker replaced ${firstPid}: ${pids.join(', ')}`);
    const response = await client.encrypt('foo', { plaintext: randomBytes(16) });
    assert.equal(response.status, 200);
    // The killed worker's agents (PKCS#11 sessions) end with it: they exit when their parent's channel closes.
    for (let attempt = 0; attempt < 50 && agentsBefore.filter(alive).length > 3; attempt++) await new Promise((resolve) => setTimeout(resolve, 100));
    const survivors = agentsBefore.filter(alive);
    assert.equal(survivors.length, 3, `the other worker's three agents live on, the dead worker's are gone: ${survivors.length} of ${agentsBefore.length}`);
  });

  it('stops the workers and their HSM agents on SIGTERM', async () => {
    const pids = [...workerPids().values(), ...agentPids()];
    assert.ok(pids.length >= 8, 'two workers, three agents each (plus the replaced worker\'s)');
    const code = await proxy.stop('SIGTERM');
    assert.equal(code, 0);
    assert.deepEqual(await waitUntilDead(pids), [], 'no worker or agent outlives the primary');
  });
});

describe('serve --workers 2 with a configuration no worker can start with', () => {
  it('exits with status 1 instead of restarting workers forever', async () => {
    const fixture = await createFixture({ name: 'workers-fail', start: false });
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    try {
      const config = fixture.readConfig();
      config.server.host = '127.0.0.1';
      config.server.port = (blocker.address() as { port: number }).port;
      config.metrics = { enabled: false };
      config.logging = { level: 'info', destination: 'stderr' };
      const file = join(fixture.dev.dir, 'workers-fail.yaml');
      writeFileSync(file, stringify(config));
      const proxy = startCli(['serve', '--config', file, '--workers', '2'], { logName: 'workers-fail', env: { HYOK_LISTEN_PORT: '', HYOK_METRICS_PORT: '', HYOK_LISTEN_HOST: '' } });
      const code = await new Promise<number | null>((resolve) => {
        const timer = setTimeout(() => resolve(-1), 60_000);
        proxy.child.once('exit', (exitCode) => {
          clearTimeout(timer);
          resolve(exitCode);
        });
      });
      if (code === -1) await proxy.stop('SIGKILL');
      assert.equal(code, 1, proxy.output().slice(-2000));
      assert.match(proxy.output(), /"msg":"a worker failed before any worker served; not restarting"/);
    } finally {
      blocker.close();
      await fixture.close();
    }
  });
});
