import { AggregatorRegistry } from 'prom-client';
import type { LoadedConfig } from '../config/load.js';
import type { RunningProxy } from '../proxy.js';
import type { StateService } from '../state/service.js';
import { isWorkerMessage, WORKER_INDEX_ENV, workerAuditFile, type WorkerMessage, type WorkerReady } from './messages.js';

/** The worker's index (1..N) when this process is one of `serve --workers N`, else undefined. */
export function workerIndex(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env[WORKER_INDEX_ENV];
  const index = raw === undefined ? Number.NaN : Number(raw);
  return Number.isSafeInteger(index) && index >= 1 ? index : undefined;
}

/**
 * A worker's configuration: the primary serves metrics for all, and each worker
 * writes its own audit file (a hash chain has one writer).
 */
export function configForWorker(loaded: LoadedConfig, index: number): LoadedConfig {
  const { audit, metrics } = loaded.config;
  const destination = typeof audit.destination === 'object' ? { file: workerAuditFile(audit.destination.file, index) } : audit.destination;
  return { ...loaded, config: { ...loaded.config, metrics: { ...metrics, enabled: false }, audit: { ...audit, destination } } };
}

/**
 * Joins the primary: answers its metric scrapes, tells the other workers of
 * operator actions on members and of new state versions, and applies theirs.
 */
export function joinPrimary(proxy: RunningProxy, state: StateService): void {
  const send = (message: WorkerMessage | WorkerReady): void => {
    if (process.connected) process.send?.(message);
  };
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([proxy.metrics.registry]);
  proxy.cluster.onControl((control) => send({ hyok: 'member-control', control }));
  state.onChange((document) => send({ hyok: 'state-version', version: document.version }));
  process.on('message', (message: unknown) => {
    if (!isWorkerMessage(message)) return;
    if (message.hyok === 'member-control') {
      proxy.logger.info({ member: message.control.member, action: message.control.action, actor: message.control.actor }, 'applying a member action taken on another worker');
      void proxy.cluster.applyControl(message.control).catch((error: unknown) => proxy.logger.error({ err: error }, 'member action from another worker failed'));
    } else if (message.version > state.current.version) {
      void state.sync().catch((error: unknown) => proxy.logger.warn({ err: error }, 'state sync after another worker changed it failed'));
    }
  });
  send({ hyok: 'worker-ready', port: proxy.port });
}
