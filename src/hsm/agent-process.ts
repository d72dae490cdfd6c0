import { fork, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { HsmError } from './errors.js';
import { MessageBatcher } from './message-batcher.js';
import type { AgentInit, AgentMessage, AgentOperation, AgentResults, ParentMessage } from './protocol.js';

const AGENT_ENTRY = fileURLToPath(new URL('./pkcs11/agent.js', import.meta.url));

interface Pending {
  readonly startedAt: number;
  resolve(result: unknown): void;
  reject(error: HsmError): void;
  timer: NodeJS.Timeout | undefined;
  /** Set once the caller got an answer (result, error or timeout); the entry stays until the agent replies. */
  settled: boolean;
}

export interface AgentProcessOptions {
  readonly memberId: string;
  readonly index: number;
  readonly init: AgentInit;
  readonly environment: Readonly<Record<string, string>>;
  readonly startTimeoutMs: number;
  readonly logger: Logger;
}

/**
 * The proxy's side of one agent process. Every call has a deadline; a call that
 * times out still counts as outstanding until the agent answers or dies, so the
 * router sees a hung agent as busy and the watchdog can measure how long it hangs.
 */
export class AgentProcess {
  readonly memberId: string;
  readonly index: number;
  private readonly child: ChildProcess;
  private readonly logger: Logger;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private exited = false;
  private readonly outbox: MessageBatcher<ParentMessage>;
  private exitListeners: Array<(reason: string) => void> = [];

  private constructor(options: AgentProcessOptions, child: ChildProcess) {
    this.memberId = options.memberId;
    this.index = options.index;
    this.child = child;
    this.logger = options.logger;
    this.outbox = new MessageBatcher((batch) => this.sendBatch(batch));
    child.on('message', (batch: AgentMessage[]) => {
      for (const message of batch) this.onMessage(message);
    });
    child.on('exit', (code, signal) => this.handleExit(signal === null ? `exited with code ${String(code)}` : `killed by ${signal}`));
    child.on('error', (error) => this.logger.error({ err: error }, 'agent process error'));
    for (const stream of [child.stdout, child.stderr]) {
      if (stream === null) continue;
      // Native libraries sometimes print to stdout/stderr; keep those lines, bounded.
      createInterface({ input: stream }).on('line', (line) => this.logger.warn({ output: line.slice(0, 300) }, 'agent output'));
    }
  }

  /** Spawns the agent and opens its PKCS#11 session; kills it if that fails or takes too long. */
  static async start(options: AgentProcessOptions): Promise<AgentProcess> {
    const child = fork(AGENT_ENTRY, [], {
      serialization: 'json',
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // Only what the module needs: the proxy's own environment may hold secrets.
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...options.environment },
      execArgv: [],
    });
    const agent = new AgentProcess(options, child);
    try {
      await agent.request({ id: agent.nextId++, init: options.init }, options.startTimeoutMs);
      return agent;
    } catch (error) {
      agent.kill('start failed');
      throw error;
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get alive(): boolean {
    return !this.exited;
  }

  /** Calls waiting for an answer, including ones whose caller already timed out. */
  outstanding(): number {
    return this.pending.size;
  }

  oldestOutstandingMs(now = performance.now()): number {
    let oldest = 0;
    for (const entry of this.pending.values()) oldest = Math.max(oldest, now - entry.startedAt);
    return oldest;
  }

  call<K extends AgentOperation['op']>(operation: Extract<AgentOperation, { op: K }>, timeoutMs: number): Promise<AgentResults[K]> {
    return this.request({ id: this.nextId++, call: operation }, timeoutMs) as Promise<AgentResults[K]>;
  }

  onExit(listener: (reason: string) => void): void {
    if (this.exited) listener('already exited');
    else this.exitListeners.push(listener);
  }

  /** SIGKILL: the only way to stop a thread blocked inside a PKCS#11 call. */
  kill(reason: string): void {
    if (this.exited) return;
    this.logger.warn({ reason, pid: this.child.pid }, 'killing agent');
    this.child.kill('SIGKILL');
    this.failAll(new HsmError('unavailable', `agent killed: ${reason}`));
  }

  private request(message: ParentMessage, timeoutMs: number): Promise<unknown> {
    if (this.exited) return Promise.reject(new HsmError('unavailable', 'agent process is not running'));
    return new Promise((resolve, reject) => {
      const entry: Pending = { startedAt: performance.now(), resolve, reject, timer: undefined, settled: false };
      entry.timer = setTimeout(() => {
        // Timers run before I/O in each loop turn: when the loop lagged, the answer may already be
        // waiting in the pipe. Decide after the poll phase so lag alone never becomes a timeout.
        setImmediate(() => {
          if (entry.settled) return;
          entry.settled = true;
          reject(new HsmError('timeout', `no answer within ${timeoutMs} ms`));
        });
      }, timeoutMs);
      this.pending.set(message.id, entry);
      this.outbox.push(message);
    });
  }

  private sendBatch(batch: ParentMessage[]): void {
    if (this.exited) return;
    this.child.send(batch, (error) => {
      if (error === null || error === undefined) return;
      for (const message of batch) {
        const entry = this.pending.get(message.id);
        if (entry === undefined || entry.settled) continue;
        entry.settled = true;
        clearTimeout(entry.timer);
        this.pending.delete(message.id);
        entry.reject(new HsmError('unavailable', 'cannot reach the agent process'));
      }
    });
  }

  private onMessage(message: AgentMessage): void {
    if ('log' in message) {
      const { level, msg, fields } = message.log;
      this.logger[level](fields ?? {}, msg);
      return;
    }
    const entry = this.pending.get(message.id);
    if (entry === undefined) return;
    this.pending.delete(message.id);
    clearTimeout(entry.timer);
    if (entry.settled) return;
    entry.settled = true;
    if (message.ok) entry.resolve(message.result);
    else {
      const { kind, message: text, ckr, ckrName } = message.error;
      entry.reject(new HsmError(kind, text, { ckr, ckrName, member: this.memberId }));
    }
  }

  private handleExit(reason: string): void {
    if (this.exited) return;
    this.exited = true;
    this.failAll(new HsmError('unavailable', `agent ${reason}`));
    const listeners = this.exitListeners;
    this.exitListeners = [];
    for (const listener of listeners) listener(reason);
  }

  private failAll(error: HsmError): void {
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      if (!entry.settled) {
        entry.settled = true;
        entry.reject(error);
      }
    }
    this.pending.clear();
  }
}
