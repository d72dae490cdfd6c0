/**
 * `npm run bench`: encrypt and decrypt throughput and latency of the full proxy
 * (TLS, SigV4, validation, policy, HSM cluster, audit log) on the dev setup,
 * over TLS keep-alive, closed loop. Writes loadtest/results/<timestamp>.json
 * and prints one summary line per scenario.
 *
 *   npm run bench -- --duration 20 --connections 32 --scenarios encrypt,decrypt
 *   npm run bench -- --policy loadtest/policy.bench.yaml [--redis]   the same with a policy (and a local Redis tier)
 */
import { spawn, type ChildProcess } from 'node:child_process';
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
import { startLocalRedis, type LocalRedis } from './local-redis.js';
import { percentile, runOpenLoop } from './open-loop.js';
import { encryptPayload, metadata, signMany, signRequest, type PreparedRequest, type Target } from './xks-requests.js';

interface ScenarioResult {
  readonly scenario: string;
  /** Requests/s the generator was limited to; undefined for a closed-loop saturation run. */
  readonly offeredRate: number | undefined;
  readonly connections: number;
  readonly durationS: number;
  readonly requests: number;
  readonly tps: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly errors: number;
  readonly non2xx: number;
  readonly timeouts: number;
  readonly eventLoopP99Ms: number | undefined;
}

const SIGNED_BATCH = 500;

async function startProxy(configFile: string): Promise<{ child: ChildProcess; port: number; metricsUrl: string }> {
  // BENCH_PROXY_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", profiles the proxy under load.
  const nodeArgs = (process.env['BENCH_PROXY_NODE_ARGS'] ?? '').split(' ').filter((arg) => arg !== '');
  const child = spawn(process.execPath, [...nodeArgs, fromRoot('dist', 'src', 'main.js'), 'serve', '--config', configFile], {
    env: { ...process.env, HYOK_LISTEN_PORT: '0', HYOK_METRICS_PORT: '0', HYOK_BENCH_DECISION_KEY: randomBytes(32).toString('hex') },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let text = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`proxy did not start:\n${text.slice(-2000)}`)), 30_000);
    child.stderr?.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      const match = /"port":(\d+),"metricsUrl":"([^"]+)".*hyok-proxy serving/.exec(text);
      if (match !== null) {
        clearTimeout(timer);
        resolve({ child, port: Number(match[1]), metricsUrl: match[2] as string });
      }
    });
    child.once('exit', (code) => reject(new Error(`proxy exited with ${String(code)}:\n${text.slice(-2000)}`)));
  });
}

/** prom-client resets the event-loop histogram at every scrape, so scrape before and after a run. */
async function eventLoopP99Ms(metricsUrl: string): Promise<number | undefined> {
  const text = await (await fetch(metricsUrl)).text();
  const match = /^nodejs_eventloop_lag_p99_seconds (\S+)$/m.exec(text);
  return match === null ? undefined : Number(match[1]) * 1000;
}

/** Closed loop: every connection sends its next request as soon as the previous one is answered. */
function saturate(target: Target, requests: PreparedRequest[], connections: number, durationS: number): Promise<autocannon.Result> {
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
  target: Target,
  metricsUrl: string,
  requests: PreparedRequest[],
  settings: { connections: number; durationS: number; rate: number | undefined; warmupS: number },
): Promise<ScenarioResult> {
  const { connections, durationS, rate, warmupS } = settings;
  // Warm-up: opens the keep-alive connections and lets the JIT settle; not measured.
  if (warmupS > 0) {
    if (rate !== undefined) await runOpenLoop({ host: target.host, port: target.port, rate, durationS: warmupS, connections, requests });
    else await saturate(target, requests, connections, warmupS);
  }
  await eventLoopP99Ms(metricsUrl);
  if (rate !== undefined) {
    const result = await runOpenLoop({ host: target.host, port: target.port, rate, durationS, connections, requests });
    const round = (value: number): number => Math.round(value * 100) / 100;
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
      eventLoopP99Ms: await eventLoopP99Ms(metricsUrl),
    };
  }
  const result = await saturate(target, requests, connections, durationS);
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
    eventLoopP99Ms: await eventLoopP99Ms(metricsUrl),
  };
}

async function main(): Promise<void> {
  const options = new Command('bench')
    .option('-d, --duration <seconds>', 'seconds per scenario', Number, 10)
    .option('-c, --connections <n>', 'concurrent keep-alive connections', Number, 32)
    .option('-s, --scenarios <list>', 'encrypt,decrypt', 'encrypt,decrypt')
    .option('-w, --warmup <seconds>', 'unmeasured warm-up before each scenario', Number, 3)
    .option('-r, --rate <tps>', 'open loop at this evenly paced rate instead of saturating (latency without coordinated omission)', Number)
    .option('--policy <file>', 'run with this policy file (e.g. loadtest/policy.bench.yaml); without it no policy is configured')
    .option('--redis', 'also share decisions through a local redis-server (needs --policy)', false)
    .option('--json <file>', 'where to write the results (default loadtest/results/<timestamp>.json)')
    .parse()
    .opts<{ duration: number; connections: number; scenarios: string; warmup: number; rate?: number; policy?: string; redis: boolean; json?: string }>();
  if (options.redis && options.policy === undefined) throw new Error('--redis needs --policy: without a policy there are no decisions to share');

  const work = mkdtempSync(join(tmpdir(), 'hyok-bench-'));
  const dev = await ensureDevEnvironment(join(work, 'dev'));
  const config = parse(readFileSync(dev.configFile, 'utf8')) as ConfigInput;
  config.audit = { destination: { file: join(work, 'audit.log') } };
  config.logging = { level: 'info', destination: 'stderr' };
  if (options.policy !== undefined) config.policy = { file: resolvePath(options.policy) };
  const redis: LocalRedis | undefined = options.redis ? await startLocalRedis() : undefined;
  if (redis !== undefined) config.redis = { url: redis.url, decisionSigningKey: { env: 'HYOK_BENCH_DECISION_KEY' } };
  const configFile = join(dev.dir, 'config.bench.yaml');
  writeFileSync(configFile, stringify(config));

  const proxy = await startProxy(configFile);
  const target: Target = {
    host: '127.0.0.1',
    port: proxy.port,
    uriPrefix: dev.uriPrefix,
    credential: { accessKeyId: dev.accessKeyId, secretAccessKey: readFileSync(dev.secretFile, 'utf8').trim() },
  };
  const results: ScenarioResult[] = [];
  try {
    for (const name of options.scenarios.split(',').map((entry) => entry.trim())) {
      let requests: PreparedRequest[];
      if (name === 'encrypt') {
        requests = await signMany(SIGNED_BATCH, () => signRequest(target, 'keys/foo/encrypt', encryptPayload({ plaintextBytes: 32, aadBytes: 64 })));
      } else if (name === 'decrypt') {
        requests = await decryptRequests(target);
      } else {
        throw new Error(`unknown scenario ${name}`);
      }
      const result = await scenario(name, target, proxy.metricsUrl, requests, { connections: options.connections, durationS: options.duration, rate: options.rate, warmupS: options.warmup });
      results.push(result);
      process.stdout.write(
        `${result.scenario}${result.offeredRate === undefined ? ' (saturation)' : ` (offered ${result.offeredRate}/s)`}: ${result.tps} req/s, p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, max ${result.maxMs} ms, errors ${result.errors + result.non2xx + result.timeouts}, event-loop p99 ${result.eventLoopP99Ms?.toFixed(1) ?? 'n/a'} ms\n`,
      );
    }
  } finally {
    proxy.child.kill('SIGTERM');
    await redis?.stop();
    rmSync(work, { recursive: true, force: true });
  }
  const report = {
    at: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
    policy: options.policy ?? null,
    redis: options.redis,
    note:
      'Requests are pre-signed with SigV4 and replayed within the 5-minute window. Saturation runs use autocannon (closed loop); ' +
      '--rate runs use an evenly paced open-loop generator measuring from each scheduled send time. The generator runs on the ' +
      'same machine as the proxy and competes with it for CPU.',
    results,
  };
  const file = options.json ?? join(fromRoot('loadtest', 'results'), `${report.at.replace(/[:.]/g, '-')}.json`);
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`wrote ${file}\n`);
}

async function decryptRequests(target: Target): Promise<PreparedRequest[]> {
  // Real ciphertexts, made through the proxy itself.
  const ciphertexts: Array<Record<string, unknown>> = [];
  for (let i = 0; i < 50; i++) {
    const request = await signRequest(target, 'keys/foo/encrypt', encryptPayload({ plaintextBytes: 32, aadBytes: 0 }));
    const response = await fetchJson(target, request);
    ciphertexts.push(response);
  }
  return signMany(SIGNED_BATCH, (index) => {
    const sealed = ciphertexts[index % ciphertexts.length] as Record<string, unknown>;
    return signRequest(target, 'keys/foo/decrypt', {
      requestMetadata: metadata('Decrypt'),
      ciphertext: sealed['ciphertext'],
      ciphertextMetadata: sealed['ciphertextMetadata'],
      initializationVector: sealed['initializationVector'],
      authenticationTag: sealed['authenticationTag'],
      encryptionAlgorithm: 'AES_GCM',
    });
  });
}

async function fetchJson(target: Target, request: PreparedRequest): Promise<Record<string, unknown>> {
  const { request: httpsRequest } = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: target.host, port: target.port, path: request.path, method: 'POST', headers: request.headers, rejectUnauthorized: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body) as Record<string, unknown>) : reject(new Error(`${res.statusCode}: ${body}`))));
      },
    );
    req.on('error', reject);
    req.end(request.body);
  });
}

await main();
