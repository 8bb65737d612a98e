import { cloudflareTest } from '@cloudflare/vitest-pool-workers';
import { defineConfig } from 'vitest/config';
import { unstable_readConfig } from 'wrangler';

import { TEST_ADMIN_TOKEN, TEST_GATEWAY_TOKEN, TEST_KEK } from './test/secrets.js';

// The pool also loads a .dev.vars from the project root (the local stack writes one, with
// DEV_USER and GATEWAY_UPSTREAM set): the tests run against wrangler.toml's own vars instead.
const tomlVars = unstable_readConfig({ config: './wrangler.toml' }).vars as Record<string, string>;

/** The benches' smoke runs: each builds bundles and starts workerd at full speed (see the bench project). */
const BENCH_SMOKE = ['test/node/bench-smoke.test.ts'];
/** Test files that start the whole local stack with the real gateway (see the real-gateway project). */
const REAL_GATEWAY_STACKS = [
  'test/node/openclaw-chain.test.ts',
  'test/node/openclaw-rotation.test.ts',
  'test/node/dev-stack-openclaw.test.ts',
  // bench:chain's smoke run: the same stack, started by the bench.
  'test/node/bench-chain-smoke.test.ts',
];

export default defineConfig({
  test: {
    // Log lines of passing tests are noise in CI; a failing test shows its own.
    silent: 'passed-only',
    // Most test files wait on child processes, sockets and timers, not on a core: vitest's default
    // (cores - 1, one file at a time on a 2-core machine) left CI adding up every file's waits.
    maxWorkers: 3,
    projects: [
      {
        plugins: [
          cloudflareTest({
            main: './src/index.ts',
            wrangler: { configPath: './wrangler.toml' },
            miniflare: {
              bindings: {
                ...tomlVars,
                ADMIN_TOKEN: TEST_ADMIN_TOKEN,
                SIGNING_KEY_KEK: TEST_KEK,
                MOLTBOT_GATEWAY_TOKEN: TEST_GATEWAY_TOKEN,
              },
            },
          }),
        ],
        test: { name: 'worker', include: ['test/worker/**/*.test.ts'] },
      },
      {
        // Real processes on a shared machine, several files at once: 5 s is too tight for a test that
        // starts or waits on a child process; tests that need longer say so themselves.
        test: {
          name: 'node',
          include: ['test/container/**/*.test.ts', 'test/node/**/*.test.ts'],
          exclude: [...REAL_GATEWAY_STACKS, ...BENCH_SMOKE],
          environment: 'node',
          testTimeout: 30_000,
        },
      },
      {
        // The files that run a local stack with the real OpenClaw: each start takes tens of seconds of
        // both cores, which starved the timing-sensitive files beside them. They run after the
        // others (groupOrder), two at a time.
        test: {
          name: 'real-gateway',
          include: REAL_GATEWAY_STACKS,
          environment: 'node',
          testTimeout: 30_000,
          maxWorkers: 2,
          sequence: { groupOrder: 1 },
        },
      },
      {
        // The benches' smoke runs load both cores by design: they run last and alone, so they slow
        // no timing-sensitive file (a crash test and an outage test failed beside them under load).
        test: { name: 'bench', include: BENCH_SMOKE, environment: 'node', testTimeout: 30_000, maxWorkers: 1, sequence: { groupOrder: 2 } },
      },
    ],
  },
});
