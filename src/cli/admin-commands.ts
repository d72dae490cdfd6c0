import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import type { MemberView } from '../admin/server.js';
import { adminRequest, formatKeys, formatMembers, type AdminClientOptions, type AdminResponse, type KeyRow } from './admin-client.js';

/**
 * `hyok-proxy admin ...`: thin wrappers over the admin API. Every action goes
 * through the API, so it is authenticated, role-checked and audited there; the
 * CLI holds no authority of its own.
 */

const out = (text: string): void => void process.stdout.write(`${text}\n`);
const err = (text: string): void => void process.stderr.write(`${text}\n`);

function withConnection(command: Command): Command {
  return command
    .option('--url <url>', 'admin API base URL', 'https://127.0.0.1:9443')
    .option('--ca <file>', 'CA certificate that signed the admin listener certificate')
    .option('--cert <file>', 'client certificate (mTLS authentication)')
    .option('--key <file>', 'client certificate key')
    .option('--token-file <file>', 'file holding a bearer JWT (default: environment HYOK_ADMIN_TOKEN)');
}

/** The connection options, wherever on the command line they were given. */
function connection(command: Command): AdminClientOptions {
  return command.optsWithGlobals<AdminClientOptions>();
}

const json = (body: unknown): string => JSON.stringify(body, null, 2);

function show(response: AdminResponse, format: (body: unknown) => string = json): void {
  if (response.status === 202) {
    out(`needs dual control; approvers run: hyok-proxy admin approvals approve <id> --digest <digest>\n${json(response.body)}`);
  } else if (response.status >= 200 && response.status < 300) {
    out(format(response.body));
  } else {
    err(`admin API answered ${response.status}: ${JSON.stringify(response.body)}`);
    process.exitCode = 1;
  }
}

function segment(value: string): string {
  return encodeURIComponent(value);
}

function isoTimeOrNone(value: string): string | null {
  if (value === 'none') return null;
  if (Number.isNaN(Date.parse(value))) throw new InvalidArgumentError('expected an ISO 8601 time or "none"');
  return value;
}

function positiveInteger(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1) throw new InvalidArgumentError('expected a positive integer');
  return parsed;
}

/** `keys rotate` (issue wording) and `admin keys rotate` run the same call. */
function rotateAction(command: Command) {
  return async (keyStore: string, keyId: string): Promise<void> => {
    show(await adminRequest(connection(command), 'POST', `/admin/v1/keys/${segment(keyStore)}/${segment(keyId)}/rotate`), json);
  };
}

export function addRotateCommand(keys: Command): void {
  const rotate = withConnection(
    keys
      .command('rotate')
      .description('create a new version of a key on every member and encrypt with it from now on (through the admin API, role key-admin)')
      .argument('<keyStore>', 'key store name')
      .argument('<keyId>', 'external key id'),
  );
  rotate.action(rotateAction(rotate));
}

function addMemberCommands(admin: Command): void {
  admin
    .command('members')
    .description('list HSM members with health, mode, breaker, in-flight work, latency and last error')
    .option('--json', 'print JSON', false)
    .action(async function (this: Command, options: { json: boolean }) {
      const response = await adminRequest(connection(this), 'GET', '/admin/v1/members');
      show(response, (body) => (options.json ? json(body) : formatMembers((body as { members: MemberView[] }).members)));
    });
  admin
    .command('key-consistency')
    .description('show the last key-material comparison across members')
    .action(async function (this: Command) {
      show(await adminRequest(connection(this), 'GET', '/admin/v1/key-consistency'));
    });
  for (const [name, description] of [
    ['drain', 'stop sending new work to a member; work in flight finishes'],
    ['fence', 'take a member out of service at once'],
    ['restore', 'put a member back into service (its key material is checked again)'],
  ] as const) {
    const command = admin.command(name).description(description).argument('<member>', 'member id');
    command.option('--reason <text>', 'why (goes to the audit log)');
    command.action(async function (this: Command, member: string, options: { reason?: string }) {
      const response = await adminRequest(connection(this), 'POST', `/admin/v1/members/${segment(member)}/${name}`, options.reason === undefined ? {} : { reason: options.reason });
      show(response, (body) => formatMembers([body as MemberView]));
    });
  }
}

function addKeyCommands(admin: Command): void {
  const keys = admin.command('keys').description('key lifecycle: states, cryptoperiods, versions, rotation');
  keys
    .command('list')
    .description('every configured key with its lifecycle state and current version')
    .option('--json', 'print JSON', false)
    .action(async function (this: Command, options: { json: boolean }) {
      show(await adminRequest(connection(this), 'GET', '/admin/v1/keys'), (body) => (options.json ? json(body) : formatKeys((body as { keys: KeyRow[] }).keys)));
    });
  keys
    .command('show')
    .argument('<keyStore>')
    .argument('<keyId>')
    .description('one key: state, versions, cryptoperiod, kill switch')
    .action(async function (this: Command, keyStore: string, keyId: string) {
      show(await adminRequest(connection(this), 'GET', `/admin/v1/keys/${segment(keyStore)}/${segment(keyId)}`));
    });
  keys
    .command('state')
    .argument('<keyStore>')
    .argument('<keyId>')
    .argument('<state>', 'pre-activation | active | suspended | deactivated | compromised | destroyed')
    .option('--reason <text>', 'why (goes to the audit log)')
    .description('move a key to another lifecycle state (destroy and some others need dual control)')
    .action(async function (this: Command, keyStore: string, keyId: string, state: string, options: { reason?: string }) {
      const body = { state, ...(options.reason === undefined ? {} : { reason: options.reason }) };
      show(await adminRequest(connection(this), 'POST', `/admin/v1/keys/${segment(keyStore)}/${segment(keyId)}/state`, body));
    });
  keys
    .command('cryptoperiod')
    .argument('<keyStore>')
    .argument('<keyId>')
    .option('--activate-at <time>', 'ISO 8601 time the key becomes active, or "none"', isoTimeOrNone)
    .option('--expire-at <time>', 'ISO 8601 time the key stops encrypting, or "none"', isoTimeOrNone)
    .description('set or clear the activation and expiry dates of a key')
    .action(async function (this: Command, keyStore: string, keyId: string, options: { activateAt?: string | null; expireAt?: string | null }) {
      if (options.activateAt === undefined && options.expireAt === undefined) throw new InvalidArgumentError('give --activate-at and/or --expire-at');
      show(await adminRequest(connection(this), 'POST', `/admin/v1/keys/${segment(keyStore)}/${segment(keyId)}/cryptoperiod`, options));
    });
  const rotate = keys.command('rotate').argument('<keyStore>').argument('<keyId>').description('create a new key version on every member and encrypt with it');
  rotate.action(rotateAction(rotate));
  keys
    .command('retire')
    .argument('<keyStore>')
    .argument('<keyId>')
    .argument('<version>', 'a decrypt-only version')
    .description('stop an old version from decrypting')
    .action(async function (this: Command, keyStore: string, keyId: string, version: string) {
      show(await adminRequest(connection(this), 'POST', `/admin/v1/keys/${segment(keyStore)}/${segment(keyId)}/versions/${segment(version)}/retire`));
    });
  keys
    .command('compromised-decrypt')
    .argument('<keyStore>')
    .argument('<keyId>')
    .option('--minutes <n>', 'how long the override lasts', positiveInteger, 60)
    .description('ask for a time-boxed override letting a compromised key decrypt (dual control; every use raises an alert)')
    .action(async function (this: Command, keyStore: string, keyId: string, options: { minutes: number }) {
      show(await adminRequest(connection(this), 'POST', `/admin/v1/keys/${segment(keyStore)}/${segment(keyId)}/compromised-decrypt`, { minutes: options.minutes }));
    });
}

function addKillSwitchCommands(admin: Command): void {
  const killSwitch = admin.command('killswitch').description('stop a key or a whole key store on every replica at once');
  killSwitch
    .command('engage')
    .argument('<keyStore>')
    .option('--key-id <keyId>', 'only this key (default: the whole key store)')
    .option('--reason <text>', 'why (goes to the audit log)')
    .description('stop serving at once')
    .action(async function (this: Command, keyStore: string, options: { keyId?: string; reason?: string }) {
      show(await adminRequest(connection(this), 'POST', '/admin/v1/killswitch', { keyStore, ...(options.keyId === undefined ? {} : { keyId: options.keyId }), ...(options.reason === undefined ? {} : { reason: options.reason }) }));
    });
  killSwitch
    .command('restore')
    .argument('<keyStore>')
    .option('--key-id <keyId>', 'only this key')
    .option('--reason <text>', 'why (goes to the audit log)')
    .description('ask to serve again (dual control)')
    .action(async function (this: Command, keyStore: string, options: { keyId?: string; reason?: string }) {
      const body = { keyStore, ...(options.keyId === undefined ? {} : { keyId: options.keyId }), ...(options.reason === undefined ? {} : { reason: options.reason }) };
      show(await adminRequest(connection(this), 'POST', '/admin/v1/killswitch/restore', body));
    });
}

function addApprovalCommands(admin: Command): void {
  const approvals = admin.command('approvals').description('dual control: list, approve and reject pending requests');
  approvals
    .command('list')
    .description('pending and recent requests with their digests')
    .action(async function (this: Command) {
      show(await adminRequest(connection(this), 'GET', '/admin/v1/approvals'));
    });
  approvals
    .command('approve')
    .argument('<id>')
    .requiredOption('--digest <sha256>', 'digest of the request you reviewed (from `approvals list`): an approval binds to exactly that request')
    .description('approve a request (role approver; never your own)')
    .action(async function (this: Command, id: string, options: { digest: string }) {
      show(await adminRequest(connection(this), 'POST', `/admin/v1/approvals/${segment(id)}/approve`, { digest: options.digest }));
    });
  approvals
    .command('reject')
    .argument('<id>')
    .description('reject a request; it can no longer execute')
    .action(async function (this: Command, id: string) {
      show(await adminRequest(connection(this), 'POST', `/admin/v1/approvals/${segment(id)}/reject`));
    });
}

function addPolicyCommands(admin: Command): void {
  const policy = admin.command('policy').description('the policy in force; with policy.source managed, change it (widening needs dual control)');
  policy
    .command('show')
    .description('print the policy in force, its version and the attributes it reads')
    .action(async function (this: Command) {
      show(await adminRequest(connection(this), 'GET', '/admin/v1/policy'));
    });
  policy
    .command('put')
    .argument('<file>', 'policy YAML')
    .description('install a new managed policy: narrowing applies at once, widening waits for approvals')
    .action(async function (this: Command, file: string) {
      show(await adminRequest(connection(this), 'PUT', '/admin/v1/policy', { text: readFileSync(file, 'utf8') }));
    });
}

export function addAdminCommands(program: Command): void {
  const admin = withConnection(program.command('admin').description('call the admin API: members, keys, kill switch, approvals, policy'));
  addMemberCommands(admin);
  addKeyCommands(admin);
  addKillSwitchCommands(admin);
  addApprovalCommands(admin);
  addPolicyCommands(admin);
}
