/**
 * The CLI's version: the package's. The bundle gets it inlined at build time (scripts/build-cli.mjs
 * defines CREDCTL_VERSION); from source (`npm run cli`) it is read from the package.json next to
 * cli/. A JSON import would do both, but the source runner's TypeScript hook drops import attributes.
 */
import { readFileSync } from 'node:fs';

declare const CREDCTL_VERSION: string | undefined;

export function version(): string {
  if (typeof CREDCTL_VERSION === 'string') return CREDCTL_VERSION;
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}
