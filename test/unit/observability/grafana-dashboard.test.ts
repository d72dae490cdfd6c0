import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { HsmCluster } from '../../../src/hsm/cluster.js';
import { fromRoot } from '../../../src/lib/paths.js';
import { ProxyMetrics } from '../../../src/observability/metrics.js';

interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly gridPos: { readonly x: number; readonly y: number; readonly w: number; readonly h: number };
  readonly targets?: ReadonlyArray<{ readonly expr: string; readonly refId: string }>;
  readonly datasource?: { readonly uid: string };
}

const dashboard = JSON.parse(readFileSync(fromRoot('deploy/grafana/hyok-proxy-dashboard.json'), 'utf8')) as {
  uid: string;
  panels: Panel[];
  templating: { list: Array<{ name: string }> };
};

/** Every metric the proxy can export, with all optional watchers installed. */
async function exportedMetricNames(): Promise<Set<string>> {
  const metrics = new ProxyMetrics();
  metrics.watchRedis(() => ({ connected: true, breaker: 'closed' }));
  const cluster = { snapshot: () => [], observeOperations: () => undefined } as unknown as HsmCluster;
  metrics.watchCluster(cluster);
  metrics.watchKeyStates(() => ({ active: 1 }));
  const names = new Set<string>();
  for (const metric of await metrics.registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (String(metric.type) === 'histogram') for (const suffix of ['_bucket', '_count', '_sum']) names.add(`${metric.name}${suffix}`);
  }
  return names;
}

describe('the Grafana dashboard (deploy/grafana)', () => {
  const panels = dashboard.panels.filter((panel) => panel.type !== 'row');

  it('queries only metrics the proxy exports', async () => {
    const exported = await exportedMetricNames();
    const referenced = new Set<string>();
    for (const panel of panels) {
      for (const target of panel.targets ?? []) {
        for (const [name] of target.expr.matchAll(/\b(?:hyok|nodejs|process)_[a-z0-9_]+/g)) referenced.add(name);
      }
    }
    assert.ok(referenced.size >= 10, `the dashboard covers the product's metrics (${referenced.size})`);
    const unknown = [...referenced].filter((name) => !exported.has(name));
    assert.deepEqual(unknown, [], 'every metric in a panel query exists');
    for (const name of ['hyok_requests_total', 'hyok_hsm_member_health', 'hyok_hsm_member_breaker_state', 'hyok_hsm_operation_duration_seconds_bucket', 'hyok_redis_up', 'hyok_keys', 'hyok_event_loop_delay_seconds']) {
      assert.ok(referenced.has(name), `a panel shows ${name}`);
    }
  });

  it('has well-formed panels: unique ids, a query each, the datasource variable, inside the 24-column grid, no overlaps', () => {
    const ids = dashboard.panels.map((panel) => panel.id);
    assert.equal(new Set(ids).size, ids.length);
    assert.ok(dashboard.templating.list.some((variable) => variable.name === 'datasource'));
    const cells = new Set<string>();
    for (const panel of panels) {
      assert.ok((panel.targets ?? []).length > 0, `${panel.title} has a query`);
      assert.equal(panel.datasource?.uid, '${datasource}', panel.title);
      for (const target of panel.targets ?? []) assert.match(target.expr, /job=~"\$job", instance=~"\$instance"/, `${panel.title} follows the job and instance selectors`);
      const { x, y, w, h } = panel.gridPos;
      assert.ok(x >= 0 && w > 0 && x + w <= 24, `${panel.title} fits the grid`);
      for (let row = y; row < y + h; row++) {
        for (let column = x; column < x + w; column++) {
          const cell = `${row}:${column}`;
          assert.ok(!cells.has(cell), `${panel.title} overlaps another panel at ${cell}`);
          cells.add(cell);
        }
      }
    }
  });

  it('never groups by a key id or a principal (bounded label cardinality)', () => {
    for (const panel of panels) {
      for (const target of panel.targets ?? []) assert.doesNotMatch(target.expr, /key_?id|principal|kmsRequestId/i, panel.title);
    }
  });
});
