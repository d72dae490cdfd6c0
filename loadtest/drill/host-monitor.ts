import { readdirSync, readFileSync } from 'node:fs';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * How busy the machine was during each second of a drill, so a latency spike
 * can be told apart from a starved host (the drills share a 2-core box with
 * everything else): whole-machine CPU use from /proc/stat, the part of it used
 * by the drill's own processes (this process, the proxy and its agents, the
 * HSM nodes; the rest is somebody else's), the largest event-loop delay of this
 * (mostly idle) drill process, and the proxy's own largest event-loop delay
 * from its Prometheus endpoint (prom-client resets it at every scrape, so each
 * scrape covers the second since the previous one).
 */

export interface HostSecond {
  readonly second: number;
  /** Share of all CPUs busy (not idle, not iowait) during the second, in percent; null without /proc/stat. */
  readonly cpuBusyPct: number | null;
  /** The part of it used by the drill's processes (drill, proxy, agents, HSM nodes), in percent of all CPUs. */
  readonly drillCpuPct: number | null;
  /** The rest: other processes on the machine, in percent of all CPUs. */
  readonly otherCpuPct: number | null;
  /** Largest event-loop delay of the drill process itself, ms. */
  readonly drillLoopDelayMaxMs: number;
  /** Largest event-loop delay the proxy reported for the second, ms; null when the scrape failed. */
  readonly proxyLoopDelayMaxMs: number | null;
}

function cpuTimes(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    const total = fields.reduce((sum, value) => sum + value, 0);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

interface ProcessTicks {
  readonly ppid: number;
  /** utime + stime + cutime + cstime: its own CPU and that of the children it has reaped. */
  readonly total: number;
}

/** This process and every process in `groups`, with their CPU ticks so far. */
function ownProcesses(groups: ReadonlySet<number>): Map<number, ProcessTicks> | undefined {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return undefined;
  }
  const out = new Map<number, ProcessTicks>();
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // Gone meanwhile.
    }
    // Fields after the command name, which may itself hold spaces and parentheses: state ppid pgrp ... utime stime cutime cstime.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const pid = Number(name);
    if (pid !== process.pid && !groups.has(Number(fields[2]))) continue;
    out.set(pid, { ppid: Number(fields[1]), total: Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]) });
  }
  return out;
}

/**
 * CPU ticks used by the drill's processes, dead ones included. A reaped child's ticks move into its
 * parent's cutime/cstime, so the sum over live processes stays whole, except for children whose parent died
 * first (a killed node's p11-kit-remote, reaped by init): their last-seen ticks are kept in `buried`.
 */
class OwnCpu {
  private last = new Map<number, ProcessTicks>();
  private buried = 0;

  ticks(groups: ReadonlySet<number>): number | undefined {
    const now = ownProcesses(groups);
    if (now === undefined) return undefined;
    for (const [pid, entry] of this.last) if (!now.has(pid) && !now.has(entry.ppid)) this.buried += entry.total;
    this.last = now;
    let total = this.buried;
    for (const entry of now.values()) total += entry.total;
    return total;
  }
}

/** The drill's own delay monitor samples this often; its readings include the interval. */
const DELAY_RESOLUTION_MS = 10;

async function proxyLoopDelayMaxMs(metricsUrl: string | undefined): Promise<number | null> {
  if (metricsUrl === undefined) return null;
  try {
    const response = await fetch(metricsUrl, { signal: AbortSignal.timeout(500) });
    // Without the sampling interval (nodejs_eventloop_lag_* include it: docs/metrics.md).
    const match = /^hyok_event_loop_delay_seconds\{quantile="1"\} (\S+)$/m.exec(await response.text());
    return match === null ? null : Math.round(Number(match[1]) * 10_000) / 10;
  } catch {
    return null;
  }
}

export class HostMonitor {
  private readonly seconds: HostSecond[] = [];
  private running = false;
  private loop: Promise<void> | undefined;

  /**
   * Samples once per second from `startedAtPerf` (performance.now() time base) until stop(). `groups`
   * returns the process groups of the proxy and the HSM nodes (they change when a node restarts).
   */
  start(startedAtPerf: number, metricsUrl: string | undefined, groups: () => readonly number[]): void {
    this.running = true;
    const delay = monitorEventLoopDelay({ resolution: DELAY_RESOLUTION_MS });
    delay.enable();
    this.loop = (async () => {
      await proxyLoopDelayMaxMs(metricsUrl); // resets the proxy's histogram
      let cpu = cpuTimes();
      const ownCpu = new OwnCpu();
      let own = ownCpu.ticks(new Set(groups()));
      for (let second = 0; this.running; second++) {
        await sleep(Math.max(0, startedAtPerf + (second + 1) * 1000 - performance.now()));
        const now = cpuTimes();
        const ownNow = ownCpu.ticks(new Set(groups()));
        const proxy = await proxyLoopDelayMaxMs(metricsUrl);
        const span = cpu === undefined || now === undefined ? 0 : now.total - cpu.total;
        const pct = (ticks: number): number => Math.round((1000 * ticks) / span) / 10;
        const busy = span > 0 ? pct((now as { busy: number }).busy - (cpu as { busy: number }).busy) : null;
        const drill = span > 0 && own !== undefined && ownNow !== undefined ? Math.min(busy ?? 0, pct(Math.max(0, ownNow - own))) : null;
        this.seconds.push({
          second,
          cpuBusyPct: busy,
          drillCpuPct: drill,
          otherCpuPct: busy === null || drill === null ? null : Math.round(10 * Math.max(0, busy - drill)) / 10,
          // Kept with the sampling interval: the drill test's stall allowance (STALL_MS) was set against this reading.
          drillLoopDelayMaxMs: Math.round(delay.max / 1e5) / 10,
          proxyLoopDelayMaxMs: proxy,
        });
        delay.reset();
        cpu = now;
        own = ownNow;
      }
      delay.disable();
    })();
  }

  async stop(): Promise<HostSecond[]> {
    this.running = false;
    await this.loop;
    return this.seconds;
  }
}
