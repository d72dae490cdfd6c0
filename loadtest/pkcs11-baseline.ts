/**
 * The HSM ceiling for benchmarks: AES-256-GCM encrypts of 32 bytes in a tight
 * loop on one dev SoftHSM token, through the same engine the agents use
 * (cached key handle, C_EncryptInit + C_Encrypt per call), with no IPC, proxy
 * or network. pkcs11js is synchronous, so this runs as its own process; the
 * bench starts one per session it measures.
 *
 *   node dist/loadtest/pkcs11-baseline.js <devDir> <seconds>    prints {"ops":N,"seconds":S}
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { ensureDevEnvironment } from '../src/dev/bootstrap.js';
import { Pkcs11Engine } from '../src/hsm/pkcs11/engine.js';

const [devDir, secondsText = '3', tokenLabel = 'hyok-dev-1'] = process.argv.slice(2);
if (devDir === undefined) throw new Error('usage: pkcs11-baseline <devDir> [seconds] [tokenLabel]');
const env = await ensureDevEnvironment(devDir); // reuses the bench's dev environment
process.env['SOFTHSM2_CONF'] = env.softhsmConf;
const engine = new Pkcs11Engine({ module: env.modulePath, tokenLabel, pin: readFileSync(env.pinFile, 'utf8').trim() });
engine.open();
const plaintext = randomBytes(32);
const aad = randomBytes(64);
engine.encrypt('foo', aad, plaintext); // finds and caches the key handle
const seconds = Number(secondsText);
const end = performance.now() + seconds * 1000;
let ops = 0;
const started = performance.now();
while (performance.now() < end) {
  engine.encrypt('foo', aad, plaintext);
  ops += 1;
}
const elapsed = (performance.now() - started) / 1000;
engine.close();
process.stdout.write(`${JSON.stringify({ ops, seconds: elapsed })}\n`);
