import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { HsmError } from './errors.js';
import type { AdminOperation, AdminRequest, AdminResponse } from './token-admin-protocol.js';

const ADMIN_ENTRY = fileURLToPath(new URL('./pkcs11/admin-agent.js', import.meta.url));

export interface TokenTarget {
  readonly module: string;
  readonly tokenLabel: string;
  readonly pin: string;
  readonly environment: Readonly<Record<string, string>>;
}

/** Runs administration operations on one token in a short-lived process with that member's environment. */
export function runTokenAdmin(target: TokenTarget, operations: AdminOperation[], timeoutMs = 30_000): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const child = fork(ADMIN_ENTRY, [], {
      serialization: 'json',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...target.environment },
      execArgv: [],
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new HsmError('timeout', `token ${target.tokenLabel} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('message', (response: AdminResponse) => {
      clearTimeout(timer);
      if (response.ok) resolve(response.results);
      else reject(new HsmError(response.error.kind, response.error.message));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new HsmError('internal', `token admin process exited with code ${String(code)}`));
    });
    const request: AdminRequest = { module: target.module, tokenLabel: target.tokenLabel, pin: target.pin, operations };
    child.send(request);
  });
}
