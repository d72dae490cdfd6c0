import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { Redis } from 'ioredis';
import { freePort } from '../../loadtest/local-redis.js';
import { logFile } from './test-env.js';

/**
 * A real redis-server for one test file, on a free 127.0.0.1 port in a temp
 * dir, with nothing persisted. Tests can kill it (SIGKILL), restart it on the
 * same port, flush it, freeze it (SIGSTOP/SIGCONT) or make it sleep
 * (DEBUG SLEEP from a side connection), and read or write keys directly.
 *
 * The server never outlives the test process: `useRedisServer` stops it in an
 * after() hook; exit and signal handlers kill it if the process ends another
 * way; and a small watchdog (sh) kills it within a second if the test process
 * itself is SIGKILLed. (PR_SET_PDEATHSIG would be simpler, but is not honoured
 * in every sandbox this suite runs in.)
 */

export interface RedisServer {
  readonly port: number;
  readonly host: string;
  /** redis://127.0.0.1:<port>, for the proxy's `redis.url`. */
  readonly url: string;
  readonly dir: string;
  /** Pid of the running server, undefined while it is stopped. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** SIGKILL, as a crash would; resolves once the process is gone. */
  kill(): Promise<void>;
  /** Starts again on the same port (after kill()); resolves once it answers PING. */
  restart(): Promise<void>;
  /** SIGSTOP: the TCP connections stay open but nothing answers. */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
  /** DEBUG SLEEP on a side connection: the server blocks for that long; resolves when it answers again. */
  sleep(seconds: number): Promise<void>;
  flushAll(): Promise<void>;
  /** Runs one command on a short-lived side connection. */
  command(name: string, ...args: Array<string | number>): Promise<unknown>;
  /** Every key matching the pattern (SCAN, not KEYS). */
  keys(pattern: string): Promise<string[]>;
  get(key: string): Promise<string | null>;
  set(key: string, value: string, ttlMs?: number): Promise<void>;
  /** Stops the server and removes its directory; safe to call twice. */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 10_000;

const live = new Set<ChildProcess>();
let hooksInstalled = false;
function killAll(): void {
  for (const child of live) {
    try {
      // SIGKILL also ends a frozen (SIGSTOPped) server.
      child.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
}
function installCleanupHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    // Clean up, then let the signal do what it would have done.
    process.once(signal, () => {
      killAll();
      process.kill(process.pid, signal);
    });
  }
}

/**
 * Kills `pid` (if it is still a redis-server) once this test process is gone, e.g. SIGKILLed; polls every second.
 * Ended by the caller as soon as the server exits, so it never outlives the server it watches.
 */
function watchdog(pid: number): ChildProcess {
  const script = 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; grep -q redis-server "/proc/$2/cmdline" 2>/dev/null && kill -9 "$2"';
  const child = spawn('/bin/sh', ['-c', script, 'redis-watchdog', String(process.pid), String(pid)], { stdio: 'ignore' });
  child.on('error', () => undefined);
  child.unref();
  return child;
}

function sideClient(host: string, port: number, timeoutMs: number): Redis {
  return new Redis({
    host,
    port,
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    enableReadyCheck: false,
    retryStrategy: () => null,
    connectionName: 'hyok-test-side',
  });
}

async function withClient<T>(host: string, port: number, timeoutMs: number, use: (client: Redis) => Promise<T>): Promise<T> {
  const client = sideClient(host, port, timeoutMs);
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await use(client);
  } finally {
    client.disconnect();
  }
}

export async function startRedisServer(name: string): Promise<RedisServer> {
  const host = '127.0.0.1';
  const dir = mkdtempSync(join(tmpdir(), 'hyok-redis-'));
  const log = logFile(`redis-server-${name}`);
  let port = await freePort();
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let stopped = false;
  installCleanupHooks();

  const launch = (): void => {
    const args = [
      '--port', String(port),
      '--bind', host,
      '--save', '',
      '--appendonly', 'no',
      '--dir', dir,
      '--logfile', log,
      '--daemonize', 'no',
      // DEBUG SLEEP, from local connections only.
      '--enable-debug-command', 'local',
    ];
    const started = spawn('redis-server', args, { stdio: 'ignore' });
    child = started;
    live.add(started);
    const guard = started.pid === undefined ? undefined : watchdog(started.pid);
    exited = new Promise((resolve) => {
      const gone = (): void => {
        live.delete(started);
        guard?.kill('SIGKILL');
        if (child === started) child = undefined;
        resolve();
      };
      started.once('exit', gone);
      started.once('error', gone);
    });
  };

  const waitReady = async (): Promise<void> => {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (child === undefined) throw new Error(`redis-server exited before answering on port ${port}; see ${log}`);
      try {
        const pong = await withClient(host, port, 500, (client) => client.ping());
        if (pong === 'PONG') return;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline) throw new Error(`redis-server did not answer PING on port ${port} within ${READY_TIMEOUT_MS} ms; see ${log}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };

  // The port could be taken between freePort() and the bind: try a few.
  for (let attempt = 1; ; attempt++) {
    launch();
    try {
      await waitReady();
      break;
    } catch (error) {
      child?.kill('SIGKILL');
      await exited;
      if (attempt >= 3) {
        rmSync(dir, { recursive: true, force: true });
        throw error;
      }
      port = await freePort();
    }
  }

  const kill = async (): Promise<void> => {
    const current = child;
    if (current === undefined) return;
    current.kill('SIGKILL');
    await exited;
  };

  const server: RedisServer = {
    port,
    host,
    url: `redis://${host}:${port}`,
    dir,
    get pid() {
      return child?.pid;
    },
    get running() {
      return child !== undefined;
    },
    kill,
    async restart() {
      if (stopped) throw new Error('the redis server was stopped for good');
      await kill();
      launch();
      await waitReady();
    },
    freeze() {
      child?.kill('SIGSTOP');
    },
    thaw() {
      child?.kill('SIGCONT');
    },
    async sleep(seconds) {
      await withClient(host, port, seconds * 1000 + 5000, (client) => client.call('DEBUG', 'SLEEP', String(seconds)));
    },
    async flushAll() {
      await withClient(host, port, 2000, (client) => client.flushall());
    },
    command: (commandName, ...args) => withClient(host, port, 2000, (client) => client.call(commandName, ...args.map(String))),
    async keys(pattern) {
      return withClient(host, port, 2000, async (client) => {
        const found = new Set<string>();
        let cursor = '0';
        do {
          const [next, batch] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
          for (const key of batch) found.add(key);
          cursor = next;
        } while (cursor !== '0');
        return [...found];
      });
    },
    get: (key) => withClient(host, port, 2000, (client) => client.get(key)),
    async set(key, value, ttlMs) {
      await withClient(host, port, 2000, (client) => (ttlMs === undefined ? client.set(key, value) : client.set(key, value, 'PX', ttlMs)));
    },
    async stop() {
      stopped = true;
      // A frozen process would not act on SIGTERM; SIGKILL works either way and nothing is persisted.
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}

/** A redis-server started before the file's tests (before any fixture registered after this call) and stopped after them. */
export function useRedisServer(name: string): RedisServer {
  let server: RedisServer | undefined;
  before(async () => {
    server = await startRedisServer(name);
  });
  after(async () => {
    await server?.stop();
  });
  const started = (): RedisServer => {
    if (server === undefined) throw new Error('the redis server is used before its suite started');
    return server;
  };
  return new Proxy({} as RedisServer, {
    get(_target, property) {
      const value = Reflect.get(started(), property) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(started()) : value;
    },
  });
}
