import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse, stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { ensureDevEnvironment, type DevEnvironment } from '../../src/dev/bootstrap.js';
import { issueCertificate } from '../../src/dev/pki.js';
import { fromRoot } from '../../src/lib/paths.js';
import { FaultControl, faultShimPath } from '../../test/helpers/fault-shim.js';
import { encryptPayload, metadata, signMany, signRequest, type PreparedRequest, type Target } from '../xks-requests.js';
import { HsmNode } from './hsm-node.js';
import { HostMonitor, type HostSecond } from './host-monitor.js';
import { adminGet, ProxyProcess, type AdminIdentity } from './proxy-process.js';
import { buildReport, type DrillReport, type HealthSample, type MemberState } from './report.js';
import { perform, SCENARIOS, type FaultEvent, type Scenario, type ScenarioContext, type ScenarioName } from './scenarios.js';
import { runTraffic, type TrafficResult } from './traffic.js';

/**
 * One failover drill, end to end: p11-kit 0.25 (built once), a dev environment
 * (three SoftHSM tokens with identical keys, dev PKI) in a work directory,
 * three HSM nodes (one `p11-kit server` each), the proxy as its own process with
 * one member per node, steady signed traffic, the scenario's faults and
 * restores, member health sampled from the admin API, then the report. Every
 * process it started is gone when it returns or throws; a reaper process ends
 * them even if this process is killed outright.
 */

export interface DrillOptions {
  readonly scenario: ScenarioName;
  readonly durationS: number;
  /** Requests per second (half encrypt, half decrypt). */
  readonly rate: number;
  /** Added latency of the slow node in slow-one. */
  readonly slowMs?: number;
  /** Where the dev environment, sockets and logs go; a temp dir (removed afterwards unless keep) by default. */
  readonly workDir?: string;
  /** Reuse this dev environment (ensureDevEnvironment reuses a complete one) instead of making one in workDir. */
  readonly devDir?: string;
  readonly keep?: boolean;
  /** Proxy, audit and node logs; workDir/logs by default. */
  readonly logDir?: string;
  readonly signal?: AbortSignal;
  readonly progress?: (line: string) => void;
}

const NODE_COUNT = 3;
/** Member health is sampled this often: the resolution of time to detect and time to recover. */
const HEALTH_SAMPLE_MS = 100;
const SIGNED_BATCH = 400;
/** SigV4 signatures are accepted for 5 minutes; longer drills sign a fresh batch this often. */
const RESIGN_INTERVAL_MS = 120_000;
const OBSERVER_CN = 'hyok-drill-observer';

function memberId(index: number): string {
  return `hsm-node-${index + 1}`;
}

export interface P11Kit {
  readonly prefix: string;
  readonly clientModule: string;
}

/** Builds p11-kit 0.25 on first use (scripts/build-p11kit.sh) and returns where it lives. */
export function locateP11Kit(progress: (line: string) => void = () => undefined): P11Kit {
  const script = fromRoot('scripts', 'build-p11kit.sh');
  progress('locating p11-kit 0.25 (builds it on first use, about a minute)');
  const output = execFileSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const prefix = output.trim().split('\n').pop() ?? '';
  const candidates = [join(prefix, 'lib', 'pkcs11', 'p11-kit-client.so')];
  const lib = join(prefix, 'lib');
  if (existsSync(lib)) for (const entry of readdirSync(lib)) candidates.push(join(lib, entry, 'pkcs11', 'p11-kit-client.so'));
  const clientModule = candidates.find((candidate) => existsSync(candidate));
  if (clientModule === undefined || !existsSync(join(prefix, 'bin', 'p11-kit'))) throw new Error(`scripts/build-p11kit.sh did not leave p11-kit in '${prefix}'`);
  return { prefix, clientModule };
}

/**
 * A detached shell that SIGKILLs every registered process group once this process is gone, however it
 * ends (even by SIGKILL), then removes `removeDir` (the drill's own temp dir) when given.
 */
class Reaper {
  private readonly file: string;
  private readonly pid: number | undefined;

  constructor(file: string, removeDir: string | undefined) {
    this.file = file;
    writeFileSync(file, '');
    const script =
      `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.5; done; ` +
      `while read -r g; do kill -KILL -- "-$g" 2>/dev/null; done < "$1"; rm -f "$1"; if [ -n "$2" ]; then rm -rf -- "$2"; fi`;
    const child = spawn('bash', ['-c', script, 'hyok-drill-reaper', file, removeDir ?? ''], { detached: true, stdio: 'ignore' });
    child.unref();
    this.pid = child.pid;
  }

  add(pgid: number): void {
    appendFileSync(this.file, `${pgid}\n`);
  }

  /** Everything ended normally: the reaper is not needed any more. */
  dismiss(): void {
    if (this.pid === undefined) return;
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
    rmSync(this.file, { force: true });
  }
}

function readDevCa(dev: DevEnvironment): { certPem: string; keyPem: string; subject: string } {
  return { certPem: readFileSync(dev.caFile, 'utf8'), keyPem: readFileSync(join(dev.dir, 'pki', 'ca-key.pem'), 'utf8'), subject: '' };
}

function drillConfig(dev: DevEnvironment, nodes: readonly HsmNode[], clientModule: string, logDir: string, tag: string): ConfigInput {
  const config = parse(readFileSync(dev.configFile, 'utf8')) as ConfigInput;
  config.server.port = 0;
  // Scraped once a second for the proxy's event-loop delay (HostMonitor).
  config.metrics = { enabled: true, host: '127.0.0.1', port: 0 };
  config.audit = { destination: { file: join(logDir, `${tag}-audit.log`) } };
  config.logging = { level: 'info', destination: 'stderr' };
  config.admin = {
    enabled: true,
    host: '127.0.0.1',
    port: 0,
    clientCertificates: { caFile: dev.caFile, roles: { [OBSERVER_CN]: ['auditor'] } },
  };
  const template = config.hsm.members[0];
  if (template === undefined) throw new Error('the dev config has no HSM member');
  config.hsm.members = nodes.map((node, index) => ({
    id: memberId(index),
    model: 'SoftHSM 2 behind p11-kit 0.25 server (drill node)',
    module: clientModule,
    tokenLabel: node.options.tokenLabel,
    pin: template.pin,
    zone: `drill-${index + 1}`,
    // The client module reads the address when it is loaded: one agent process, one server.
    environment: { P11_KIT_SERVER_ADDRESS: node.serverAddress },
  }));
  return config;
}

function post(agent: Agent, target: Target, prepared: PreparedRequest): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: target.host, port: target.port, path: prepared.path, method: 'POST', headers: prepared.headers, agent, timeout: 5000 },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
          } catch (error) {
            reject(error as Error);
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(prepared.body);
  });
}

/**
 * Real ciphertexts for the decrypt half of the traffic, made through the proxy `connections` at a time,
 * which also opens the keep-alive connections the traffic will use.
 */
async function sealSamples(agent: Agent, target: Target, connections: number): Promise<Array<Record<string, unknown>>> {
  const sealed: Array<Record<string, unknown>> = [];
  for (let round = 0; round < Math.ceil(60 / connections); round++) {
    const batch = await Promise.all(
      Array.from({ length: connections }, async () => {
        const prepared = await signRequest(target, 'keys/foo/encrypt', encryptPayload({ plaintextBytes: 32, aadBytes: 64 }));
        const response = await post(agent, target, prepared);
        if (response.status !== 200) throw new Error(`preparing ciphertexts: encrypt answered ${response.status} ${JSON.stringify(response.body)}`);
        return { ...response.body, aad: (JSON.parse(prepared.body) as Record<string, unknown>)['additionalAuthenticatedData'] };
      }),
    );
    sealed.push(...batch);
  }
  return sealed;
}

/** A fresh batch of signed requests, half encrypt and half decrypt (SigV4 signatures age out after 5 minutes). */
function signBatch(target: Target, sealed: ReadonlyArray<Record<string, unknown>>): Promise<PreparedRequest[]> {
  return signMany(SIGNED_BATCH, (index) => {
    if (index % 2 === 0) return signRequest(target, 'keys/foo/encrypt', encryptPayload({ plaintextBytes: 32, aadBytes: 64 }));
    const entry = sealed[(index >> 1) % sealed.length] as Record<string, unknown>;
    return signRequest(target, 'keys/foo/decrypt', {
      requestMetadata: metadata('Decrypt'),
      ciphertext: entry['ciphertext'],
      ciphertextMetadata: entry['ciphertextMetadata'],
      initializationVector: entry['initializationVector'],
      authenticationTag: entry['authenticationTag'],
      additionalAuthenticatedData: entry['aad'],
      encryptionAlgorithm: 'AES_GCM',
    });
  });
}

interface MembersView {
  members: Array<{ id: string; health: MemberState['health']; breaker: string; agents: { serving: number; total: number }; lastError: { message: string } | null }>;
}

async function membersNow(admin: AdminIdentity, proxy: ProxyProcess, agent: Agent): Promise<Record<string, MemberState>> {
  const view = (await adminGet(proxy.adminUrl, '/admin/v1/members', admin, agent)) as MembersView;
  return Object.fromEntries(
    view.members.map((member) => [
      member.id,
      { health: member.health, breaker: member.breaker, servingAgents: member.agents.serving, lastError: member.lastError?.message ?? null },
    ]),
  );
}

async function waitForAllActive(admin: AdminIdentity, proxy: ProxyProcess, agent: Agent, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const members = await membersNow(admin, proxy, agent);
      last = JSON.stringify(members);
      if (Object.keys(members).length === NODE_COUNT && Object.values(members).every((member) => member.health === 'ACTIVE')) return;
    } catch (error) {
      last = (error as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`the members did not all become ACTIVE within ${timeoutMs} ms: ${last}`);
}

interface DriveOptions {
  readonly scenario: Scenario;
  readonly nodes: readonly HsmNode[];
  readonly faults: ReadonlyMap<string, FaultControl>;
  readonly slowMs: number;
  readonly durationS: number;
  readonly rate: number;
  readonly target: Target;
  readonly httpsAgent: Agent;
  readonly requests: PreparedRequest[];
  readonly resign: () => Promise<PreparedRequest[]>;
  readonly sampleMembers: () => Promise<Record<string, MemberState>>;
  readonly metricsUrl: string | undefined;
  /** Process groups of the proxy and the nodes (for the drill's own share of the CPU). */
  readonly processGroups: () => readonly number[];
  readonly progress: (line: string) => void;
  readonly signal?: AbortSignal;
}

interface DriveResult {
  readonly traffic: TrafficResult;
  readonly events: FaultEvent[];
  readonly samples: HealthSample[];
  readonly hostSeconds: HostSecond[];
}

/**
 * Traffic, the scenario's timetable, the member-health sampler and the host monitor, side by side. Every
 * loop ends by itself: traffic after `durationS` (or at once when `signal` aborts or the scenario throws),
 * the others when traffic has ended.
 */
async function drive(options: DriveOptions): Promise<DriveResult> {
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  options.signal?.addEventListener('abort', onAbort);
  const events: FaultEvent[] = [];
  const samples: HealthSample[] = [];
  const host = new HostMonitor();
  let requests = options.requests;
  let trafficStart = performance.now();
  let sampling = true;
  const sinceStart = (): number => Math.round(performance.now() - trafficStart) / 1000;

  const sampler = async (): Promise<void> => {
    while (sampling) {
      const begun = performance.now();
      const atS = sinceStart();
      try {
        samples.push({ atS, members: await options.sampleMembers() });
      } catch (error) {
        samples.push({ atS, members: null, error: (error as Error).message });
      }
      await sleep(Math.max(0, HEALTH_SAMPLE_MS - (performance.now() - begun)));
    }
  };
  const resigner = setInterval(() => {
    options.resign().then(
      (fresh) => (requests = fresh),
      (error: unknown) => options.progress(`re-signing failed: ${(error as Error).message}`),
    );
  }, RESIGN_INTERVAL_MS);
  resigner.unref();

  const context: ScenarioContext = {
    nodes: options.nodes,
    faults: options.faults,
    durationS: options.durationS,
    slowMs: options.slowMs,
    async at(seconds) {
      const wait = trafficStart + seconds * 1000 - performance.now();
      if (wait > 0) {
        try {
          await sleep(wait, undefined, { signal: stop.signal });
        } catch {
          return false;
        }
      }
      return !stop.signal.aborted;
    },
    async act(kind, action, node) {
      const event: FaultEvent = { atS: sinceStart(), at: new Date().toISOString(), kind, action, node: node.id };
      events.push(event);
      options.progress(`t=${event.atS.toFixed(1)} s ${kind}: ${action} ${node.id}`);
      await perform(action, node, context);
    },
  };

  let samplerRun: Promise<void> = Promise.resolve();
  let scenarioError: unknown;
  let traffic: TrafficResult;
  let hostSeconds: HostSecond[];
  try {
    const trafficRun = runTraffic({
      host: options.target.host,
      port: options.target.port,
      rate: options.rate,
      durationS: options.durationS,
      agent: options.httpsAgent,
      requests: () => requests,
      signal: stop.signal,
      onStart: (at) => {
        trafficStart = at;
        host.start(at, options.metricsUrl, options.processGroups);
        samplerRun = sampler();
      },
    });
    // A scenario that throws (a node that cannot be started again, say) ends the traffic at once.
    const scenarioRun = options.scenario.run(context).catch((error: unknown) => {
      scenarioError = error;
      stop.abort();
    });
    [traffic] = await Promise.all([trafficRun, scenarioRun]);
  } finally {
    clearInterval(resigner);
    sampling = false;
    await samplerRun;
    hostSeconds = await host.stop();
    options.signal?.removeEventListener('abort', onAbort);
  }
  if (scenarioError !== undefined) throw scenarioError;
  return { traffic, events, samples, hostSeconds };
}

export async function runDrill(options: DrillOptions): Promise<DrillReport> {
  const scenario = SCENARIOS[options.scenario];
  if (options.durationS < scenario.minDurationS) throw new Error(`${scenario.name} needs --duration of at least ${scenario.minDurationS} s`);
  if (!(options.rate > 0)) throw new Error('the rate must be positive');
  const progress = options.progress ?? (() => undefined);
  const slowMs = options.slowMs ?? 75;
  const p11kit = locateP11Kit(progress);

  const ownWorkDir = options.workDir === undefined;
  const work = options.workDir ?? mkdtempSync(join(tmpdir(), 'hyok-drill-'));
  mkdirSync(work, { recursive: true });
  const logDir = options.logDir ?? join(work, 'logs');
  mkdirSync(logDir, { recursive: true });
  const nodeDir = mkdtempSync(join(work, 'nodes-'));
  const tag = `drill-${scenario.name}-${process.pid}`;
  const reaper = new Reaper(join(nodeDir, 'process-groups'), ownWorkDir && options.keep !== true ? work : undefined);
  const nodes: HsmNode[] = [];
  let proxy: ProxyProcess | undefined;
  const killEverything = (): void => {
    proxy?.killNow();
    for (const node of nodes) node.killNow();
  };
  process.on('exit', killEverything);
  const httpsAgent = new Agent({ keepAlive: true, maxSockets: 64, rejectUnauthorized: false });
  const adminAgent = new Agent({ keepAlive: true, maxSockets: 1 });

  try {
    const dev = await ensureDevEnvironment(options.devDir ?? join(work, 'dev'));
    progress(`dev environment in ${dev.dir}`);

    const faults = new Map<string, FaultControl>();
    const shim = scenario.needsFaultShim ? faultShimPath() : undefined;
    for (let index = 0; index < NODE_COUNT; index++) {
      const id = memberId(index);
      let module = dev.modulePath;
      const environment: Record<string, string> = { SOFTHSM2_CONF: dev.softhsmConf };
      if (shim !== undefined) {
        const control = new FaultControl(join(nodeDir, `${id}.fault`));
        control.pass();
        faults.set(id, control);
        module = shim;
        Object.assign(environment, { FAULT_SHIM_MODULE: dev.modulePath, FAULT_SHIM_CONTROL: control.file });
      }
      nodes.push(
        new HsmNode({
          id,
          p11kitPrefix: p11kit.prefix,
          module,
          tokenLabel: `hyok-dev-${index + 1}`,
          socketPath: join(nodeDir, `${id}.sock`),
          environment,
          logFile: join(logDir, `${tag}-${id}.log`),
          onProcessGroup: (pgid) => reaper.add(pgid),
        }),
      );
    }
    await Promise.all(nodes.map((node) => node.start()));
    progress(`started ${NODE_COUNT} HSM nodes (p11-kit ${p11kit.prefix}) in ${nodeDir}`);

    const observer = await issueCertificate(readDevCa(dev), { commonName: OBSERVER_CN, usage: 'client' });
    const admin: AdminIdentity = { ca: readFileSync(dev.caFile, 'utf8'), cert: observer.certPem, key: observer.keyPem };
    const configFile = join(dev.dir, `config.${tag}.yaml`);
    writeFileSync(configFile, `# hyok-proxy failover drill (${scenario.name}); generated\n${stringify(drillConfig(dev, nodes, p11kit.clientModule, logDir, tag))}`);
    const effective = loadConfig(configFile).config;

    proxy = await ProxyProcess.start({ configFile, logFile: join(logDir, `${tag}-proxy.log`), onProcessGroup: (pgid) => reaper.add(pgid) });
    await waitForAllActive(admin, proxy, adminAgent, 30_000);
    progress(`proxy serving on 127.0.0.1:${proxy.port}, admin ${proxy.adminUrl}; all ${NODE_COUNT} members ACTIVE`);

    const target: Target = {
      host: '127.0.0.1',
      port: proxy.port,
      uriPrefix: dev.uriPrefix,
      credential: { accessKeyId: dev.accessKeyId, secretAccessKey: readFileSync(dev.secretFile, 'utf8').trim() },
    };
    const sealed = await sealSamples(httpsAgent, target, 16);
    const requests = await signBatch(target, sealed);
    progress(`signed ${requests.length} requests; ${scenario.name}: ${options.durationS} s at ${options.rate} req/s`);
    const running = proxy;

    const { traffic, events, samples, hostSeconds } = await drive({
      scenario,
      nodes,
      faults,
      slowMs,
      durationS: options.durationS,
      rate: options.rate,
      target,
      httpsAgent,
      requests,
      resign: () => signBatch(target, sealed),
      sampleMembers: () => membersNow(admin, running, adminAgent),
      metricsUrl: running.metricsUrl,
      processGroups: () => [running.child.pid, ...nodes.map((node) => node.pgid)].filter((pgid): pgid is number => pgid !== undefined),
      progress,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });

    const report = buildReport({
      scenario,
      traffic,
      events,
      samples,
      host: hostSeconds,
      memberIds: nodes.map((_node, index) => memberId(index)),
      settings: {
        durationS: options.durationS,
        rate: options.rate,
        slowMs: scenario.needsFaultShim ? slowMs : null,
        p11kitPrefix: p11kit.prefix,
        nodes: nodes.map((node, index) => ({ member: memberId(index), token: node.options.tokenLabel, socket: node.options.socketPath, faultShim: shim !== undefined })),
        hsm: {
          callTimeoutMs: effective.hsm.callTimeoutMs,
          hungAfterMs: effective.hsm.hungAfterMs,
          agentStartTimeoutMs: effective.hsm.agentStartTimeoutMs,
          maxRestartBackoffMs: effective.hsm.maxRestartBackoffMs,
          requestBudgetMs: effective.server.limits.requestBudgetMs,
          healthCheckIntervalMs: effective.hsm.healthCheck.intervalMs,
          degradedLatencyMs: effective.hsm.healthCheck.degradedLatencyMs,
        },
        machine: { cpus: cpus().length, node: process.version },
        logs: logDir,
      },
      aborted: options.signal?.aborted === true,
    });
    progress(`${scenario.name}: ${report.totals.failed} failed of ${report.totals.sent}, p99 ${String(report.totals.p99Ms)} ms, max ${String(report.totals.maxMs)} ms`);
    return report;
  } finally {
    httpsAgent.destroy();
    adminAgent.destroy();
    await proxy?.stop().catch(() => proxy?.killNow());
    await Promise.all(nodes.map((node) => node.kill().catch(() => node.killNow())));
    process.off('exit', killEverything);
    reaper.dismiss();
    if (options.keep !== true) {
      if (ownWorkDir) rmSync(work, { recursive: true, force: true });
      else rmSync(nodeDir, { recursive: true, force: true });
    }
  }
}
