// `npm run build`: the Worker bundle into dist/worker (wrangler deploy --dry-run), without the
// container image: with [[containers]] the dry run would also build ./Dockerfile, which needs a
// Docker engine. The image is built by `wrangler deploy` on a machine that has one.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const config = readFileSync(`${root}wrangler.toml`, 'utf8');
// Drop each [[containers]] table: from its header to the next table header.
const withoutContainers = config.replace(/^\[\[containers\]\][\s\S]*?(?=^\[)/gm, '');
const temp = `${root}.wrangler-build.toml`;
writeFileSync(temp, withoutContainers);
try {
  const r = spawnSync(
    `${root}node_modules/.bin/wrangler`,
    ['deploy', '--dry-run', '--outdir', process.argv[2] ?? 'dist/worker', '--config', temp],
    {
      cwd: root,
      stdio: 'inherit',
      env: { WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', ...process.env },
    },
  );
  process.exitCode = r.status ?? 1;
} finally {
  rmSync(temp, { force: true });
}
