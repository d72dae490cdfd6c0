/**
 * `npm run bench`: throughput and latency of the full proxy (TLS, SigV4,
 * validation, policy, HSM cluster, audit log) on the dev setup, over TLS
 * keep-alive, beside this machine's ceilings measured in the same run: a bare
 * HTTPS + node:crypto server driven by the same generator, and raw PKCS#11
 * encrypts on the same SoftHSM token. Writes loadtest/results/<timestamp>.json
 * and .html (chart, ratios, targets) and prints one line per scenario and a
 * one-line summary. loadtest/README.md explains the figures.
 *
 *   npm run bench                                       every scenario and baseline (a few minutes)
 *   npm run bench -- --scenarios encrypt,fixed --duration 20
 *   npm run bench -- --policy loadtest/policy.bench.yaml [--redis]   with a policy (and a local Redis tier)
 *   npm run bench -- --workers 2                         the proxy as `serve --workers 2`
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { setPriority } from 'node:os';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import autocannon from 'autocannon';
import { Command } from 'commander';
import { parse, stringify } from 'yaml';
import type { ConfigInput } from '../src/config/schema.js';
import { ensureDevEnvironment } from '../src/dev/bootstrap.js';
import { fromRoot } from '../src/lib/paths.js';
import { BUDGET_MS, computeRatios, evaluateTargets, renderHtml, summaryLine, type Baselines, type RampResult, type ScenarioResult } from './bench-report.js';
import { startLocalRedis, type LocalRedis } from './local-redis.js';
import { percentile, runOpenLoop } from './open-loop.js';
import { processCpuSeconds, readProxy, startServeProcess, type ProxyReading } from './serve-process.js';
import { decryptPayload, encryptPayload, metadata, sealCiphertexts, signMany, signRequest, type PreparedRequest, type Target } from './xks-requests.js';

const SIGNED_BATCH = 500;

/** Closed loop: every connection sends its next request as soon as the previous one is answered. */
function saturate(target: Pick<Target, 'host' | 'port'>, requests: PreparedRequest[], connections: number, durationS: number): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: `https://${target.host}:${target.port}`,
        connections,
        duration: durationS,
        pipelining: 1,
        timeout: 5,
        requests: requests.map((request) => ({ method: request.method, path: request.path, headers: request.headers, body: request.body })),
      },
      (error, result) => (error === null || error === undefined ? resolve(result) : reject(error)),
    );
  });
}

async function scenario(
  name: string,
  target: Pick<Target, 'host' | 'port'>,
  metricsUrl: string | undefined,
  requests: PreparedRequest[],
  settings: { connections: number; durationS: number; rate: number | undefined; warmupS: number },
  /** CPU seconds of a server without a metrics endpoint (the bare baseline), read from /proc. */
  serverCpuSeconds?: () => number | undefined,
): Promise<ScenarioResult> {
  const { connections, durationS, rate, warmupS } = settings;
  const cpuNow = async (): Promise<ProxyReading> =>
    serverCpuSeconds === undefined ? readProxy(metricsUrl) : { eventLoopP99Ms: undefined, cpuSeconds: serverCpuSeconds() };
  // Warm-up: opens the keep-alive connections and lets the JIT settle; not measured.
  if (warmupS > 0) {
    if (rate !== undefined) await runOpenLoop({ host: target.host, port: target.port, rate, durationS: warmupS, connections, requests });
    else await saturate(target, requests, connections, warmupS);
  }
  const before = await cpuNow();
  // The server's own CPU per answered request: steadier than throughput when the generator and the agents share the cores.
  const cpuPerRequest = (after: ProxyReading, answered: number): number | undefined =>
    after.cpuSeconds === undefined || before.cpuSeconds === undefined || answered === 0 ? undefined : Math.round(((after.cpuSeconds - before.cpuSeconds) * 1e6) / answered);
  if (rate !== undefined) {
    const result = await runOpenLoop({ host: target.host, port: target.port, rate, durationS, connections, requests });
    const round = (value: number): number => Math.round(value * 100) / 100;
    const after = await cpuNow();
    return {
      scenario: name,
      offeredRate: rate,
      connections,
      durationS,
      requests: result.sent,
      tps: Math.round(result.ok / result.elapsedS),
      p50Ms: round(percentile(result.latenciesMs, 50)),
      p90Ms: round(percentile(result.latenciesMs, 90)),
      p99Ms: round(percentile(result.latenciesMs, 99)),
      maxMs: round(percentile(result.latenciesMs, 100)),
      errors: result.errors,
      non2xx: 0,
      timeouts: 0,
      eventLoopP99Ms: after.eventLoopP99Ms,
      serverCpuUsPerRequest: cpuPerRequest(after, result.ok),
    };
  }
  const result = await saturate(target, requests, connections, durationS);
  const after = await cpuNow();
  return {
    scenario: name,
    offeredRate: undefined,
    connections,
    durationS,
    requests: result.requests.total,
    tps: Math.round(result.requests.average),
    p50Ms: result.latency.p50,
    p90Ms: result.latency.p90,
    p99Ms: result.latency.p99,
    maxMs: result.latency.max,
    errors: result.errors,
    non2xx: result.non2xx,
    timeouts: result.timeouts,
    eventLoopP99Ms: after.eventLoopP99Ms,
    serverCpuUsPerRequest: cpuPerRequest(after, result.requests.total - result.non2xx - result.errors),
  };
}

const ALL_SCENARIOS = ['encrypt', 'mixed', 'metadata', 'max-size', 'fixed', 'ramp'] as const;
type ScenarioName = (typeof ALL_SCENARIOS)[number] | 'decrypt';

interface BenchOptions {
  duration: number;
  connections: number;
  scenarios: string;
  warmup: number;
  rate?: number;
  fixedRate: number;
  rampStart: number;
  rampStep: number;
  rampStepSeconds: number;
  baselines: boolean;
  workers: number;
  policy?: string;
  redis: boolean;
  json?: string;
  generatorNice: number;
  members: number;
}

/** The bare HTTPS + node:crypto server (the platform ceiling), with the dev server certificate. */
async function startBareServer(certFile: string, keyFile: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [fromRoot('dist', 'loadtest', 'baseline-server.js'), certFile, keyFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the bare baseline server did not start')), 10_000);
    child.stdout?.once('data', (chunk: Buffer) => {
      clearTimeout(timer);
      resolve({ child, port: Number(chunk.toString('utf8').trim()) });
    });
    child.once('exit', (code) => reject(new Error(`the bare baseline server exited with ${String(code)}`)));
  });
}

/** Raw PKCS#11 encrypts on the dev tokens, `processes` loops at once (one per token), for `seconds`. */
async function pkcs11OpsPerSecond(devDir: string, processes: number, seconds: number): Promise<number> {
  const tokens = ['hyok-dev-1', 'hyok-dev-2', 'hyok-dev-3'];
  const runs = Array.from({ length: processes }, (_, index) =>
    new Promise<number>((resolve, reject) => {
      const child = spawn(process.execPath, [fromRoot('dist', 'loadtest', 'pkcs11-baseline.js'), devDir, String(seconds), tokens[index % tokens.length] as string], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
      child.once('exit', (code) => {
        if (code !== 0) reject(new Error(`pkcs11-baseline exited with ${String(code)}`));
        else {
          const { ops, seconds: elapsed } = JSON.parse(out) as { ops: number; seconds: number };
          resolve(ops / elapsed);
        }
      });
    }),
  );
  return Math.round((await Promise.all(runs)).reduce((sum, value) => sum + value, 0));
}

/** Open-loop steps of rising rate until p99 leaves the budget, a request fails, or the served rate falls behind. */
async function ramp(target: Target, requests: PreparedRequest[], options: BenchOptions): Promise<RampResult> {
  const steps: Array<RampResult['steps'][number]> = [];
  let sustainedRate: number | null = null;
  for (let rate = options.rampStart; steps.length < 12; rate += options.rampStep) {
    const result = await runOpenLoop({ host: target.host, port: target.port, rate, durationS: options.rampStepSeconds, connections: options.connections, requests, timeoutMs: 2000 });
    const p99Ms = Math.round(percentile(result.latenciesMs, 99) * 100) / 100;
    const maxMs = Math.round(percentile(result.latenciesMs, 100) * 100) / 100;
    const tps = Math.round(result.ok / result.elapsedS);
    const withinBudget = p99Ms <= BUDGET_MS && result.errors === 0 && tps >= rate * 0.95;
    steps.push({ rate, tps, p99Ms, maxMs, errors: result.errors, withinBudget });
    process.stdout.write(`ramp ${rate}/s: ${tps} req/s, p99 ${p99Ms} ms, max ${maxMs} ms, errors ${result.errors}\n`);
    if (!withinBudget) break;
    sustainedRate = rate;
  }
  return { steps, sustainedRate };
}

function printResult(result: ScenarioResult): void {
  process.stdout.write(
    `${result.scenario}${result.offeredRate === undefined ? ' (saturation)' : ` (offered ${result.offeredRate}/s)`}: ${result.tps} req/s, p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, max ${result.maxMs} ms, errors ${result.errors + result.non2xx + result.timeouts}, event-loop p99 ${result.eventLoopP99Ms?.toFixed(1) ?? 'n/a'} ms, server CPU ${result.serverCpuUsPerRequest ?? 'n/a'} µs/request\n`,
  );
}

async function main(): Promise<void> {
  const options = new Command('bench')
    .option('-d, --duration <seconds>', 'seconds per scenario', Number, 10)
    .option('-c, --connections <n>', 'concurrent keep-alive connections', Number, 32)
    .option('-s, --scenarios <list>', `comma-separated, from ${ALL_SCENARIOS.join(', ')} (and decrypt)`, ALL_SCENARIOS.join(','))
    .option('-w, --warmup <seconds>', 'unmeasured warm-up before each scenario', Number, 3)
    .option('-r, --rate <tps>', 'run every closed-loop scenario open loop at this evenly paced rate instead', Number)
    .option('--fixed-rate <tps>', 'rate of the fixed scenario (and of the bare baseline beside it)', Number, 1800)
    .option('--ramp-start <tps>', 'first step of the ramp', Number, 1000)
    .option('--ramp-step <tps>', 'increase per ramp step', Number, 500)
    .option('--ramp-step-seconds <seconds>', 'length of a ramp step', Number, 3)
    .option('--no-baselines', 'skip the bare HTTPS and raw PKCS#11 baselines')
    .option('--workers <n>', 'run the proxy as `serve --workers N`', Number, 1)
    .option('--policy <file>', 'run with this policy file (e.g. loadtest/policy.bench.yaml); without it no policy is configured')
    .option('--redis', 'also share decisions through a local redis-server (needs --policy)', false)
    .option('--json <file>', 'where to write the results (default loadtest/results/<timestamp>.json; the .html goes beside it)')
    .option('--members <n>', 'use only the first N of the three dev HSM members (fewer agent processes on the shared cores)', Number, 3)
    .option('--generator-nice <n>', 'run the load generator at this nice value (servers stay at 0), as if it were on another host', Number, 0)
    .parse()
    .opts<BenchOptions>();
  if (options.redis && options.policy === undefined) throw new Error('--redis needs --policy: without a policy there are no decisions to share');
  const scenarios = options.scenarios.split(',').map((entry) => entry.trim()) as ScenarioName[];
  for (const name of scenarios) if (name !== 'decrypt' && !(ALL_SCENARIOS as readonly string[]).includes(name)) throw new Error(`unknown scenario ${name}`);

  const work = mkdtempSync(join(tmpdir(), 'hyok-bench-'));
  const dev = await ensureDevEnvironment(join(work, 'dev'));
  const config = parse(readFileSync(dev.configFile, 'utf8')) as ConfigInput;
  config.audit = { destination: { file: join(work, 'audit.log') } };
  config.logging = { level: 'info', destination: 'stderr' };
  config.admin = { enabled: false };
  if (!(options.members >= 1 && options.members <= config.hsm.members.length)) throw new Error(`--members must be 1 to ${config.hsm.members.length}`);
  config.hsm.members = config.hsm.members.slice(0, options.members);
  if (options.policy !== undefined) config.policy = { file: resolvePath(options.policy) };
  const redis: LocalRedis | undefined = options.redis ? await startLocalRedis() : undefined;
  if (redis !== undefined) config.redis = { url: redis.url, decisionSigningKey: { env: 'HYOK_BENCH_DECISION_KEY' } };
  const configFile = join(dev.dir, 'config.bench.yaml');
  writeFileSync(configFile, stringify(config));

  const proxy = await startServeProcess(configFile, {
    workers: options.workers,
    // BENCH_PROXY_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", profiles the proxy under load.
    nodeArgs: (process.env['BENCH_PROXY_NODE_ARGS'] ?? '').split(' ').filter((arg) => arg !== ''),
    env: { HYOK_BENCH_DECISION_KEY: randomBytes(32).toString('hex') },
  });
  // Spawned children inherit the nice value: lower the generator's priority only after the servers exist.
  if (options.generatorNice !== 0) setPriority(options.generatorNice);
  const target: Target = {
    host: '127.0.0.1',
    port: proxy.port,
    uriPrefix: dev.uriPrefix,
    credential: { accessKeyId: dev.accessKeyId, secretAccessKey: readFileSync(dev.secretFile, 'utf8').trim() },
  };
  const results: ScenarioResult[] = [];
  let rampResult: RampResult | undefined;
  const baselines: { bareSaturation: ScenarioResult | undefined; bareFixedRate: ScenarioResult | undefined; pkcs11: Array<{ processes: number; opsPerSecond: number }> } = {
    bareSaturation: undefined,
    bareFixedRate: undefined,
    pkcs11: [],
  };
  const settings = (rate: number | undefined): { connections: number; durationS: number; rate: number | undefined; warmupS: number } => ({
    connections: options.connections,
    durationS: options.duration,
    rate,
    warmupS: options.warmup,
  });
  const encryptRequests = (): Promise<PreparedRequest[]> => signMany(SIGNED_BATCH, () => signRequest(target, 'keys/foo/encrypt', encryptPayload({ plaintextBytes: 32, aadBytes: 64 })));
  try {
    for (const name of scenarios) {
      let requests: PreparedRequest[];
      if (name === 'encrypt' || name === 'fixed' || name === 'ramp') requests = await encryptRequests();
      else if (name === 'decrypt') requests = await decryptRequests(target);
      else if (name === 'mixed') {
        const [encrypts, decrypts] = [await encryptRequests(), await decryptRequests(target)];
        requests = encrypts.flatMap((request, index) => [request, decrypts[index % decrypts.length] as PreparedRequest]);
      } else if (name === 'metadata') requests = await signMany(SIGNED_BATCH, () => signRequest(target, 'keys/foo/metadata', { requestMetadata: metadata('DescribeKey') }));
      else requests = await signMany(SIGNED_BATCH, () => signRequest(target, 'keys/foo/encrypt', encryptPayload({ plaintextBytes: 4300, aadBytes: 8192 })));

      if (name === 'ramp') {
        rampResult = await ramp(target, requests, options);
        continue;
      }
      const rate = name === 'fixed' ? options.fixedRate : options.rate;
      const result = await scenario(name, target, proxy.metricsUrl, requests, settings(rate));
      results.push(result);
      printResult(result);
    }
  } finally {
    proxy.child.kill('SIGTERM');
    await redis?.stop();
  }

  if (options.baselines) {
    // After the proxy stopped, so the ceilings are measured on an otherwise idle machine, as the proxy was.
    const bare = await startBareServer(join(dev.dir, 'pki', 'server.pem'), join(dev.dir, 'pki', 'server-key.pem'));
    try {
      const bareTarget = { host: '127.0.0.1', port: bare.port };
      const requests = await encryptRequests();
      if (options.generatorNice !== 0) setPriority(bare.child.pid as number, 0);
      const bareCpu = (): number | undefined => processCpuSeconds(bare.child.pid as number);
      baselines.bareSaturation = { ...(await scenario('bare-https', bareTarget, undefined, requests, settings(options.rate), bareCpu)) };
      printResult(baselines.bareSaturation);
      if (scenarios.includes('fixed')) {
        baselines.bareFixedRate = await scenario('bare-https', bareTarget, undefined, requests, settings(options.fixedRate), bareCpu);
        printResult(baselines.bareFixedRate);
      }
    } finally {
      bare.child.kill('SIGTERM');
    }
    const seconds = Math.max(1, Math.min(5, options.duration));
    for (const processes of [1, 2]) {
      const opsPerSecond = await pkcs11OpsPerSecond(dev.dir, processes, seconds);
      baselines.pkcs11.push({ processes, opsPerSecond });
      process.stdout.write(`raw PKCS#11, ${processes} process(es): ${opsPerSecond} encrypts/s\n`);
    }
  }
  rmSync(work, { recursive: true, force: true });

  const ratios = computeRatios(results, baselines as Baselines);
  const targets = evaluateTargets(results, baselines as Baselines, ratios);
  const summary = summaryLine(results, baselines as Baselines, ratios, targets);
  const at = new Date().toISOString();
  const note =
    'Requests are pre-signed with SigV4 and replayed within the 5-minute window. Saturation runs use autocannon (closed loop); ' +
    'the fixed and ramp scenarios (and --rate) use an evenly paced open-loop generator measuring from each scheduled send time. The generator runs on the ' +
    'same machine as the proxy and competes with it for CPU; so do the proxy\'s HSM agents and SoftHSM. The baselines run after the proxy stopped, with the same generator, ' +
    'connections and TLS settings.';
  const report = {
    at,
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
    policy: options.policy ?? null,
    redis: options.redis,
    workers: options.workers,
    note,
    results,
    ramp: rampResult ?? null,
    baselines,
    ratios,
    targets,
    summary,
  };
  const file = options.json ?? join(fromRoot('loadtest', 'results'), `${at.replace(/[:.]/g, '-')}.json`);
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  const html = file.replace(/\.json$/, '') + '.html';
  writeFileSync(html, renderHtml({ at, note, results, baselines: baselines as Baselines, ratios, targets, ramp: rampResult, summary }));
  process.stdout.write(`wrote ${file} and ${html}\n${summary}\n`);
}

async function decryptRequests(target: Target): Promise<PreparedRequest[]> {
  const sealed = await sealCiphertexts(target, 50);
  return signMany(SIGNED_BATCH, (index) => signRequest(target, 'keys/foo/decrypt', decryptPayload(sealed[index % sealed.length] as Record<string, unknown>)));
}

await main();
