/**
 * The bench report: ratios against the machine's ceilings measured in the same
 * run, the issue's targets marked met or not, a one-line summary, and a
 * self-contained HTML page (inline SVG, no script) with throughput per scenario
 * beside the baselines and p50/p99 per scenario.
 */

export interface ScenarioResult {
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
  /** The proxy's event-loop delay p99 over the scenario, sampling interval removed (docs/metrics.md). */
  readonly eventLoopP99Ms: number | undefined;
  /** CPU time of the server under test per answered request: the proxy's process(es) without the HSM agents, or the bare server. */
  readonly serverCpuUsPerRequest?: number | undefined;
}

export interface RampResult {
  readonly steps: ReadonlyArray<{ readonly rate: number; readonly tps: number; readonly p99Ms: number; readonly maxMs: number; readonly errors: number; readonly withinBudget: boolean }>;
  /** The highest offered rate served with p99 within the budget and no error; null when even the first step failed. */
  readonly sustainedRate: number | null;
}

export interface Baselines {
  /** The bare HTTPS + node:crypto server, same generator and TLS settings. */
  readonly bareSaturation: ScenarioResult | undefined;
  readonly bareFixedRate: ScenarioResult | undefined;
  /** Raw PKCS#11 encrypts on one dev token, per number of concurrent processes. */
  readonly pkcs11: ReadonlyArray<{ readonly processes: number; readonly opsPerSecond: number }>;
}

export interface Target {
  readonly name: string;
  readonly goal: string;
  readonly measured: string;
  /** null: not measured in this run. */
  readonly met: boolean | null;
}

export interface Ratios {
  readonly encryptVsBare: number | null;
  readonly fixedP99VsBare: number | null;
  readonly encryptVsPkcs11: number | null;
}

export const BUDGET_MS = 250;

const round2 = (value: number): number => Math.round(value * 100) / 100;

export function computeRatios(results: readonly ScenarioResult[], baselines: Baselines): Ratios {
  const encrypt = results.find((result) => result.scenario === 'encrypt' && result.offeredRate === undefined);
  const fixed = results.find((result) => result.scenario === 'fixed');
  const hsm = Math.max(0, ...baselines.pkcs11.map((entry) => entry.opsPerSecond));
  return {
    encryptVsBare: encrypt !== undefined && baselines.bareSaturation !== undefined && baselines.bareSaturation.tps > 0 ? round2(encrypt.tps / baselines.bareSaturation.tps) : null,
    fixedP99VsBare: fixed !== undefined && baselines.bareFixedRate !== undefined && baselines.bareFixedRate.p99Ms > 0 ? round2(fixed.p99Ms / baselines.bareFixedRate.p99Ms) : null,
    encryptVsPkcs11: encrypt !== undefined && hsm > 0 ? round2(encrypt.tps / hsm) : null,
  };
}

export function evaluateTargets(results: readonly ScenarioResult[], baselines: Baselines, ratios: Ratios): Target[] {
  const encrypt = results.find((result) => result.scenario === 'encrypt' && result.offeredRate === undefined);
  const fixed = results.find((result) => result.scenario === 'fixed');
  const failed = (result: ScenarioResult): number => result.errors + result.non2xx + result.timeouts;
  return [
    {
      name: 'saturation vs bare HTTPS',
      goal: 'encrypt TPS >= 0.6 x bare baseline',
      measured: ratios.encryptVsBare === null ? 'not measured' : `${encrypt?.tps} vs ${baselines.bareSaturation?.tps} req/s = ${ratios.encryptVsBare}x`,
      met: ratios.encryptVsBare === null ? null : ratios.encryptVsBare >= 0.6,
    },
    {
      name: 'fixed-rate p99',
      goal: 'p99 <= 10 ms',
      measured: fixed === undefined ? 'not measured' : `${fixed.p99Ms} ms at ${fixed.offeredRate}/s`,
      met: fixed === undefined ? null : fixed.p99Ms <= 10,
    },
    {
      name: 'fixed-rate p99 vs bare',
      goal: 'within 2x of the bare baseline at the same rate',
      measured: ratios.fixedP99VsBare === null ? 'not measured' : `${fixed?.p99Ms} vs ${baselines.bareFixedRate?.p99Ms} ms = ${ratios.fixedP99VsBare}x`,
      met: ratios.fixedP99VsBare === null ? null : ratios.fixedP99VsBare <= 2,
    },
    {
      name: 'fixed-rate budget',
      goal: `no request over ${BUDGET_MS} ms, no error`,
      measured: fixed === undefined ? 'not measured' : `max ${fixed.maxMs} ms, ${failed(fixed)} failed`,
      met: fixed === undefined ? null : fixed.maxMs <= BUDGET_MS && failed(fixed) === 0,
    },
    {
      name: 'event-loop delay at saturation',
      goal: 'p99 <= 5 ms',
      measured: encrypt?.eventLoopP99Ms === undefined ? 'not measured' : `${round2(encrypt.eventLoopP99Ms)} ms`,
      met: encrypt?.eventLoopP99Ms === undefined ? null : encrypt.eventLoopP99Ms <= 5,
    },
  ];
}

export function summaryLine(results: readonly ScenarioResult[], baselines: Baselines, ratios: Ratios, targets: readonly Target[]): string {
  const mark = (met: boolean | null): string => (met === null ? '-' : met ? 'met' : 'NOT met');
  const encrypt = results.find((result) => result.scenario === 'encrypt' && result.offeredRate === undefined);
  const fixed = results.find((result) => result.scenario === 'fixed');
  const hsm = Math.max(0, ...baselines.pkcs11.map((entry) => entry.opsPerSecond));
  const parts = [
    encrypt === undefined
      ? undefined
      : `encrypt ${encrypt.tps} req/s${ratios.encryptVsBare === null ? '' : ` = ${ratios.encryptVsBare}x bare (${baselines.bareSaturation?.tps})`} [${mark(targets[0]?.met ?? null)}]${encrypt.serverCpuUsPerRequest === undefined ? '' : `, CPU ${encrypt.serverCpuUsPerRequest} µs/req${baselines.bareSaturation?.serverCpuUsPerRequest === undefined ? '' : ` vs bare ${baselines.bareSaturation.serverCpuUsPerRequest}`}`}`,
    fixed === undefined ? undefined : `${fixed.offeredRate}/s p99 ${fixed.p99Ms} ms${ratios.fixedP99VsBare === null ? '' : ` vs bare ${baselines.bareFixedRate?.p99Ms} ms (${ratios.fixedP99VsBare}x)`} max ${fixed.maxMs} ms [${mark(targets[1]?.met ?? null)}/${mark(targets[2]?.met ?? null)}/${mark(targets[3]?.met ?? null)}]`,
    encrypt?.eventLoopP99Ms === undefined ? undefined : `event-loop p99 ${round2(encrypt.eventLoopP99Ms)} ms [${mark(targets[4]?.met ?? null)}]`,
    hsm > 0 ? `HSM ceiling ${hsm} ops/s` : undefined,
  ].filter((part): part is string => part !== undefined);
  return `bench: ${parts.join(' | ')}`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/** A bar chart of throughput (proxy scenarios blue, baselines grey) and a table of latencies. */
export function renderHtml(report: {
  readonly at: string;
  readonly note: string;
  readonly results: readonly ScenarioResult[];
  readonly baselines: Baselines;
  readonly ratios: Ratios;
  readonly targets: readonly Target[];
  readonly ramp: RampResult | undefined;
  readonly summary: string;
}): string {
  const bars: Array<{ label: string; value: number; baseline: boolean }> = [
    ...report.results.map((result) => ({ label: result.offeredRate === undefined ? result.scenario : `${result.scenario} @${result.offeredRate}/s`, value: result.tps, baseline: false })),
    ...(report.baselines.bareSaturation === undefined ? [] : [{ label: 'bare HTTPS (saturation)', value: report.baselines.bareSaturation.tps, baseline: true }]),
    ...(report.baselines.bareFixedRate === undefined ? [] : [{ label: `bare HTTPS @${report.baselines.bareFixedRate.offeredRate}/s`, value: report.baselines.bareFixedRate.tps, baseline: true }]),
    ...report.baselines.pkcs11.map((entry) => ({ label: `raw PKCS#11, ${entry.processes} process(es)`, value: entry.opsPerSecond, baseline: true })),
  ];
  const width = 900;
  const rowHeight = 26;
  const left = 230;
  const max = Math.max(1, ...bars.map((bar) => bar.value));
  const height = bars.length * rowHeight + 30;
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    ...bars.map((bar, index) => {
      const y = 10 + index * rowHeight;
      const w = ((width - left - 120) * bar.value) / max;
      return (
        `<text x="${left - 8}" y="${y + 15}" text-anchor="end">${escapeHtml(bar.label)}</text>` +
        `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${rowHeight - 6}" fill="${bar.baseline ? '#9e9e9e' : '#1f77b4'}"/>` +
        `<text x="${(left + w + 6).toFixed(1)}" y="${y + 15}">${bar.value.toLocaleString('en-US')} ${bar.label.startsWith('raw') ? 'ops/s' : 'req/s'}</text>`
      );
    }),
    '</svg>',
  ].join('\n');
  const rows = [...report.results, ...(report.baselines.bareSaturation === undefined ? [] : [{ ...report.baselines.bareSaturation, scenario: 'bare HTTPS' }]), ...(report.baselines.bareFixedRate === undefined ? [] : [{ ...report.baselines.bareFixedRate, scenario: 'bare HTTPS' }])]
    .map(
      (result) =>
        `<tr><td>${escapeHtml(result.scenario)}</td><td>${result.offeredRate === undefined ? 'saturation' : `${result.offeredRate}/s`}</td><td>${result.tps}</td><td>${result.p50Ms}</td><td>${result.p99Ms}</td><td>${result.maxMs}</td><td>${result.errors + result.non2xx + result.timeouts}</td><td>${result.eventLoopP99Ms === undefined ? '' : round2(result.eventLoopP99Ms)}</td><td>${result.serverCpuUsPerRequest ?? ''}</td></tr>`,
    )
    .join('\n');
  const targets = report.targets
    .map((target) => `<tr><td>${escapeHtml(target.name)}</td><td>${escapeHtml(target.goal)}</td><td>${escapeHtml(target.measured)}</td><td>${target.met === null ? '-' : target.met ? 'met' : '<b>not met</b>'}</td></tr>`)
    .join('\n');
  const ramp =
    report.ramp === undefined
      ? ''
      : `<h2>Ramp</h2><p>Highest rate with p99 within ${BUDGET_MS} ms and no error: ${report.ramp.sustainedRate ?? 'none'}/s</p><table><tr><th>offered</th><th>served</th><th>p99 ms</th><th>max ms</th><th>errors</th></tr>${report.ramp.steps
          .map((step) => `<tr><td>${step.rate}</td><td>${step.tps}</td><td>${step.p99Ms}</td><td>${step.maxMs}</td><td>${step.errors}</td></tr>`)
          .join('')}</table>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hyok-proxy bench ${escapeHtml(report.at)}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:960px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}</style></head>
<body><h1>hyok-proxy bench, ${escapeHtml(report.at)}</h1>
<p><code>${escapeHtml(report.summary)}</code></p>
<h2>Throughput (blue: through the proxy; grey: this machine's ceilings, same run)</h2>
${svg}
<h2>Latency (ms, measured by the generator)</h2>
<table><tr><th>scenario</th><th>load</th><th>req/s</th><th>p50</th><th>p99</th><th>max</th><th>failed</th><th>event-loop p99</th><th>server CPU µs/request</th></tr>
${rows}</table>
<h2>Targets</h2>
<table><tr><th>target</th><th>goal</th><th>measured</th><th></th></tr>
${targets}</table>
${ramp}
<p>${escapeHtml(report.note)}</p>
</body></html>
`;
}
