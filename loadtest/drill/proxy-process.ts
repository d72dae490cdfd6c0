import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { Agent, request } from 'node:https';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fromRoot } from '../../src/lib/paths.js';
import { signalGroup } from './process-group.js';

/**
 * The proxy under test as its own process: `node dist/src/main.js serve --config FILE`,
 * detached in its own process group so that its agent processes go with it when
 * the drill has to SIGKILL it. Its log lines (pino JSON on stderr) go to a file;
 * the "hyok-proxy serving" line gives the ports.
 */

export interface ProxyProcessOptions {
  readonly configFile: string;
  readonly logFile: string;
  readonly onProcessGroup?: (pgid: number) => void;
  readonly startTimeoutMs?: number;
}

interface ServingUrls {
  readonly port: number;
  readonly adminUrl: string;
  readonly metricsUrl: string | undefined;
}

export interface AdminIdentity {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export class ProxyProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly adminUrl: string;
  readonly metricsUrl: string | undefined;
  private readonly exited: Promise<void>;

  private constructor(child: ChildProcess, urls: ServingUrls, exited: Promise<void>) {
    this.child = child;
    this.port = urls.port;
    this.adminUrl = urls.adminUrl;
    this.metricsUrl = urls.metricsUrl;
    this.exited = exited;
  }

  static async start(options: ProxyProcessOptions): Promise<ProxyProcess> {
    const child = spawn(process.execPath, [fromRoot('dist', 'src', 'main.js'), 'serve', '--config', options.configFile], {
      detached: true,
      // The config names every port (0: ephemeral); the variables would override it.
      env: { ...process.env, HYOK_LISTEN_PORT: '0', HYOK_METRICS_PORT: '0' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    if (child.pid !== undefined) options.onProcessGroup?.(child.pid);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const log = createWriteStream(options.logFile, { flags: 'a' });
    const tail: string[] = [];
    const serving = new Promise<ServingUrls>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the proxy did not start within ${options.startTimeoutMs ?? 60_000} ms; log: ${options.logFile}\n${tail.join('\n')}`)), options.startTimeoutMs ?? 60_000);
      createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
        log.write(`${line}\n`);
        tail.push(line.slice(0, 500));
        if (tail.length > 20) tail.shift();
        if (!line.includes('hyok-proxy serving')) return;
        try {
          const record = JSON.parse(line) as { port?: number; adminUrl?: string; metricsUrl?: string };
          if (typeof record.port === 'number' && typeof record.adminUrl === 'string') {
            clearTimeout(timer);
            resolve({ port: record.port, adminUrl: record.adminUrl, metricsUrl: record.metricsUrl });
          }
        } catch {
          // Not JSON: keep waiting.
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`the proxy exited at start (${signal ?? String(code)}); log: ${options.logFile}\n${tail.join('\n')}`));
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(new Error(`cannot start the proxy: ${error.message}`));
      });
    });
    // 'close' comes after the last stderr line ('exit' may come before it).
    child.once('close', () => log.end());
    try {
      return new ProxyProcess(child, await serving, exited);
    } catch (error) {
      signalGroup(child.pid, 'SIGKILL');
      throw error;
    }
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGTERM (the proxy drains and closes its agents), then SIGKILL to the whole group after `graceMs`. */
  async stop(graceMs = 6000): Promise<void> {
    if (this.alive) {
      // Only the proxy itself: it closes its agents on the way out.
      this.child.kill('SIGTERM');
      const stopped = await Promise.race([this.exited.then(() => true), sleep(graceMs).then(() => false)]);
      if (!stopped) signalGroup(this.child.pid, 'SIGKILL');
    }
    // Agents left behind by a proxy that died are in its group too.
    signalGroup(this.child.pid, 'SIGKILL');
    await Promise.race([this.exited, sleep(2000)]);
  }

  killNow(): void {
    signalGroup(this.child.pid, 'SIGKILL');
  }
}

/** GET on the admin API with the drill's observer certificate (auditor role). */
export function adminGet(baseUrl: string, path: string, identity: AdminIdentity, agent: Agent, timeoutMs = 1000): Promise<unknown> {
  const url = new URL(path, baseUrl);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'GET',
        servername: 'localhost',
        ca: identity.ca,
        cert: identity.cert,
        key: identity.key,
        agent,
        timeout: timeoutMs,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`admin ${path}: HTTP ${String(res.statusCode)}`));
          else {
            try {
              resolve(JSON.parse(text));
            } catch (error) {
              reject(error as Error);
            }
          }
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`admin ${path}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}
