// `npm run build:container`: bundles the container programs into single self-contained files
// under dist/container/ (Node >= 20, ESM, jose inlined), for the container image.
// `--outdir DIR` writes elsewhere (tests build their own copy).
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { NODE_BUNDLE, REQUIRE_BANNER } from './bundle-options.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { outdir: { type: 'string' } } });
const outdir = values.outdir ? resolve(values.outdir) : `${root}dist/container`;
// openclaw-reload: the change hook for an OpenClaw gateway (start.sh's default ON_CHANGE).
const entries = ['refresh', 'gateway-proxy', 'openclaw-reload'].filter((n) => existsSync(`${root}container/${n}.ts`));

await build({
  entryPoints: entries.map((n) => `${root}container/${n}.ts`),
  outdir,
  ...NODE_BUNDLE,
  // undici (the proxy's upstream client) is CommonJS and require()s Node built-ins.
  banner: REQUIRE_BANNER,
});
for (const n of entries) console.log(`${values.outdir ? outdir : 'dist/container'}/${n}.mjs`);
