import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isWorkerMessage, isWorkerReady, workerAuditFile } from '../../../src/workers/messages.js';
import { configForWorker, workerIndex } from '../../../src/workers/worker.js';
import type { LoadedConfig } from '../../../src/config/load.js';
import type { Config } from '../../../src/config/schema.js';

describe('worker messages', () => {
  it('accepts the two relayed shapes and nothing else (prom-client and others share the channel)', () => {
    assert.ok(isWorkerMessage({ hyok: 'member-control', control: { member: 'hsm-1', action: 'fence', actor: 'operator:op', reason: 'drill' } }));
    assert.ok(isWorkerMessage({ hyok: 'member-control', control: { member: 'hsm-1', action: 'restore', actor: 'operator:op' } }));
    assert.ok(isWorkerMessage({ hyok: 'state-version', version: 7 }));
    for (const bad of [
      null,
      'fence',
      { type: 'prom-client:getMetricsReq', requestId: 1 },
      { hyok: 'member-control', control: { member: 'hsm-1', action: 'destroy', actor: 'x' } },
      { hyok: 'member-control', control: { member: 1, action: 'fence', actor: 'x' } },
      { hyok: 'member-control', control: { member: 'hsm-1', action: 'fence', actor: 'x', reason: 5 } },
      { hyok: 'member-control' },
      { hyok: 'state-version', version: 1.5 },
      { hyok: 'state-version', version: '3' },
      { hyok: 'worker-ready', port: 8443 },
    ]) {
      assert.equal(isWorkerMessage(bad), false, JSON.stringify(bad));
    }
    assert.ok(isWorkerReady({ hyok: 'worker-ready', port: 8443 }));
    assert.equal(isWorkerReady({ hyok: 'worker-ready', port: '8443' }), false);
  });

  it('names one audit file per worker, keeping the extension', () => {
    assert.equal(workerAuditFile('/var/log/hyok/audit.jsonl', 2), '/var/log/hyok/audit.worker-2.jsonl');
    assert.equal(workerAuditFile('/var/log/hyok/audit', 1), '/var/log/hyok/audit.worker-1');
    assert.equal(workerAuditFile('/var/log/hyok.d/audit', 3), '/var/log/hyok.d/audit.worker-3');
    assert.equal(workerAuditFile('/var/log/.audit', 1), '/var/log/.audit.worker-1');
  });

  it('reads the worker index from the environment', () => {
    assert.equal(workerIndex({}), undefined);
    assert.equal(workerIndex({ HYOK_WORKER_INDEX: '2' }), 2);
    assert.equal(workerIndex({ HYOK_WORKER_INDEX: '0' }), undefined);
    assert.equal(workerIndex({ HYOK_WORKER_INDEX: 'x' }), undefined);
  });

  it('gives a worker its own audit file and leaves metrics to the primary', () => {
    const loaded = {
      file: '/etc/hyok/config.yaml',
      config: { audit: { destination: { file: '/var/log/hyok/audit.jsonl' } }, metrics: { enabled: true, host: '0.0.0.0', port: 9464 } } as unknown as Config,
    } satisfies LoadedConfig;
    const worker = configForWorker(loaded, 2).config;
    assert.deepEqual(worker.audit.destination, { file: '/var/log/hyok/audit.worker-2.jsonl' });
    assert.equal(worker.metrics.enabled, false);
    assert.deepEqual(loaded.config.audit.destination, { file: '/var/log/hyok/audit.jsonl' }, 'the loaded config is not modified');
  });
});
