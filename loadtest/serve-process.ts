import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fromRoot } from '../src/lib/paths.js';

/** A `hyok-proxy serve` child process for the bench and the soak, on ports the OS picks. */
export interface ServeProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly metricsUrl: string;
}

export function startServeProcess(configFile: string, options: { workers?: number; nodeArgs?: readonly string[]; env?: Record<string, string> } = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), fromRoot('dist', 'src', 'main.js'), 'serve', '--config', configFile, '--workers', String(options.workers ?? 1)], {
    env: { ...process.env, HYOK_LISTEN_PORT: '0', HYOK_METRICS_PORT: '0', ...options.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let text = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`proxy did not start:\n${text.slice(-2000)}`)), 30_000);
    child.stderr?.on('data', (chunk: Buffer) => {
      text = (text + chunk.toString('utf8')).slice(-20_000);
      // With --workers the primary's line carries the metrics URL; the workers' lines do not.
      const match = /"port":(\d+),"metricsUrl":"([^"]+)"[^\n]*hyok-proxy serving/.exec(text);
      if (match !== null) {
        clearTimeout(timer);
        resolve({ child, port: Number(match[1]), metricsUrl: match[2] as string });
      }
    });
    child.once('exit', (code) => reject(new Error(`proxy exited with ${String(code)}:\n${text.slice(-2000)}`)));
  });
}

/** What the bench reads from the proxy around a run. */
export interface ProxyReading {
  /** Event-loop delay p99 since the previous scrape, in ms (undefined before the first scrape of a run). */
  readonly eventLoopP99Ms: number | undefined;
  /** CPU time the proxy process (with workers: all workers, summed) has used since it started, in seconds. */
  readonly cpuSeconds: number | undefined;
}

/**
 * One scrape of the proxy's metrics. The proxy resets its event-loop histogram
 * at every scrape, so read before and after a run. The sampling interval is
 * already removed (docs/metrics.md); with workers the primary reports the worst
 * worker's delay and the sum of their CPU time (the HSM agents are not in it).
 */
export async function readProxy(metricsUrl: string | undefined): Promise<ProxyReading> {
  if (metricsUrl === undefined) return { eventLoopP99Ms: undefined, cpuSeconds: undefined };
  const text = await (await fetch(metricsUrl)).text();
  const delay = /^hyok_event_loop_delay_seconds\{quantile="0.99"\} (\S+)$/m.exec(text);
  const cpu = /^process_cpu_seconds_total (\S+)$/m.exec(text);
  return { eventLoopP99Ms: delay === null ? undefined : Number(delay[1]) * 1000, cpuSeconds: cpu === null ? undefined : Number(cpu[1]) };
}

/** The proxy's event-loop delay p99 since the previous scrape, in ms. */
export async function eventLoopP99Ms(metricsUrl: string | undefined): Promise<number | undefined> {
  return (await readProxy(metricsUrl)).eventLoopP99Ms;
}

let clockTicks: number | undefined;

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat; undefined when it cannot be read. */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // After "pid (comm) ", utime and stime are the 12th and 13th fields (14 and 15 of stat(5)).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks / clockTicks : undefined;
  } catch {
    return undefined;
  }
}
