import { cloudflareTest } from '@cloudflare/vitest-pool-workers';
import { defineConfig } from 'vitest/config';

import { TEST_ADMIN_TOKEN, TEST_GATEWAY_TOKEN, TEST_KEK } from './test/secrets.js';

export default defineConfig({
  test: {
    // Log lines of passing tests are noise in CI; a failing test shows its own.
    silent: 'passed-only',
    projects: [
      {
        plugins: [
          cloudflareTest({
            main: './src/index.ts',
            wrangler: { configPath: './wrangler.toml' },
            miniflare: { bindings: { ADMIN_TOKEN: TEST_ADMIN_TOKEN, SIGNING_KEY_KEK: TEST_KEK, MOLTBOT_GATEWAY_TOKEN: TEST_GATEWAY_TOKEN } },
          }),
        ],
        test: { name: 'worker', include: ['test/worker/**/*.test.ts'] },
      },
      {
        test: { name: 'node', include: ['test/container/**/*.test.ts', 'test/node/**/*.test.ts'], environment: 'node' },
      },
    ],
  },
});
