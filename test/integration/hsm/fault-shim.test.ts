/**
 * Integration test for the PKCS#11 fault-injection shim
 * (test/fixtures/pkcs11-fault-shim/fault_shim.c) in front of SoftHSM2.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createCipheriv, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pkcs11js from 'pkcs11js';
import type { Handle, Mechanism } from 'pkcs11js';
import { CKR_DEVICE_ERROR, CKR_DEVICE_REMOVED, FaultControl, faultShimPath, repoRoot } from '../../helpers/fault-shim.js';

const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const LABEL = 'shimtest';
const SO_PIN = '1234';
const USER_PIN = '5678';
const CHILD_SCRIPT = join(repoRoot(), 'test', 'fixtures', 'pkcs11-fault-shim', 'child.mjs');

interface ChildEvent {
  event: string;
  [key: string]: unknown;
}

/** A node child process running child.mjs, collecting its JSON-line events. */
class ShimChild {
  readonly proc: ChildProcess;
  readonly events: ChildEvent[] = [];
  stderr = '';
  exited = false;
  private buffered = '';
  private listeners: Array<() => void> = [];

  constructor(args: Record<string, unknown>, env: NodeJS.ProcessEnv) {
    this.proc = spawn(process.execPath, [CHILD_SCRIPT], {
      env: { ...env, FAULT_CHILD_ARGS: JSON.stringify(args) },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000, // last-resort safety net; tests kill children themselves
    });
    this.proc.stdout?.setEncoding('utf8');
    this.proc.stderr?.setEncoding('utf8');
    this.proc.stdout?.on('data', (chunk: string) => {
      this.buffered += chunk;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl).trim();
        this.buffered = this.buffered.slice(nl + 1);
        if (line) this.events.push(JSON.parse(line) as ChildEvent);
      }
      this.notify();
    });
    this.proc.stderr?.on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.proc.on('exit', () => {
      this.exited = true;
      this.notify();
    });
  }

  has(event: string): boolean {
    return this.events.some((e) => e.event === event);
  }

  /** Resolves with the first `event`; rejects on an 'error' event, early exit or timeout. */
  async waitFor(event: string, timeoutMs: number): Promise<ChildEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find((e) => e.event === event);
      if (found) return found;
      const failed = this.events.find((e) => e.event === 'error');
      if (failed) throw new Error(`child reported error: ${JSON.stringify(failed)}; stderr: ${this.stderr}`);
      if (this.exited) throw new Error(`child exited (${this.proc.exitCode}) before '${event}'; stderr: ${this.stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for child '${event}'`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        const listeners = this.listeners;
        function done(): void {
          clearTimeout(timer);
          const i = listeners.indexOf(done);
          if (i >= 0) listeners.splice(i, 1);
          resolve();
        }
        listeners.push(done);
      });
    }
  }

  kill(): void {
    if (!this.exited && this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }

  private notify(): void {
    for (const l of this.listeners.splice(0)) l();
  }
}

function elapsedMs(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** Expected AES-256-GCM output (ciphertext || 16-byte tag) computed with node:crypto. */
function gcmReference(key: Buffer, iv: Buffer, aad: Buffer, plaintext: Buffer): Buffer {
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad);
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}

/** Asserts `fn` throws pkcs11js' Pkcs11Error for `ckr`: message is the CKR name, `code` the number. */
function assertCkr(fn: () => unknown, name: string, code: number): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof Error, `expected an Error, got ${String(err)}`);
    assert.equal(err.name, 'Pkcs11Error');
    assert.equal(err.message, name);
    assert.equal((err as Error & { code?: unknown }).code, code);
    return true;
  });
}

const haveSoftHsm = existsSync(SOFTHSM_MODULE);

describe('PKCS#11 fault-injection shim (SoftHSM2 behind it)', { skip: haveSoftHsm ? false : 'softhsm2 not installed' }, () => {
  let dir = '';
  let controlFile = '';
  let childControlFile = '';
  let fault: FaultControl;
  let childFault: FaultControl;
  let shimPath = '';
  let p11: pkcs11js.PKCS11 | undefined;
  let slot: Handle;
  let session: Handle;
  let key: Handle;
  const keyValue = randomBytes(32);
  const aad = Buffer.from('hyok-proxy fault shim aad');
  const children: ShimChild[] = [];
  const envVars = ['SOFTHSM2_CONF', 'FAULT_SHIM_MODULE', 'FAULT_SHIM_CONTROL'] as const;
  const savedEnv = new Map<string, string | undefined>(envVars.map((k) => [k, process.env[k]]));

  function lib(): pkcs11js.PKCS11 {
    assert.ok(p11, 'PKCS#11 module not loaded');
    return p11;
  }

  function gcm(iv: Buffer): Mechanism {
    return {
      mechanism: pkcs11js.CKM_AES_GCM,
      parameter: { type: pkcs11js.CK_PARAMS_GCM, iv, ivBits: 96, aad, tagBits: 128 } as pkcs11js.AesGCM,
    };
  }

  function encrypt(plaintext: Buffer, iv: Buffer, s: Handle = session): Buffer {
    lib().C_EncryptInit(s, gcm(iv), key);
    return lib().C_Encrypt(s, plaintext, Buffer.alloc(plaintext.length + 16));
  }

  function decrypt(ciphertext: Buffer, iv: Buffer): Buffer {
    lib().C_DecryptInit(session, gcm(iv), key);
    // SoftHSM wants room for ciphertext+tag in the output buffer, not just the plaintext.
    return lib().C_Decrypt(session, ciphertext, Buffer.alloc(ciphertext.length));
  }

  function childEnv(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      SOFTHSM2_CONF: join(dir, 'softhsm2.conf'),
      FAULT_SHIM_MODULE: SOFTHSM_MODULE,
      FAULT_SHIM_CONTROL: childControlFile,
    };
  }

  function startChild(args: Record<string, unknown>, env: NodeJS.ProcessEnv = childEnv()): ShimChild {
    const child = new ShimChild({ shimPath, ...args }, env);
    children.push(child);
    return child;
  }

  before(() => {
    shimPath = faultShimPath();
    dir = mkdtempSync(join(tmpdir(), 'fault-shim-test-'));
    mkdirSync(join(dir, 'tokens'));
    const conf = join(dir, 'softhsm2.conf');
    writeFileSync(conf, `directories.tokendir = ${join(dir, 'tokens')}\nlog.level = ERROR\n`);
    controlFile = join(dir, 'control');
    childControlFile = join(dir, 'child-control');
    fault = new FaultControl(controlFile);
    childFault = new FaultControl(childControlFile);

    process.env.SOFTHSM2_CONF = conf;
    process.env.FAULT_SHIM_MODULE = SOFTHSM_MODULE;
    process.env.FAULT_SHIM_CONTROL = controlFile;
    execFileSync(
      'softhsm2-util',
      ['--init-token', '--free', '--label', LABEL, '--so-pin', SO_PIN, '--pin', USER_PIN],
      { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] },
    );

    const p = new pkcs11js.PKCS11();
    p.load(shimPath);
    p11 = p;
    // CKF_OS_LOCKING_OK matters: with NULL init args SoftHSM disables its own
    // locking, and concurrent *Async calls on several sessions then corrupt its heap.
    p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    const found = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === LABEL);
    assert.ok(found, `token ${LABEL} not found`);
    slot = found;
    session = p.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
    p.C_Login(session, pkcs11js.CKU_USER, USER_PIN);
    key = p.C_CreateObject(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_TOKEN, value: false },
      { type: pkcs11js.CKA_VALUE, value: keyValue },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
    ]);
  });

  after(() => {
    // Release anything hung (in-process worker threads and children) first.
    if (fault) fault.pass();
    if (childFault) childFault.pass();
    for (const c of children) c.kill();
    if (p11) {
      try {
        p11.C_CloseAllSessions(slot);
        p11.C_Finalize();
      } catch {
        // best effort
      }
      p11.close();
      p11 = undefined;
    }
    for (const [k, v] of savedEnv) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('passes calls through when the control file is missing, and with mode=pass', () => {
    fault.remove();
    const plaintext = Buffer.from('round trip through the shim');
    const iv = randomBytes(12);
    const ct = encrypt(plaintext, iv);
    assert.deepEqual(ct, gcmReference(keyValue, iv, aad, plaintext));
    assert.deepEqual(decrypt(ct, iv), plaintext);

    fault.pass();
    const iv2 = randomBytes(12);
    const ct2 = encrypt(plaintext, iv2);
    assert.deepEqual(ct2, gcmReference(keyValue, iv2, aad, plaintext));
    assert.deepEqual(decrypt(ct2, iv2), plaintext);
    assert.equal(lib().C_GenerateRandom(session, Buffer.alloc(16)).length, 16);
  });

  it('delay mode sleeps before forwarding, only for the selected ops', () => {
    const delayMs = 400;
    fault.delay(delayMs, ['encrypt']);
    const plaintext = Buffer.from('slow hsm');
    const iv = randomBytes(12);

    let t = process.hrtime.bigint();
    lib().C_EncryptInit(session, gcm(iv), key); // 'init' is not delayed
    const initMs = elapsedMs(t);
    t = process.hrtime.bigint();
    const ct = lib().C_Encrypt(session, plaintext, Buffer.alloc(plaintext.length + 16));
    const encMs = elapsedMs(t);
    assert.ok(encMs >= 0.8 * delayMs, `C_Encrypt took ${encMs} ms, expected >= ${0.8 * delayMs}`);
    assert.ok(initMs < delayMs / 2, `C_EncryptInit took ${initMs} ms but 'init' was not selected`);
    assert.deepEqual(ct, gcmReference(keyValue, iv, aad, plaintext));

    fault.delay(delayMs); // all ops
    t = process.hrtime.bigint();
    lib().C_GenerateRandom(session, Buffer.alloc(8));
    const rndMs = elapsedMs(t);
    assert.ok(rndMs >= 0.8 * delayMs, `C_GenerateRandom took ${rndMs} ms`);
    fault.pass();
  });

  it('error mode returns the configured CKR without reaching the HSM', () => {
    fault.error(CKR_DEVICE_ERROR);
    const iv = randomBytes(12);
    assertCkr(() => lib().C_EncryptInit(session, gcm(iv), key), 'CKR_DEVICE_ERROR', 0x30);
    assertCkr(() => lib().C_GenerateRandom(session, Buffer.alloc(8)), 'CKR_DEVICE_ERROR', 0x30);
    assertCkr(() => lib().C_FindObjectsInit(session, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY }]), 'CKR_DEVICE_ERROR', 0x30);
    assertCkr(
      () => lib().C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION),
      'CKR_DEVICE_ERROR',
      0x30,
    );
    // Unwrapped entries keep working.
    assert.equal(lib().C_GetTokenInfo(slot).label.trim(), LABEL);
    assert.ok(lib().C_GetSlotList(true).length >= 1);

    // ckr accepts decimal too (50 = 0x32 CKR_DEVICE_REMOVED), written by hand.
    writeFileSync(controlFile, 'mode=error\nckr=50\nops=random\n');
    assertCkr(() => lib().C_GenerateRandom(session, Buffer.alloc(8)), 'CKR_DEVICE_REMOVED', CKR_DEVICE_REMOVED);

    // An injected failure of C_Encrypt terminates the real operation like a real
    // failure would: the same session can start a new operation right away.
    fault.error(CKR_DEVICE_ERROR, ['encrypt']);
    const plaintext = Buffer.from('after an injected error');
    lib().C_EncryptInit(session, gcm(iv), key);
    assertCkr(
      () => lib().C_Encrypt(session, plaintext, Buffer.alloc(plaintext.length + 16)),
      'CKR_DEVICE_ERROR',
      0x30,
    );
    fault.pass();
    const iv2 = randomBytes(12);
    assert.deepEqual(encrypt(plaintext, iv2), gcmReference(keyValue, iv2, aad, plaintext));
  });

  it('ops filter: an error on decrypt only leaves encrypt (and decrypt init) working', () => {
    fault.error(CKR_DEVICE_ERROR, ['decrypt']);
    const plaintext = Buffer.from('only decrypt is broken');
    const iv = randomBytes(12);
    const ct = encrypt(plaintext, iv);
    assert.deepEqual(ct, gcmReference(keyValue, iv, aad, plaintext));
    lib().C_DecryptInit(session, gcm(iv), key);
    assertCkr(() => lib().C_Decrypt(session, ct, Buffer.alloc(ct.length)), 'CKR_DEVICE_ERROR', 0x30);
    assert.equal(lib().C_GenerateRandom(session, Buffer.alloc(4)).length, 4);

    fault.pass();
    assert.deepEqual(decrypt(ct, iv), plaintext);
  });

  it('hang blocks a synchronous C_Encrypt (in a child process) until released', async () => {
    childFault.hang(['encrypt']);
    const plaintext = Buffer.from('frozen hsm, then thawed');
    const iv = randomBytes(12);
    const child = startChild({
      scenario: 'encrypt',
      label: LABEL,
      pin: USER_PIN,
      keyHex: keyValue.toString('hex'),
      ivHex: iv.toString('hex'),
      aadHex: aad.toString('hex'),
      plaintextHex: plaintext.toString('hex'),
    });
    await child.waitFor('ready', 15_000);
    await sleep(300);
    assert.equal(child.has('result'), false, 'child answered although C_Encrypt should hang');
    assert.equal(child.exited, false, `child exited while it should hang; stderr: ${child.stderr}`);

    const released = process.hrtime.bigint();
    childFault.pass();
    const result = await child.waitFor('result', 5_000);
    assert.ok(elapsedMs(released) < 5_000);
    assert.equal(result.ciphertextHex, gcmReference(keyValue, iv, aad, plaintext).toString('hex'));
    assert.ok(typeof result.ms === 'number' && result.ms >= 250, `child C_Encrypt took ${String(result.ms)} ms`);
  });

  it('a hung module can still be loaded and inspected (C_Initialize/C_GetSlotList/C_GetTokenInfo are not wrapped)', async () => {
    childFault.hang(['all']);
    const child = startChild({ scenario: 'inspect' });
    const result = await child.waitFor('result', 15_000);
    assert.ok(Array.isArray(result.labels) && result.labels.includes(LABEL), JSON.stringify(result));
    childFault.pass();
  });

  it('hang in a worker thread (C_EncryptAsync) is released by pass, or turned into an error', async () => {
    const plaintext = Buffer.from('async hang');
    const iv = randomBytes(12);
    fault.hang(['encrypt']);
    try {
      lib().C_EncryptInit(session, gcm(iv), key); // 'init' not selected: returns at once
      let settled = false;
      const pending = lib()
        .C_EncryptAsync(session, plaintext, Buffer.alloc(plaintext.length + 16))
        .finally(() => {
          settled = true;
        });
      await sleep(300);
      assert.equal(settled, false, 'C_EncryptAsync completed although encrypt should hang');
      fault.pass();
      assert.deepEqual(await pending, gcmReference(keyValue, iv, aad, plaintext));

      // hang -> error: the hung call continues as the new mode says.
      fault.hang(['encrypt']);
      lib().C_EncryptInit(session, gcm(iv), key);
      const failing = lib().C_EncryptAsync(session, plaintext, Buffer.alloc(plaintext.length + 16));
      await sleep(200);
      fault.error(CKR_DEVICE_ERROR, ['encrypt']);
      await assert.rejects(failing, (err: unknown) => {
        assert.ok(err instanceof Error);
        assert.equal(err.message, 'CKR_DEVICE_ERROR');
        assert.equal((err as Error & { code?: unknown }).code, 0x30);
        return true;
      });
    } finally {
      fault.pass();
    }
  });

  it('delays concurrent calls in parallel (the config lock is not held while sleeping)', async () => {
    const p = lib();
    const sessions = Array.from({ length: 3 }, () => p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION));
    try {
      const delayMs = 400;
      fault.delay(delayMs, ['encrypt']);
      const plaintext = Buffer.from('parallel');
      const ivs = sessions.map(() => randomBytes(12));
      sessions.forEach((s, i) => p.C_EncryptInit(s, gcm(ivs[i] ?? randomBytes(12)), key));
      const t = process.hrtime.bigint();
      const outs = await Promise.all(
        sessions.map((s) => p.C_EncryptAsync(s, plaintext, Buffer.alloc(plaintext.length + 16))),
      );
      const ms = elapsedMs(t);
      assert.ok(ms >= 0.8 * delayMs, `took ${ms} ms`);
      assert.ok(ms < 2 * delayMs, `3 delayed calls took ${ms} ms: they ran serially`);
      outs.forEach((out, i) => assert.deepEqual(out, gcmReference(keyValue, ivs[i] ?? Buffer.alloc(0), aad, plaintext)));
    } finally {
      fault.pass();
      for (const s of sessions) p.C_CloseSession(s);
    }
  });

  it('C_GetFunctionList fails with CKR_GENERAL_ERROR when FAULT_SHIM_MODULE is unset or bad', () => {
    for (const module of [undefined, join(dir, 'no-such-module.so')]) {
      const env: NodeJS.ProcessEnv = { ...childEnv(), FAULT_CHILD_ARGS: JSON.stringify({ scenario: 'load', shimPath }) };
      if (module === undefined) delete env.FAULT_SHIM_MODULE;
      else env.FAULT_SHIM_MODULE = module;
      const r = spawnSync(process.execPath, [CHILD_SCRIPT], { env, encoding: 'utf8', timeout: 15_000 });
      assert.equal(r.status, 1, `stdout: ${r.stdout} stderr: ${r.stderr}`);
      const ev = JSON.parse(r.stdout.trim()) as ChildEvent;
      // load() is not wrapped by pkcs11js' error mapping: plain Error, "NAME:code" message, no code.
      assert.equal(ev.event, 'error');
      assert.equal(ev.message, 'CKR_GENERAL_ERROR:5');
      assert.equal(ev.code, null);
      assert.match(r.stderr, module === undefined ? /FAULT_SHIM_MODULE is not set/ : /dlopen\(.*\) failed/);
    }
  });
});
