/**
 * `npm run soak`: the dev proxy under an evenly paced open-loop load of mixed
 * encrypts and decrypts for a fixed time, sampling every interval the proxy
 * process's RSS, its agents' RSS (summed), its event-loop delay p99 and the
 * interval's latency and errors. Writes loadtest/results/soak-<timestamp>.json
 * and .html and prints a verdict: RSS after warm-up may grow at most 10 %, and
 * no request may fail.
 *
 *   npm run soak -- --minutes 10 --rate 1000
 *
 * Requests are pre-signed and replayed; a batch is signed anew every interval,
 * so none is replayed outside the 5-minute SigV4 window.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { parse, stringify } from 'yaml';
import type { ConfigInput } from '../src/config/schema.js';
import { ensureDevEnvironment } from '../src/dev/bootstrap.js';
import { fromRoot } from '../src/lib/paths.js';
import { percentile, runOpenLoop } from './open-loop.js';
import { eventLoopP99Ms, startServeProcess } from './serve-process.js';
import { decryptPayload, encryptPayload, sealCiphertexts, signMany, signRequest, type PreparedRequest, type Target } from './xks-requests.js';

interface Sample {
  readonly atS: number;
  readonly proxyRssMb: number;
  readonly agentsRssMb: number;
  readonly eventLoopP99Ms: number | null;
  readonly requests: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly errors: number;
}

const RSS_GROWTH_LIMIT = 0.1;

const roundedOrNull = (ms: number | undefined): number | null => (ms === undefined ? null : Math.round(ms * 10) / 10);

function rssMb(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? 0 : Math.round(Number(match[1]) / 102.4) / 10;
  } catch {
    return 0;
  }
}

/** Direct children of `pid` (the HSM agents). */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (parent === pid) children.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return children;
}

function chart(samples: readonly Sample[], pick: (sample: Sample) => number | null, label: string, color: string): string {
  const width = 860;
  const height = 200;
  const left = 60;
  const values = samples.map(pick).filter((value): value is number => value !== null);
  const max = Math.max(1, ...values) * 1.1;
  const end = Math.max(1, samples.at(-1)?.atS ?? 1);
  const points = samples
    .map((sample) => [sample, pick(sample)] as const)
    .filter((pair): pair is readonly [Sample, number] => pair[1] !== null)
    .map(([sample, value]) => `${(left + ((width - left - 10) * sample.atS) / end).toFixed(1)},${(height - 20 - ((height - 40) * value) / max).toFixed(1)}`)
    .join(' ');
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">` +
    `<text x="${left}" y="12" font-weight="bold">${label}</text>` +
    `<text x="${left - 6}" y="24" text-anchor="end">${max.toFixed(1)}</text><text x="${left - 6}" y="${height - 20}" text-anchor="end">0</text>` +
    `<text x="${width - 10}" y="${height - 4}" text-anchor="end">${end} s</text>` +
    `<line x1="${left}" x2="${width - 10}" y1="${height - 20}" y2="${height - 20}" stroke="#ccc"/>` +
    `<polyline fill="none" stroke="${color}" stroke-width="2" points="${points}"/></svg>`
  );
}

async function main(): Promise<void> {
  const options = new Command('soak')
    .option('-m, --minutes <minutes>', 'length of the soak', Number, 10)
    .option('-r, --rate <tps>', 'evenly paced requests per second (half encrypt, half decrypt)', Number, 1000)
    .option('--sample-seconds <seconds>', 'sampling interval', Number, 10)
    .option('-c, --connections <n>', 'keep-alive connections', Number, 32)
    .option('--json <file>', 'where to write the report (default loadtest/results/soak-<timestamp>.json; .html beside it)')
    .parse()
    .opts<{ minutes: number; rate: number; sampleSeconds: number; connections: number; json?: string }>();
  const totalS = options.minutes * 60;
  if (!(totalS >= options.sampleSeconds * 2)) throw new Error('the soak must last at least two sampling intervals');

  const work = mkdtempSync(join(tmpdir(), 'hyok-soak-'));
  const dev = await ensureDevEnvironment(join(work, 'dev'));
  const config = parse(readFileSync(dev.configFile, 'utf8')) as ConfigInput;
  config.audit = { destination: { file: join(work, 'audit.log') } };
  config.logging = { level: 'info', destination: 'stderr' };
  config.admin = { enabled: false };
  const configFile = join(dev.dir, 'config.soak.yaml');
  writeFileSync(configFile, stringify(config));
  const proxy = await startServeProcess(configFile);
  const proxyPid = proxy.child.pid as number;
  const target: Target = {
    host: '127.0.0.1',
    port: proxy.port,
    uriPrefix: dev.uriPrefix,
    credential: { accessKeyId: dev.accessKeyId, secretAccessKey: readFileSync(dev.secretFile, 'utf8').trim() },
  };
  const sealed = await sealCiphertexts(target, 20);
  const batch = async (): Promise<PreparedRequest[]> =>
    signMany(200, (index) =>
      index % 2 === 0
        ? signRequest(target, 'keys/foo/encrypt', encryptPayload({ plaintextBytes: 32, aadBytes: 0 }))
        : signRequest(target, 'keys/foo/decrypt', decryptPayload(sealed[index % sealed.length] as Record<string, unknown>)),
    );

  const samples: Sample[] = [];
  const intervals = Math.floor(totalS / options.sampleSeconds);
  try {
    await eventLoopP99Ms(proxy.metricsUrl);
    for (let interval = 1; interval <= intervals; interval++) {
      const result = await runOpenLoop({ host: target.host, port: target.port, rate: options.rate, durationS: options.sampleSeconds, connections: options.connections, requests: await batch(), timeoutMs: 2000 });
      const sample: Sample = {
        atS: interval * options.sampleSeconds,
        proxyRssMb: rssMb(proxyPid),
        agentsRssMb: Math.round(childrenOf(proxyPid).reduce((sum, pid) => sum + rssMb(pid), 0) * 10) / 10,
        eventLoopP99Ms: roundedOrNull(await eventLoopP99Ms(proxy.metricsUrl)),
        requests: result.sent,
        p99Ms: Math.round(percentile(result.latenciesMs, 99) * 100) / 100,
        maxMs: Math.round(percentile(result.latenciesMs, 100) * 100) / 100,
        errors: result.errors,
      };
      samples.push(sample);
      process.stdout.write(
        `${sample.atS} s: proxy RSS ${sample.proxyRssMb} MB, agents ${sample.agentsRssMb} MB, event-loop p99 ${sample.eventLoopP99Ms} ms, p99 ${sample.p99Ms} ms, max ${sample.maxMs} ms, errors ${sample.errors}\n`,
      );
    }
  } finally {
    proxy.child.kill('SIGTERM');
  }
  rmSync(work, { recursive: true, force: true });

  // Warm-up: the first 20 % (at least one interval, at most two minutes) fills caches, JIT and pools.
  const warmupIntervals = Math.max(1, Math.min(Math.round(120 / options.sampleSeconds), Math.round(samples.length * 0.2)));
  const afterWarmup = samples[warmupIntervals - 1] as Sample;
  const last = samples.at(-1) as Sample;
  const growth = (end: number, start: number): number => (start > 0 ? Math.round(((end - start) / start) * 1000) / 1000 : 0);
  const proxyGrowth = growth(last.proxyRssMb, afterWarmup.proxyRssMb);
  const agentsGrowth = growth(last.agentsRssMb, afterWarmup.agentsRssMb);
  const errors = samples.reduce((sum, sample) => sum + sample.errors, 0);
  const verdict = {
    rssGrowthAfterWarmup: { proxy: proxyGrowth, agents: agentsGrowth, limit: RSS_GROWTH_LIMIT },
    errors,
    requests: samples.reduce((sum, sample) => sum + sample.requests, 0),
    worstP99Ms: Math.max(...samples.map((sample) => sample.p99Ms)),
    maxMs: Math.max(...samples.map((sample) => sample.maxMs)),
    worstEventLoopP99Ms: Math.max(...samples.map((sample) => sample.eventLoopP99Ms ?? 0)),
    passed: proxyGrowth <= RSS_GROWTH_LIMIT && agentsGrowth <= RSS_GROWTH_LIMIT && errors === 0,
  };
  const at = new Date().toISOString();
  const note =
    `Open loop at ${options.rate}/s, half encrypt, half decrypt, ${options.connections} keep-alive connections; requests pre-signed in batches ` +
    `signed anew every ${options.sampleSeconds} s. RSS from /proc; warm-up is the first ${warmupIntervals} interval(s). Generator on the same machine.`;
  const report = { at, settings: options, note, samples, verdict };
  const file = options.json ?? join(fromRoot('loadtest', 'results'), `soak-${at.replace(/[:.]/g, '-')}.json`);
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  const html = `${file.replace(/\.json$/, '')}.html`;
  writeFileSync(
    html,
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>hyok-proxy soak ${at}</title></head><body style="font-family:sans-serif;margin:24px">` +
      `<h1>hyok-proxy soak, ${at}</h1><p>${verdict.passed ? 'passed' : '<b>failed</b>'}: proxy RSS ${(proxyGrowth * 100).toFixed(1)} % and agents ${(agentsGrowth * 100).toFixed(1)} % after warm-up (limit 10 %), ${errors} errors of ${verdict.requests}.</p>` +
      chart(samples, (sample) => sample.proxyRssMb, 'proxy RSS, MB', '#1f77b4') +
      chart(samples, (sample) => sample.agentsRssMb, 'HSM agents RSS (sum), MB', '#2ca02c') +
      chart(samples, (sample) => sample.eventLoopP99Ms, 'event-loop delay p99, ms', '#9467bd') +
      chart(samples, (sample) => sample.p99Ms, 'request p99 per interval, ms', '#ff7f0e') +
      `<p>${note}</p></body></html>\n`,
  );
  process.stdout.write(
    `wrote ${file} and ${html}\nsoak: ${verdict.passed ? 'passed' : 'FAILED'} | proxy RSS ${afterWarmup.proxyRssMb} -> ${last.proxyRssMb} MB (${(proxyGrowth * 100).toFixed(1)} %) | agents ${afterWarmup.agentsRssMb} -> ${last.agentsRssMb} MB (${(agentsGrowth * 100).toFixed(1)} %) | ${errors} errors of ${verdict.requests} | worst p99 ${verdict.worstP99Ms} ms, max ${verdict.maxMs} ms | event-loop p99 up to ${verdict.worstEventLoopP99Ms} ms\n`,
  );
  if (!verdict.passed) process.exitCode = 1;
}

await main();
