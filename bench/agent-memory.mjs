#!/usr/bin/env node
// `npm run bench:agent-memory`: the agent's resident memory (goal: under 60 MB when idle).
// Starts the real Worker (wrangler dev, 10 s agent tokens so refreshes happen during the run),
// bootstraps a sandbox, runs the built agent (dist/container/refresh.mjs) and reads VmRSS/VmHWM
// from /proc: once idle after its first credential, and again after ~6 refreshes.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'agent-mem-'));
const children = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const port = () => new Promise((res) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); }); });
const status = (pid) => Object.fromEntries(readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').filter((l) => /^Vm(RSS|HWM)/.test(l)).map((l) => [l.split(':')[0], Math.round(Number(l.split(/\s+/)[1]) / 1024 * 10) / 10]));

async function cleanup() {
  for (const c of children.reverse()) if (c.exitCode === null) { c.kill('SIGINT'); await new Promise((r) => { c.once('exit', r); setTimeout(r, 5000); }); }
  rmSync(dir, { recursive: true, force: true });
}
process.on('SIGINT', () => cleanup().then(() => process.exit(130)));

try {
  execFileSync(process.execPath, [join(root, 'scripts/build-container.mjs')], { stdio: 'ignore' });
  const wport = await port();
  const admin = randomBytes(32).toString('base64url');
  const vars = { ISSUER: `http://127.0.0.1:${wport}`, ADMIN_TOKEN: admin, MOLTBOT_GATEWAY_TOKEN: randomBytes(32).toString('base64url'), AGENT_TOKEN_TTL: '10s', ACCESS_TOKEN_TTL: '10s', JWKS_MAX_AGE: '5s', CLOCK_SKEW: '5s', ROTATION_PERIOD: '120s' };
  const w = spawn(join(root, 'node_modules/.bin/wrangler'), ['dev', '--ip', '127.0.0.1', '--port', String(wport), '--persist-to', join(dir, 'state'), '--show-interactive-dev-session=false', ...Object.entries(vars).flatMap(([k, v]) => ['--var', `${k}:${v}`])], { cwd: root, stdio: 'ignore', env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false' } });
  children.push(w);
  for (let i = 0; ; i++) { try { if ((await fetch(`http://127.0.0.1:${wport}/.well-known/jwks.json`)).ok) break; } catch {} if (i > 300) throw new Error('wrangler dev did not start'); await sleep(100); }
  const boot = await fetch(`http://127.0.0.1:${wport}/api/admin/sandboxes/mem/bootstrap`, { method: 'POST', headers: { Authorization: `Bearer ${admin}` } });
  writeFileSync(join(dir, 'boot.json'), await boot.text(), { mode: 0o600 });
  const aport = await port();
  const agent = spawn(process.execPath, [...(process.env.AGENT_NODE_FLAGS ?? '').split(' ').filter(Boolean), join(root, 'dist/container/refresh.mjs'), '--bootstrap-key', join(dir, 'boot.json'), '--dir', join(dir, 'out'), '--port', String(aport)], { stdio: 'ignore' });
  children.push(agent);
  for (let i = 0; !existsSync(join(dir, 'out', 'credentials.json')); i++) { if (i > 200) throw new Error('no first credential'); await sleep(100); }
  await sleep(3000);
  const idle = status(agent.pid);
  await sleep(30_000);
  const metrics = await (await fetch(`http://127.0.0.1:${aport}/metrics`)).text();
  const refreshes = Number(/refreshes_total\{result="ok"\} (\d+)/.exec(metrics)?.[1]);
  const later = status(agent.pid);
  const result = { node: process.version, idle_rss_mb: idle.VmRSS, after_refreshes: refreshes, rss_after_mb: later.VmRSS, peak_rss_mb: later.VmHWM, goal_mb: 60, meets_goal: idle.VmRSS < 60 && later.VmRSS < 60 };
  console.log(`agent resident memory: idle ${idle.VmRSS} MB; after ${refreshes} refreshes ${later.VmRSS} MB (peak ${later.VmHWM} MB); goal < 60 MB idle: ${result.meets_goal ? 'met' : 'NOT met'}`);
  console.log(JSON.stringify(result));
} finally {
  await cleanup();
}
