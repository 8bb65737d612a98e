#!/usr/bin/env node
// `npm run bench:agent-memory`: the agent's resident memory (goal: under 60 MB when idle).
// Starts the real Worker (wrangler dev, 10 s agent tokens so refreshes happen during the run),
// bootstraps a sandbox, runs the built agent (dist/container/refresh.mjs) and reads VmRSS/VmHWM
// from /proc: once idle after its first credential, and again after ~6 refreshes.
//
//   --out FILE  also write the figures as JSON
//   --smoke     (also BENCH_SMOKE=1) the smallest run, to check that the bench starts: the agent is
//               built into the temporary folder (not dist/container), read 0.5 s after its first
//               credential, then once more right after one refresh asked through its POST /refresh
//               instead of 30 s of refreshes; figures to a temporary folder unless --out.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { resultsFile, SMOKE } from './lib/smoke.mjs';

const { values: a } = parseArgs({ options: { out: { type: 'string' }, smoke: { type: 'boolean', default: false } } });
const root = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'agent-mem-'));
const children = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const port = () =>
  new Promise((res) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => res(p));
    });
  });
const status = (pid) =>
  Object.fromEntries(
    readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .filter((l) => /^Vm(RSS|HWM)/.test(l))
      .map((l) => [l.split(':')[0], Math.round((Number(l.split(/\s+/)[1]) / 1024) * 10) / 10]),
  );

async function cleanup() {
  for (const c of children.reverse()) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    c.kill('SIGINT');
    const exited = await new Promise((r) => {
      c.once('exit', () => r(true));
      setTimeout(() => r(false), 5000);
    });
    if (!exited) c.kill('SIGKILL');
  }
  rmSync(dir, { recursive: true, force: true });
}
for (const [sig, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
])
  process.on(sig, () => cleanup().then(() => process.exit(code)));

const tail = (file) => {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-20).join('\n');
  } catch {
    return '(no log)';
  }
};

try {
  // Smoke mode builds into the temporary folder: the tree stays as it is, and a dist/container
  // in use by something else is not rewritten under it.
  const containerDir = SMOKE ? join(dir, 'container') : join(root, 'dist/container');
  execFileSync(process.execPath, [join(root, 'scripts/build-container.mjs'), ...(SMOKE ? ['--outdir', containerDir] : [])], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const wport = await port();
  const admin = randomBytes(32).toString('base64url');
  const vars = {
    ISSUER: `http://127.0.0.1:${wport}`,
    ADMIN_TOKEN: admin,
    MOLTBOT_GATEWAY_TOKEN: randomBytes(32).toString('base64url'),
    AGENT_TOKEN_TTL: '10s',
    ACCESS_TOKEN_TTL: '10s',
    JWKS_MAX_AGE: '5s',
    CLOCK_SKEW: '5s',
    ROTATION_PERIOD: '120s',
  };
  // wrangler's and the agent's output go to files in the temporary folder, shown if they fail.
  const wlog = join(dir, 'wrangler.log');
  const wfd = openSync(wlog, 'w');
  const w = spawn(
    join(root, 'node_modules/.bin/wrangler'),
    [
      'dev',
      '--ip',
      '127.0.0.1',
      '--port',
      String(wport),
      '--persist-to',
      join(dir, 'state'),
      '--show-interactive-dev-session=false',
      ...Object.entries(vars).flatMap(([k, v]) => ['--var', `${k}:${v}`]),
    ],
    {
      cwd: root,
      stdio: ['ignore', wfd, wfd],
      env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false' },
    },
  );
  closeSync(wfd);
  children.push(w);
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${wport}/.well-known/jwks.json`)).ok) break;
    } catch {}
    if (w.exitCode !== null || i > 300)
      throw new Error(`wrangler dev did not start${w.exitCode !== null ? ` (exit ${w.exitCode})` : ''}:\n${tail(wlog)}`);
    await sleep(100);
  }
  const boot = await fetch(`http://127.0.0.1:${wport}/api/admin/sandboxes/mem/bootstrap`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${admin}` },
  });
  if (!boot.ok) throw new Error(`bootstrap answered ${boot.status}: ${(await boot.text()).slice(0, 200)}`);
  writeFileSync(join(dir, 'boot.json'), await boot.text(), { mode: 0o600 });
  const aport = await port();
  const alog = join(dir, 'agent.log');
  const afd = openSync(alog, 'w');
  const agent = spawn(
    process.execPath,
    [
      ...(process.env.AGENT_NODE_FLAGS ?? '').split(' ').filter(Boolean),
      join(containerDir, 'refresh.mjs'),
      '--bootstrap-key',
      join(dir, 'boot.json'),
      '--dir',
      join(dir, 'out'),
      '--port',
      String(aport),
    ],
    { stdio: ['ignore', afd, afd] },
  );
  closeSync(afd);
  children.push(agent);
  for (let i = 0; !existsSync(join(dir, 'out', 'credentials.json')); i++) {
    if (agent.exitCode !== null || i > 200)
      throw new Error(`no first credential${agent.exitCode !== null ? ` (the agent exited ${agent.exitCode})` : ''}:\n${tail(alog)}`);
    await sleep(100);
  }
  await sleep(SMOKE ? 500 : 3000);
  const idle = status(agent.pid);
  if (SMOKE) {
    // One refresh now (the push the Worker sends into a sandbox) instead of 30 s of them.
    const nudge = await fetch(`http://127.0.0.1:${aport}/refresh`, { method: 'POST' });
    if (!nudge.ok) throw new Error(`POST /refresh answered ${nudge.status}: ${(await nudge.text()).slice(0, 200)}`);
    await nudge.arrayBuffer();
  } else {
    await sleep(30_000);
  }
  const metrics = await (await fetch(`http://127.0.0.1:${aport}/metrics`)).text();
  const refreshes = Number(/refreshes_total\{result="ok"\} (\d+)/.exec(metrics)?.[1]);
  const later = status(agent.pid);
  const result = {
    node: process.version,
    smoke: SMOKE,
    idle_rss_mb: idle.VmRSS,
    after_refreshes: refreshes,
    rss_after_mb: later.VmRSS,
    peak_rss_mb: later.VmHWM,
    goal_mb: 60,
    meets_goal: idle.VmRSS < 60 && later.VmRSS < 60,
  };
  if (SMOKE) console.log('smoke mode: a check that the bench starts and measures; these figures mean nothing');
  console.log(
    `agent resident memory: idle ${idle.VmRSS} MB; after ${refreshes} refreshes ${later.VmRSS} MB (peak ${later.VmHWM} MB); goal < 60 MB idle: ${result.meets_goal ? 'met' : 'NOT met'}`,
  );
  console.log(JSON.stringify(result));
  const missing = ['idle_rss_mb', 'rss_after_mb', 'peak_rss_mb'].filter((k) => !(result[k] > 0));
  if (!(refreshes >= 1)) missing.push('after_refreshes');
  if (missing.length) throw new Error(`figures missing: ${missing.join(', ')}`);
  const out = resultsFile(a.out, 'agent-memory', null);
  if (out) {
    writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), ...result }, null, 2)}\n`);
    console.log(`figures: ${out}`);
  }
} catch (e) {
  console.error(`[bench] FAIL: ${e.stack ?? e}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
