import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { signalGroup } from './process-group.js';

/**
 * One HSM node of a failover drill: a `p11-kit server` process (p11-kit 0.25,
 * see scripts/build-p11kit.sh) exporting one SoftHSM token over a unix socket.
 * The proxy reaches it with p11-kit's client module and
 * P11_KIT_SERVER_ADDRESS=unix:path=<socket>, exactly as it would reach a
 * network HSM through its vendor's client library.
 *
 * The server runs detached in its own process group. The server forks one
 * p11-kit-remote per client connection into that group, so kill(), freeze()
 * and thaw() signal the whole group: killing only the server would leave the
 * existing connections served (hsm-notes, "HSM nodes as separate processes").
 */

export type NodeState = 'stopped' | 'running' | 'frozen';

export interface HsmNodeOptions {
  readonly id: string;
  /** Prefix of the p11-kit 0.25 build (holds bin/p11-kit). */
  readonly p11kitPrefix: string;
  /** PKCS#11 module the server loads: SoftHSM itself, or the fault-injection shim in front of it. */
  readonly module: string;
  readonly tokenLabel: string;
  readonly socketPath: string;
  /** Environment of the server (SOFTHSM2_CONF, FAULT_SHIM_MODULE, FAULT_SHIM_CONTROL). */
  readonly environment: Readonly<Record<string, string>>;
  /** The server's stdout and stderr are appended here. */
  readonly logFile: string;
  /** Called with the process group of every server started, so a reaper can end it if this process dies. */
  readonly onProcessGroup?: (pgid: number) => void;
}

const START_TIMEOUT_MS = 10_000;

export class HsmNode {
  readonly options: HsmNodeOptions;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private current: NodeState = 'stopped';

  constructor(options: HsmNodeOptions) {
    this.options = options;
  }

  get id(): string {
    return this.options.id;
  }

  get state(): NodeState {
    return this.current;
  }

  /** The process group (the server's pid), while a server runs. */
  get pgid(): number | undefined {
    return this.current === 'stopped' ? undefined : this.child?.pid;
  }

  /** What the proxy's member config needs to reach this node through p11-kit's client module. */
  get serverAddress(): string {
    return `unix:path=${this.options.socketPath}`;
  }

  /** Starts the server (again, on the same socket path) and resolves once it accepts connections. */
  async start(): Promise<void> {
    if (this.current !== 'stopped') throw new Error(`node ${this.id} is already ${this.current}`);
    // A socket file left by a killed server would make the new one fail to bind.
    rmSync(this.options.socketPath, { force: true });
    const log = openSync(this.options.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(
        join(this.options.p11kitPrefix, 'bin', 'p11-kit'),
        ['server', '--foreground', '--provider', this.options.module, '--name', this.options.socketPath, `pkcs11:token=${this.options.tokenLabel}`],
        { detached: true, stdio: ['ignore', log, log], env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...this.options.environment } },
      );
    } finally {
      closeSync(log);
    }
    let spawnError: Error | undefined;
    child.on('error', (error) => (spawnError = error));
    const pid = child.pid;
    if (pid === undefined) throw new Error(`node ${this.id}: p11-kit server did not start${spawnError === undefined ? '' : `: ${spawnError.message}`}`);
    this.child = child;
    this.current = 'running';
    this.options.onProcessGroup?.(pid);
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.once('exit', () => {
      if (this.child === child) this.current = 'stopped';
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await accepts(this.options.socketPath))) {
      if (this.state === 'stopped') throw new Error(`node ${this.id}: p11-kit server exited at start (see ${this.options.logFile})`);
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(`node ${this.id}: no socket at ${this.options.socketPath} after ${START_TIMEOUT_MS} ms (see ${this.options.logFile})`);
      }
      await sleep(20);
    }
  }

  /** SIGKILL to the whole group (server and every p11-kit-remote), then the stale socket is removed. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined || this.current === 'stopped') return;
    signalGroup(child.pid, 'SIGKILL');
    await Promise.race([this.exited, sleep(5000)]);
    this.current = 'stopped';
    this.child = undefined;
    rmSync(this.options.socketPath, { force: true });
  }

  /** SIGSTOP to the group: the node hangs with its connections open, like a wedged HSM. */
  freeze(): void {
    if (this.current !== 'running' || this.child === undefined) throw new Error(`node ${this.id} is ${this.current}, cannot freeze`);
    signalGroup(this.child.pid, 'SIGSTOP');
    this.current = 'frozen';
  }

  thaw(): void {
    if (this.current !== 'frozen' || this.child === undefined) throw new Error(`node ${this.id} is ${this.current}, cannot thaw`);
    signalGroup(this.child.pid, 'SIGCONT');
    this.current = 'running';
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }

  /** Synchronous last resort (process 'exit' handlers): SIGKILL the group, remove the socket. */
  killNow(): void {
    if (this.child !== undefined && this.current !== 'stopped') signalGroup(this.child.pid, 'SIGKILL');
    this.current = 'stopped';
    this.child = undefined;
    if (existsSync(this.options.socketPath)) rmSync(this.options.socketPath, { force: true });
  }
}

/** True when something accepts a connection on the socket (the connection is closed at once). */
function accepts(path: string): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const socket = connect(path);
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(500, () => done(false));
  });
}
