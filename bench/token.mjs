#!/usr/bin/env node
// `npm run bench:token`: throughput and latency of our token endpoint (the Worker bundle served by
// workerd) against the oidc-provider peer, both driven by the shared loadgen.mjs, one core each.
// See bench/README.md.
import { execFileSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { othersOnCore } from './lib/cpu.mjs';
import { harnessSource, linkHarness, packageVersion, prepareHarness, runLoadgen, startPeer } from './lib/harness.mjs';
import { installSignalHandlers, PINNED, shuttingDown, stop, stopAll } from './lib/processes.mjs';
import { caveats, oursProblems, ratios, summarize, table } from './lib/report.mjs';
import { resultsFile, SMOKE } from './lib/smoke.mjs';
import { buildBundle, startWorkerd, tail, workerBindings, writeConfig } from './lib/workerd.mjs';

const CLIENT_ID = 'bench-agent';
const PEER_STORES = ['default', 'large'];
const USAGE = `usage: npm run bench:token -- [options]
  --duration S       timed phase per run, seconds (10)
  --warmup S         warm-up before each run, seconds (2)
  --connections N    concurrent connections, one request in flight each (32)
  --runs N           loadgen runs per target (1)
  --skip-peer        measure ours only
  --peer-stores L    oidc-provider stores to measure: default,large (both)
  --skip-ours        measure the peer only (for testing the bench itself)
  --bundle DIR       serve this already built bundle instead of building one
  --storage-dir DIR  put the Durable Objects' SQLite files under DIR (e.g. /dev/shm) instead of
                     the temporary folder (os.tmpdir())
  --out FILE         results file (bench/results/token-<date>.json)
  --keep-tmp         keep the temporary folder (logs, generated config)
  --smoke            smallest run, to check that the bench starts (also BENCH_SMOKE=1): ours only,
                     1 s of load without warm-up, 4 connections, unpinned, loadgen with the project's
                     node_modules (no npm ci); results to a temporary folder unless --out.
                     --peer-stores adds the peer (and the harness's npm ci). See bench/README.md
env: PEER_BENCH_DIR  the shared harness (default: <project>/../shared/bench/token-endpoint)`;

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const log = (...m) => console.error('[bench]', ...m);

// Smoke mode measures ours only: the peer (oidc-provider) comes from the harness's own `npm ci`,
// which needs the npm registry, so it runs only when --peer-stores is given. Flags given win.
const DEFAULTS = { duration: '10', warmup: '2', connections: '32', runs: '1', 'peer-stores': PEER_STORES.join(',') };
const SMOKE_DEFAULTS = { duration: '1', warmup: '0', connections: '4', runs: '1', 'peer-stores': '' };
const { values: given } = parseArgs({
  options: {
    ...Object.fromEntries(Object.keys(DEFAULTS).map((k) => [k, { type: 'string' }])),
    'skip-peer': { type: 'boolean', default: false },
    'skip-ours': { type: 'boolean', default: false },
    bundle: { type: 'string' },
    'storage-dir': { type: 'string' },
    out: { type: 'string' },
    'keep-tmp': { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
const a = { ...(SMOKE ? SMOKE_DEFAULTS : DEFAULTS), ...given };
if (a.help) {
  console.log(USAGE);
  process.exit(0);
}
const opts = {
  duration: positive('duration', a.duration),
  warmup: Number(a.warmup),
  connections: positive('connections', a.connections),
  runs: positive('runs', a.runs),
  stores: a['skip-peer']
    ? []
    : a['peer-stores']
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
};
for (const s of opts.stores) if (!PEER_STORES.includes(s)) usage(`unknown peer store: ${s}`);
if (!(opts.warmup >= 0)) usage('--warmup must be a number >= 0');

function positive(name, v) {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) usage(`--${name} must be a positive integer`);
  return n;
}
function usage(message) {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer()
      .once('error', reject)
      .listen(0, '127.0.0.1', () => {
        const { port } = srv.address();
        srv.close(() => resolve(port));
      });
  });
}

/** One loadgen run (on CPU 1) against the server `serverPid` (on CPU 0), with others' use of CPU 0. */
async function loadgenRun(harnessDir, target, serverPid) {
  const others = PINNED ? await othersOnCore(0, serverPid) : async () => null;
  const report = await runLoadgen(
    harnessDir,
    [
      ...target,
      '--duration',
      String(opts.duration),
      '--connections',
      String(opts.connections),
      '--warmup',
      String(opts.warmup),
      '--server-pid',
      String(serverPid),
      // A 1 s smoke run issues a few hundred tokens: verify a tenth of them, so that some are.
      ...(SMOKE ? ['--sample-rate', '0.1'] : []),
    ],
    opts,
  );
  report.other_processes_on_server_core_pct = await others();
  return report;
}

/** POST /api/admin/sandboxes/bench-agent/bootstrap: the client's private JWK, or an explanation. */
async function bootstrap(origin, adminToken, warnings) {
  const res = await fetch(`${origin}/api/admin/sandboxes/${CLIENT_ID}/bootstrap`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}` },
  });
  const text = await res.text();
  if (res.status !== 200) {
    const hint = res.status === 404 ? ' (route missing?)' : '';
    throw new Error(`bootstrap answered ${res.status}${hint}: ${text.slice(0, 200)}`);
  }
  const body = JSON.parse(text);
  const key = body.key;
  if (key?.kty !== 'OKP' || key.crv !== 'Ed25519' || typeof key.d !== 'string') {
    throw new Error('bootstrap answer has no private Ed25519 JWK in `key`');
  }
  const expected = { client_id: CLIENT_ID, issuer: origin, token_endpoint: `${origin}/oauth/token` };
  for (const [k, v] of Object.entries(expected)) {
    if (body[k] !== v) warnings.push(`bootstrap: ${k} is ${JSON.stringify(body[k])}, expected ${JSON.stringify(v)}`);
  }
  if (!key.kid) warnings.push('bootstrap: the key has no kid');
  return key;
}

async function measureOurs(tmp, harnessDir, warnings, harnessError) {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const bindings = await workerBindings(projectRoot, origin);
  const configFile = await writeConfig({ dir: tmp, bundleName: 'bundle', port, bindings, storageDir });
  const logFile = path.join(tmp, 'workerd.log');
  const server = await startWorkerd({ projectRoot, dir: tmp, configFile, origin, logFile });
  log(`ours: workerd up (pid ${server.pid}) at ${origin}`);
  const reports = [];
  try {
    const key = await bootstrap(origin, bindings.ADMIN_TOKEN, warnings);
    const keyFile = path.join(tmp, 'ours-client-key.jwk');
    await writeFile(keyFile, `${JSON.stringify(key)}\n`, { mode: 0o600 });
    log(`ours: client ${CLIENT_ID} bootstrapped`);
    if (harnessError) throw new Error(harnessError);
    for (let i = 1; i <= opts.runs; i++) {
      log(`ours: run ${i}/${opts.runs}`);
      reports.push(
        await loadgenRun(
          harnessDir,
          [
            '--url',
            `${origin}/oauth/token`,
            '--aud',
            origin,
            '--client-id',
            CLIENT_ID,
            '--key',
            keyFile,
            '--jwks',
            `${origin}/.well-known/jwks.json`,
          ],
          server.pid,
        ),
      );
    }
    return reports;
  } finally {
    await stop(server);
    if (reports.some((r) => Object.keys(r.errors).length || Object.keys(r.non_2xx).length)) {
      console.error(`[bench] ours had failed requests; end of the workerd log:\n${await tail(logFile)}`);
    }
  }
}

async function measurePeer(tmp, harnessDir, store) {
  const port = await freePort();
  const { child, info } = await startPeer(harnessDir, {
    port,
    store,
    keyOut: path.join(tmp, `peer-client-key-${store}.jwk`),
    logFile: path.join(tmp, `peer-${store}.log`),
  });
  log(`peer (store ${store}): up (pid ${child.pid}) at ${info.issuer}`);
  try {
    const reports = [];
    for (let i = 1; i <= opts.runs; i++) {
      log(`peer (store ${store}): run ${i}/${opts.runs}`);
      reports.push(
        await loadgenRun(
          harnessDir,
          ['--url', info.token_endpoint, '--aud', info.aud, '--client-id', info.client_id, '--key', info.key_file, '--jwks', info.jwks_uri],
          child.pid,
        ),
      );
    }
    return reports;
  } finally {
    await stop(child);
  }
}

function gitState() {
  try {
    const git = (...args) => execFileSync('git', args, { cwd: projectRoot, encoding: 'utf8' }).trim();
    const changed = git('status', '--porcelain', '--', 'src', 'wrangler.toml', 'package.json', 'package-lock.json');
    return { commit: git('rev-parse', 'HEAD'), uncommitted_changes_in_src: changed !== '' };
  } catch {
    return null;
  }
}

async function main(tmp) {
  const started = Date.now();
  const harnessDir = path.join(tmp, 'harness');
  const src = harnessSource(projectRoot);
  log(`temporary folder ${tmp}; harness from ${path.relative(projectRoot, src) || src}`);
  const warnings = [];
  let bundleSource = 'skipped';
  // Smoke mode: without the shared harness (it lives outside the project, e.g. not next to a fresh
  // clone), ours is still built, started and bootstrapped, and then fails as not measured.
  let harnessError = null;
  await Promise.all([
    (SMOKE && !opts.stores.length
      ? linkHarness(src, harnessDir, path.join(projectRoot, 'node_modules')).then((notes) => warnings.push(...notes))
      : prepareHarness(src, harnessDir, path.join(tmp, 'npm-ci.log'))
    ).catch((e) => {
      if (!SMOKE) throw e;
      harnessError = e.message;
    }),
    (async () => {
      if (a['skip-ours']) return;
      const out = path.join(tmp, 'bundle');
      if (a.bundle) {
        await cp(path.resolve(a.bundle), out, { recursive: true });
        bundleSource = 'prebuilt (--bundle)';
      } else {
        const code = await buildBundle(projectRoot, out, path.join(tmp, 'build.log'));
        if (code !== 0) warnings.push(`wrangler dry run exited with ${code}; its bundle was written and is used`);
        bundleSource = 'wrangler deploy --dry-run';
      }
    })(),
  ]);
  log(`harness ${harnessError ? 'MISSING' : 'ready'}, bundle ${bundleSource} (${((Date.now() - started) / 1000).toFixed(1)} s)`);

  const targets = [];
  let ours = null;
  if (!a['skip-ours']) {
    try {
      ours = { label: 'ours', reports: await measureOurs(tmp, harnessDir, warnings, harnessError) };
    } catch (e) {
      ours = { label: 'ours', error: e.message };
      if (!shuttingDown()) log(`ours: not measured: ${e.message}`);
    }
    targets.push(ours);
  }
  const peers = {};
  for (const store of opts.stores) {
    const label = `oidc-provider (${store})`;
    try {
      if (harnessError) throw new Error(harnessError);
      peers[store] = { label, reports: await measurePeer(tmp, harnessDir, store) };
    } catch (e) {
      peers[store] = { label, error: e.message };
      if (!shuttingDown()) log(`${label}: not measured: ${e.message}`);
    }
    targets.push(peers[store]);
  }

  // Interrupted (Ctrl-C): the measurements above were cut short, so print and write nothing.
  if (shuttingDown()) return false;
  const summary = (t) => (t?.reports ? summarize(t.reports) : null);
  const problems = ours?.error ? [`ours not measured: ${ours.error}`] : ours ? oursProblems(ours.reports) : [];
  for (const p of Object.values(peers)) if (p.error) problems.push(`${p.label} not measured: ${p.error}`);
  if (!targets.length) problems.push('nothing measured (--skip-ours without a peer store)');
  for (const t of targets) {
    if (t.reports?.some((r) => !(r.ok_per_s > 0))) problems.push(`${t.label}: no tokens/s figure (no token issued in a run)`);
  }
  const notes = targets.flatMap((t) => (t.reports ? caveats(t.label, t.reports) : []));
  const ratioByStore = Object.fromEntries(Object.entries(peers).map(([s, p]) => [s, ratios(summary(ours), summary(p))]));

  console.log(
    `\nToken endpoint, client_credentials + private_key_jwt (EdDSA): ${opts.connections} connections, ` +
      `${opts.warmup} s warm-up + ${opts.duration} s, ${opts.runs} run(s); ` +
      `${PINNED ? 'server on CPU 0, load generator on CPU 1' : SMOKE ? 'not pinned (smoke mode)' : 'NOT pinned (no taskset or one CPU)'}\n`,
  );
  if (SMOKE) console.log('smoke mode: a check that the bench starts and measures; these figures mean nothing\n');
  console.log(table(targets));
  console.log('');
  for (const [store, r] of Object.entries(ratioByStore)) {
    if (r) console.log(`ours / oidc-provider (${store}): throughput x${r.throughput}, p90 latency x${r.p90}`);
  }
  for (const n of [...warnings, ...notes]) console.log(`note: ${n}`);
  for (const p of problems) console.log(`FAIL: ${p}`);

  const date = new Date().toISOString();
  const outFile = resultsFile(a.out, 'token', path.join(projectRoot, 'bench', 'results', `token-${date.slice(0, 10)}.json`));
  const version = async (name) => {
    try {
      return JSON.parse(await readFile(path.join(projectRoot, 'node_modules', name, 'package.json'), 'utf8')).version;
    } catch {
      return null;
    }
  };
  const result = {
    bench: 'token endpoint: grant_type=client_credentials, private_key_jwt (EdDSA) client assertion, JWT access token',
    date,
    smoke: SMOKE,
    git: gitState(),
    machine: {
      cpu: os.cpus()[0]?.model,
      cpus: os.cpus().length,
      mem_gib: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
    },
    packages: {
      workerd: await version('workerd'),
      wrangler: await version('wrangler'),
      'oidc-provider': await packageVersion(harnessDir, 'oidc-provider'),
      'loadgen jose': await packageVersion(harnessDir, 'jose'),
      'loadgen undici': await packageVersion(harnessDir, 'undici'),
    },
    method: {
      runs: opts.runs,
      duration_s: opts.duration,
      warmup_s: opts.warmup,
      connections: opts.connections,
      pinning: PINNED ? 'server (workerd or the peer) on CPU 0, loadgen on CPU 1 (taskset)' : 'none',
      ours:
        `${bundleSource} bundle served by workerd serve, compatibility date 2026-04-26, nodejs_compat; ` +
        `SQLite-backed Durable Objects (localDisk) in ${a['storage-dir'] ? `--storage-dir ${a['storage-dir']}` : 'the temporary folder'}; ` +
        'Worker logs to a file',
      peer: 'oidc-provider in-process (shared peer-oidc-provider.mjs)',
      loadgen: 'shared loadgen.mjs: closed loop, one request in flight per connection, pre-signed assertions',
    },
    summary: {
      ours: ours?.error ? { error: ours.error } : summary(ours),
      peer: Object.fromEntries(Object.entries(peers).map(([s, p]) => [s, p.error ? { error: p.error } : summary(p)])),
      ours_over_peer: ratioByStore,
      problems,
      notes: [...warnings, ...notes],
    },
    reports: {
      ours: ours?.reports ?? null,
      peer: Object.fromEntries(Object.entries(peers).map(([s, p]) => [s, p.reports ?? null])),
    },
  };
  await mkdir(path.dirname(outFile), { recursive: true });
  await writeFile(outFile, `${JSON.stringify(result, null, 2)}\n`);
  const shown = path.relative(process.cwd(), outFile);
  console.log(`\nfull reports: ${shown.startsWith('..') ? outFile : shown} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  return problems.length === 0;
}

const tmp = await mkdtemp(path.join(os.tmpdir(), 'token-bench-'));
const storageDir = a['storage-dir']
  ? await mkdtemp(path.join(path.resolve(a['storage-dir']), 'token-bench-do-'))
  : path.join(tmp, 'do-storage');
const cleanup = async () => {
  await stopAll();
  if (a['keep-tmp']) {
    log(`kept ${tmp}${a['storage-dir'] ? ` and ${storageDir}` : ''}`);
  } else {
    await rm(tmp, { recursive: true, force: true });
    await rm(storageDir, { recursive: true, force: true });
  }
};
installSignalHandlers(cleanup);
let passed = false;
try {
  passed = await main(tmp);
} catch (e) {
  if (!shuttingDown()) log(e.stack ?? e);
} finally {
  await cleanup();
}
process.exit(passed ? 0 : 1);
