#!/usr/bin/env node
// `npm run dev`: serve the issuer locally in workerd (wrangler dev, http://127.0.0.1:8787).
// On first run it writes .dev.vars from keys.example, with a fresh random value for every
// placeholder secret; it never overwrites an existing .dev.vars. Extra arguments go to wrangler.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const devVars = `${root}.dev.vars`;

if (!existsSync(devVars)) {
  const lines = readFileSync(`${root}keys.example`, 'utf8').split('\n');
  const out = lines.map((line) => {
    const m = /^([A-Z][A-Z0-9_]*)=(replace-me.*)$/.exec(line);
    return m ? `${m[1]}=${randomBytes(32).toString('base64url')}` : line;
  });
  writeFileSync(devVars, out.join('\n'), { mode: 0o600, flag: 'wx' });
  console.log('wrote .dev.vars with fresh random secrets (ADMIN_TOKEN is in it)');
}

const child = spawn(`${root}node_modules/.bin/wrangler`, ['dev', ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
  env: { WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', ...process.env },
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
