#!/usr/bin/env node
// credctl, the operator CLI (`npx credctl --help`). The program is the bundle that
// `npm run build:cli` writes (`npm ci` builds it through `prepare`); sources are in cli/.
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/cli/credctl.mjs', import.meta.url);
if (!existsSync(bundle)) {
  process.stderr.write('credctl: not built; run npm run build:cli\n');
  process.exit(2);
}
await import(bundle.href);
