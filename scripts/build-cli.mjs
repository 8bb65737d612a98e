// `npm run build:cli` (and `prepare`, so `npm ci` builds it): bundles the operator CLI into one
// self-contained file, dist/cli/credctl.mjs (Node >= 20, ESM, jose inlined), which
// bin/credctl.mjs runs. `--outdir DIR` writes elsewhere (tests build their own copy).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { NODE_BUNDLE } from './bundle-options.mjs';

// esbuild is a dev dependency: an install without them (npm ci --omit=dev) skips the CLI build
// instead of failing the whole install. Any other failure fails.
let build;
try {
  ({ build } = await import('esbuild'));
} catch (e) {
  if (e?.code !== 'ERR_MODULE_NOT_FOUND') throw e;
  console.warn('credctl: not built (esbuild is a dev dependency and is not installed)');
  process.exit(0);
}

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { outdir: { type: 'string' } } });
const outdir = values.outdir ? resolve(values.outdir) : `${root}dist/cli`;
const { version } = JSON.parse(readFileSync(`${root}package.json`, 'utf8'));

await build({
  entryPoints: { credctl: `${root}cli/main.ts` },
  outdir,
  ...NODE_BUNDLE,
  define: { CREDCTL_VERSION: JSON.stringify(version) },
});
console.log(`${values.outdir ? outdir : 'dist/cli'}/credctl.mjs`);
