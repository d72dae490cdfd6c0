/**
 * Test helper for the PKCS#11 fault-injection shim
 * (test/fixtures/pkcs11-fault-shim/fault_shim.c, built by scripts/build-fault-shim.sh).
 *
 * Usage:
 *   process.env.FAULT_SHIM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
 *   process.env.FAULT_SHIM_CONTROL = controlFile;   // before PKCS11#load()
 *   const fault = new FaultControl(controlFile);
 *   p11.load(faultShimPath());
 *   fault.hang(['encrypt']); ... fault.pass();
 *
 * The shim re-reads the control file (cheaply, by stat) on every wrapped call,
 * so changes take effect immediately, also for calls that are already hung.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type FaultOp = 'encrypt' | 'decrypt' | 'random' | 'init' | 'find' | 'session' | 'all';

/** CK_RV values handy for FaultControl#error(). */
export const CKR_GENERAL_ERROR = 0x05;
export const CKR_DEVICE_ERROR = 0x30;
export const CKR_DEVICE_MEMORY = 0x31;
export const CKR_DEVICE_REMOVED = 0x32;
export const CKR_SESSION_HANDLE_INVALID = 0xb3;
export const CKR_TOKEN_NOT_PRESENT = 0xe0;

const SHIM_SO = join('dist', 'native', 'libpkcs11-fault-shim.so');
const SHIM_SRC = join('test', 'fixtures', 'pkcs11-fault-shim', 'fault_shim.c');
const BUILD_SCRIPT = join('scripts', 'build-fault-shim.sh');

/** Repository root: the nearest ancestor holding scripts/build-fault-shim.sh (works from test/ and dist/test/). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, BUILD_SCRIPT)) && existsSync(join(dir, 'package.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`fault-shim: cannot find ${BUILD_SCRIPT} above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

function mtimeMs(path: string): number | undefined {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

/**
 * Absolute path of the built shim library. Builds it synchronously (via
 * scripts/build-fault-shim.sh) when it is missing or older than its source.
 */
export function faultShimPath(): string {
  const root = repoRoot();
  const so = join(root, SHIM_SO);
  const soTime = mtimeMs(so);
  const srcTime = mtimeMs(join(root, SHIM_SRC));
  if (soTime === undefined || (srcTime !== undefined && srcTime > soTime)) {
    execFileSync('bash', [join(root, BUILD_SCRIPT)], { stdio: ['ignore', 'inherit', 'inherit'] });
    if (!existsSync(so)) throw new Error(`fault-shim: build did not produce ${so}`);
  }
  return so;
}

let tmpCounter = 0;

/** Writes the shim's control file atomically (temp file + rename). */
export class FaultControl {
  readonly file: string;

  constructor(file: string) {
    this.file = file;
  }

  /** Forward every call untouched. */
  pass(): void {
    this.write(['mode=pass']);
  }

  /** Block matching calls until the mode changes (e.g. pass() releases them). */
  hang(ops: FaultOp[] = ['all']): void {
    this.write(['mode=hang', `ops=${FaultControl.opList(ops)}`]);
  }

  /** Sleep `ms` before forwarding matching calls. */
  delay(ms: number, ops: FaultOp[] = ['all']): void {
    if (!Number.isInteger(ms) || ms < 0) throw new RangeError(`delay ms must be a non-negative integer, got ${ms}`);
    this.write(['mode=delay', `delay_ms=${ms}`, `ops=${FaultControl.opList(ops)}`]);
  }

  /** Return CK_RV `ckr` (e.g. 0x30 CKR_DEVICE_ERROR) from matching calls without forwarding them. */
  error(ckr: number, ops: FaultOp[] = ['all']): void {
    if (!Number.isInteger(ckr) || ckr <= 0 || ckr > 0xffffffff) {
      throw new RangeError(`ckr must be a non-zero CK_RV, got ${ckr}`);
    }
    this.write(['mode=error', `ckr=0x${ckr.toString(16)}`, `ops=${FaultControl.opList(ops)}`]);
  }

  /** Delete the control file (the shim then passes everything through). */
  remove(): void {
    try {
      unlinkSync(this.file);
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  private static opList(ops: FaultOp[]): string {
    if (ops.length === 0) throw new RangeError('ops must name at least one op (or use ["all"])');
    return ops.join(',');
  }

  private write(lines: string[]): void {
    const tmp = `${this.file}.${process.pid}.${++tmpCounter}.tmp`;
    writeFileSync(tmp, `${lines.join('\n')}\n`);
    renameSync(tmp, this.file);
  }
}
