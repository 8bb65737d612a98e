/**
 * Style and dead code are checked with the suite, so CI fails on them: Biome (formatting and lint
 * rules, biome.jsonc) and knip (unused files, exports and dependencies, knip.jsonc). Both read the
 * tracked tree; `npm run format` fixes what Biome can fix by itself.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { ROOT } from './worker-process.js';

function run(bin: string, args: string[]): { status: number | null; output: string } {
  const r = spawnSync(join(ROOT, 'node_modules', '.bin', bin), args, {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
  });
  return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

it('biome ci: every file formatted, no lint error', () => {
  const r = run('biome', ['ci', '.']);
  expect(r.status, r.output).toBe(0);
}, 130_000);

it('knip: no unused file, export, type or dependency', () => {
  const r = run('knip', []);
  expect(r.status, r.output).toBe(0);
}, 130_000);
