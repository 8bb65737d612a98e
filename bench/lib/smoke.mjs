// Smoke mode (`--smoke` or BENCH_SMOKE=1): every bench runs with its smallest durations, one
// round, unpinned, no quiet-machine wait, and writes its results file to a temporary folder
// instead of bench/results/. It exists so that the test suite (test/node/bench-smoke.test.ts)
// notices a bench that no longer starts; its figures mean nothing.
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const SMOKE = process.argv.slice(2).includes('--smoke') || process.env.BENCH_SMOKE === '1';

/** `--out` if given, else (smoke mode) `<new temporary folder>/<name>.json`, else `fallback`. */
export function resultsFile(out, name, fallback) {
  if (out) return path.resolve(out);
  if (SMOKE) return path.join(mkdtempSync(path.join(os.tmpdir(), 'bench-smoke-')), `${name}.json`);
  return fallback;
}
