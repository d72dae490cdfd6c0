import cluster, { type Worker } from 'node:cluster';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import type { Config } from '../config/schema.js';
import { isWorkerMessage, isWorkerReady, WORKER_INDEX_ENV } from './messages.js';

/**
 * `serve --workers N`: a primary process that forks N workers sharing the XKS
 * and admin ports (node:cluster), restarts a worker that dies, forwards SIGHUP,
 * relays operator actions and state versions between workers, and serves the
 * workers' metrics summed into one scrape. It never touches an HSM (ADR 0005).
 */

export interface PrimaryOptions {
  readonly workers: number;
  /** Arguments a worker runs with, e.g. ['serve', '--config', file]. */
  readonly workerArgs: readonly string[];
  readonly metrics: Config['metrics'];
  readonly logger: Logger;
  /** Called once, when every worker serves: the shared XKS port and the metrics URL. */
  readonly onReady?: (ready: { port: number; metricsUrl: string | undefined }) => void;
  /** Called when a worker dies before any worker ever served (a bad configuration): restarting would only loop. */
  readonly onStartFailure?: (failure: { worker: number; code: number | null; signal: string | null }) => void;
}

export interface RunningPrimary {
  /** Worker processes by index (1..N), as running now. */
  workerPids(): number[];
  close(): Promise<void>;
}

const RESTART_BACKOFF_MS = { first: 500, max: 30_000 } as const;
/** A worker that served this long before dying restarts without backoff. */
const HEALTHY_UPTIME_MS = 60_000;
const STOP_GRACE_MS = 10_000;

export async function runPrimary(options: PrimaryOptions): Promise<RunningPrimary> {
  const { logger } = options;
  const workers = new Map<number, Worker>();
  const backoff = new Map<number, number>();
  let stopping = false;
  let readyPort: number | undefined;
  const readyWorkers = new Set<number>();
  let announced = false;
  let everServed = false;

  cluster.setupPrimary({ exec: process.argv[1] as string, args: [...options.workerArgs] });
  // The aggregator answers workers' metric replies; it must exist before the first scrape.
  const aggregator = new AggregatorRegistry();

  let metricsServer: Server | undefined;
  let metricsUrl: string | undefined;
  if (options.metrics.enabled) {
    metricsServer = createServer((req, res) => {
      if (req.method !== 'GET' || req.url !== '/metrics') {
        res.writeHead(404);
        res.end();
        return;
      }
      aggregator.clusterMetrics().then(
        (text) => {
          res.writeHead(200, { 'Content-Type': aggregator.contentType });
          res.end(text);
        },
        (error: unknown) => {
          logger.warn({ err: error }, 'metrics: a worker did not answer');
          res.writeHead(503);
          res.end();
        },
      );
    });
    await new Promise<void>((resolve, reject) => {
      metricsServer?.once('error', reject);
      metricsServer?.listen(options.metrics.port, options.metrics.host, () => resolve());
    });
    const address = metricsServer.address() as AddressInfo;
    metricsUrl = `http://${address.address}:${address.port}/metrics`;
  }

  const fork = (index: number): void => {
    const worker = cluster.fork({ [WORKER_INDEX_ENV]: String(index) });
    const startedAt = Date.now();
    workers.set(index, worker);
    worker.on('message', (message: unknown) => {
      if (isWorkerReady(message)) {
        readyPort = message.port;
        readyWorkers.add(index);
        everServed = true;
        logger.info({ worker: index, pid: worker.process.pid }, 'worker serving');
        if (!announced && readyWorkers.size === options.workers) {
          announced = true;
          logger.info({ port: readyPort, metricsUrl, workers: options.workers }, 'hyok-proxy serving');
          options.onReady?.({ port: readyPort, metricsUrl });
        }
        return;
      }
      if (!isWorkerMessage(message)) return;
      for (const [other, peer] of workers) if (other !== index && peer.isConnected()) peer.send(message);
    });
    worker.on('exit', (code, signal) => {
      readyWorkers.delete(index);
      if (workers.get(index) === worker) workers.delete(index);
      if (stopping) return;
      if (!announced && readyWorkers.size === 0 && !everServed) {
        logger.error({ worker: index, code, signal }, 'a worker failed before any worker served; not restarting');
        options.onStartFailure?.({ worker: index, code, signal });
        return;
      }
      const uptime = Date.now() - startedAt;
      const delay = uptime >= HEALTHY_UPTIME_MS ? 0 : Math.min(RESTART_BACKOFF_MS.max, backoff.get(index) ?? RESTART_BACKOFF_MS.first);
      backoff.set(index, uptime >= HEALTHY_UPTIME_MS ? RESTART_BACKOFF_MS.first : delay * 2);
      logger.error({ worker: index, pid: worker.process.pid, code, signal, restartInMs: delay }, 'worker exited; restarting');
      setTimeout(() => {
        if (!stopping) fork(index);
      }, delay).unref();
    });
  };

  for (let index = 1; index <= options.workers; index++) fork(index);

  return {
    workerPids: () => [...workers.values()].map((worker) => worker.process.pid).filter((pid): pid is number => pid !== undefined),
    async close() {
      stopping = true;
      const exits = [...workers.values()].map(
        (worker) =>
          new Promise<void>((resolve) => {
            if (worker.isDead()) {
              resolve();
              return;
            }
            const kill = setTimeout(() => worker.process.kill('SIGKILL'), STOP_GRACE_MS);
            worker.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            worker.process.kill('SIGTERM');
          }),
      );
      await Promise.all(exits);
      await new Promise<void>((resolve) => (metricsServer === undefined ? resolve() : metricsServer.close(() => resolve())));
    },
  };
}

/** Sends `signal` to every worker (SIGHUP: each reloads its configuration, credentials and certificates). */
export function signalWorkers(signal: NodeJS.Signals): void {
  for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal);
}
