import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

let cachedRoot: string | undefined;

/** The package root (the directory holding package.json), whether running from src/ via a loader or from dist/. */
export function projectRoot(): string {
  if (cachedRoot !== undefined) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'contracts'))) {
      cachedRoot = dir;
      return dir;
    }
    const parent = resolve(dir, '..');
    if (parent === dir) throw new Error('hyok-proxy: cannot locate the package root (package.json + contracts/)');
    dir = parent;
  }
}

export function fromRoot(...segments: string[]): string {
  return join(projectRoot(), ...segments);
}
