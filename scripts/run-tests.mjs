#!/usr/bin/env node
// Runs the compiled test suite: unit tests, then integration tests, then the
// secrets-in-logs check over everything the run logged.
//   node scripts/run-tests.mjs                 the whole suite
//   node scripts/run-tests.mjs sigv4 encrypt   only files whose path contains one of the words
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..');
const testRoot = join(root, 'dist', 'test');
const output = process.env['HYOK_TEST_OUTPUT'] ?? join(root, 'test-output');
const filters = process.argv.slice(2);
const FINAL = join(testRoot, 'final', 'secrets-in-logs.test.js');

function collect(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return collect(path);
    return name.endsWith('.test.js') ? [path] : [];
  });
}

function run(files, concurrency) {
  if (files.length === 0) return 0;
  const result = spawnSync(
    process.execPath,
    ['--test', `--test-concurrency=${concurrency}`, '--test-timeout=300000', '--test-reporter=spec', ...files],
    { stdio: 'inherit', env: { ...process.env, HYOK_TEST_OUTPUT: output } },
  );
  return result.status ?? 1;
}

rmSync(output, { recursive: true, force: true });
mkdirSync(join(output, 'logs'), { recursive: true });
mkdirSync(join(output, 'secrets'), { recursive: true });

const build = spawnSync('bash', [join(root, 'scripts', 'build-fault-shim.sh')], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

const all = collect(testRoot).filter((file) => file !== FINAL).sort();
const selected = filters.length === 0 ? all : all.filter((file) => filters.some((word) => relative(testRoot, file).includes(word)));
if (selected.length === 0) {
  console.error(`no test file matches ${filters.join(', ')}`);
  process.exit(1);
}
const unit = selected.filter((file) => file.includes(`${join('test', 'unit')}`));
// The drills run their own HSM processes, proxy and steady traffic: alone, so they and the rest do not starve each other.
const drills = selected.filter((file) => file.includes(`${join('integration', 'drill')}`));
const integration = selected.filter((file) => !unit.includes(file) && !drills.includes(file));

// Every stage runs even after a failure, so one red file does not hide the rest. The log search needs
// proxies to have run, so it follows the integration tests (all of them, or the ones selected).
const results = [run(unit, 2), run(integration, 2), run(drills, 1), integration.length + drills.length > 0 ? run([FINAL], 1) : 0];
process.exit(results.some((status) => status !== 0) ? 1 : 0);
