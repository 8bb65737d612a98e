import { cloudflareTest } from '@cloudflare/vitest-pool-workers';
import { defineConfig } from 'vitest/config';

/** Test-only secrets, generated for tests and never used anywhere else. */
export const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789abcdef0123456789';
export const TEST_KEK = 'test-kek-0123456789abcdef0123456789abcdef';

export default defineConfig({
  test: {
    projects: [
      {
        plugins: [
          cloudflareTest({
            main: './src/index.ts',
            wrangler: { configPath: './wrangler.toml' },
            miniflare: { bindings: { ADMIN_TOKEN: TEST_ADMIN_TOKEN, SIGNING_KEY_KEK: TEST_KEK } },
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
