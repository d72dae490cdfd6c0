import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { fromRoot } from '../../src/lib/paths.js';
import { logFile } from './test-env.js';

export const CLI = fromRoot('dist', 'src', 'main.js');

export interface CliResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `hyok-proxy ...` to completion. Output is copied to the suite's logs
 * (where the secrets-in-logs check searches it) unless `secretOutput` says the
 * command prints a secret on purpose (kms-config).
 */
export function runCli(args: readonly string[], options: { env?: Record<string, string>; secretOutput?: boolean; logName?: string } = {}): CliResult {
  const result = spawnSync(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...options.env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (options.secretOutput !== true) {
    appendFileSync(logFile(options.logName ?? 'cli'), `$ hyok-proxy ${args.join(' ')}\n${result.stdout}${result.stderr}`);
  } else {
    appendFileSync(logFile(options.logName ?? 'cli'), `$ hyok-proxy ${args.join(' ')}\n${result.stderr}`);
  }
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Like runCli, but without blocking the event loop: needed when the proxy under test runs in this process. */
export async function runCliAsync(args: readonly string[], options: { env?: Record<string, string>; logName?: string } = {}): Promise<CliResult> {
  const proxy = startCli(args, { env: options.env ?? {}, logName: options.logName ?? 'cli' });
  const status = await new Promise<number | null>((resolve) => {
    if (proxy.child.exitCode !== null) resolve(proxy.child.exitCode);
    else proxy.child.once('exit', (code) => resolve(code));
  });
  const text = proxy.output();
  return { status, stdout: text, stderr: text };
}

export interface CliProcess {
  readonly child: ChildProcess;
  /** Everything the process wrote so far, both streams. */
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts a long-running `hyok-proxy ...`; its output goes to the suite's logs. */
export function startCli(args: readonly string[], options: { env?: Record<string, string>; logName: string }): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const file = logFile(options.logName);
  const collect = (chunk: Buffer): void => {
    const piece = chunk.toString('utf8');
    text += piece;
    appendFileSync(file, piece);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => text,
    async waitFor(pattern, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(text);
        if (match !== null) return match;
        if (child.exitCode !== null) throw new Error(`process exited (${child.exitCode}) before printing ${pattern}:\n${text.slice(-2000)}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}:\n${text.slice(-2000)}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
