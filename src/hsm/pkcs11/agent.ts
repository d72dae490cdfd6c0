/**
 * Entry point of an HSM agent process: one PKCS#11 context for one member,
 * driven by the proxy over Node IPC. It runs one operation at a time; the proxy
 * enforces deadlines and kills this process when the token hangs.
 */
import { HsmError } from '../errors.js';
import type { AgentFailure, AgentLogLevel, AgentMessage, AgentOperation, ParentMessage } from '../protocol.js';
import { MessageBatcher } from '../message-batcher.js';
import { Pkcs11Engine } from './engine.js';

let engine: Pkcs11Engine | undefined;
const outbox = new MessageBatcher<AgentMessage>((batch) => process.send?.(batch));

function send(message: AgentMessage): void {
  outbox.push(message);
}

function log(level: AgentLogLevel, msg: string, fields?: Record<string, string | number | boolean>): void {
  send({ log: fields === undefined ? { level, msg } : { level, msg, fields } });
}

function failure(error: unknown): AgentFailure {
  if (error instanceof HsmError) {
    return {
      kind: error.kind,
      message: error.message,
      ...(error.ckr === undefined ? {} : { ckr: error.ckr }),
      ...(error.ckrName === undefined ? {} : { ckrName: error.ckrName }),
    };
  }
  return { kind: 'internal', message: error instanceof Error ? error.message : 'unknown error' };
}

function run(call: AgentOperation): unknown {
  if (engine === undefined) throw new HsmError('internal', 'agent not initialised');
  switch (call.op) {
    case 'encrypt': {
      const plaintext = Buffer.from(call.plaintext, 'base64');
      try {
        const { iv, ciphertext } = engine.encrypt(call.label, Buffer.from(call.aad, 'base64'), plaintext);
        return { iv: iv.toString('base64'), ciphertext: ciphertext.toString('base64') };
      } finally {
        plaintext.fill(0);
      }
    }
    case 'decrypt': {
      const plaintext = engine.decrypt(
        call.label,
        Buffer.from(call.aad, 'base64'),
        Buffer.from(call.iv, 'base64'),
        Buffer.from(call.ciphertext, 'base64'),
      );
      const encoded = plaintext.toString('base64');
      plaintext.fill(0);
      return { plaintext: encoded };
    }
    case 'describe':
      return engine.describe(call.label);
    case 'fingerprint':
      return engine.fingerprint(call.labels, call.fixedVectorLabel);
    case 'readData':
      return { values: engine.readData(call.label) };
    case 'ping':
      return { slotDescription: engine.ping() };
  }
}

function handle(raw: ParentMessage): void {
  if ('init' in raw) {
    try {
      engine = new Pkcs11Engine(raw.init);
      const slotDescription = engine.open();
      log('info', 'PKCS#11 session open', { slot: slotDescription });
      send({ id: raw.id, ok: true, result: { slotDescription } });
    } catch (error) {
      send({ id: raw.id, ok: false, error: failure(error) });
    }
    return;
  }
  try {
    send({ id: raw.id, ok: true, result: run(raw.call) });
  } catch (error) {
    send({ id: raw.id, ok: false, error: failure(error) });
  }
}

process.on('message', (batch: ParentMessage[]) => {
  for (const message of batch) handle(message);
});

// The proxy owns this process: when the IPC channel closes, there is nobody left to serve.
process.on('disconnect', () => {
  engine?.close();
  process.exit(0);
});
