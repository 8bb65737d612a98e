#!/usr/bin/env node
// `npm run bench:token`: throughput and latency of our token endpoint (the Worker bundle served by
// workerd) against the oidc-provider peer, one core each, in two shapes: every request from one
// sandbox, and requests spread at random over N sandboxes (each bootstrapped, so each has its own
// Durable Object), as production spreads refreshes. See bench/README.md.
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { othersOnCore } from './lib/cpu.mjs';
import { harnessSource, installPeer, runLoad, startPeer } from './lib/peer.mjs';
import { freePort, installSignalHandlers, PINNED, shuttingDown, stop, stopAll } from './lib/processes.mjs';
import { caveats, oursProblems, ratios, summarize, table } from './lib/report.mjs';
import { gitState, machine, packageVersion } from './lib/run-info.mjs';
import { resultsFile, SMOKE } from './lib/smoke.mjs';
import { buildBundle, startWorkerd, tail, workerBindings, writeConfig } from './lib/workerd.mjs';

const CLIENT_ID = 'bench-agent';
const PEER_STORES = ['default', 'large'];
const SHAPES = ['one', 'many'];
/** Bootstraps in flight while the many-sandbox shape is set up (the admin API, one object each). */
const BOOTSTRAP_CONCURRENCY = 8;
const USAGE = `usage: npm run bench:token -- [options]
  --duration S       timed phase per run, seconds (10)
  --warmup S         warm-up before each run, seconds (2)
  --connections N    concurrent connections, one request in flight each (32)
  --runs N           loadgen runs per target and shape (1)
  --sandboxes N      sandboxes (peer: clients) of the many-sandbox shape, each bootstrapped (1000)
  --shapes L         one,many (both): one sandbox, or requests spread at random over --sandboxes
  --skip-peer        measure ours only
  --peer-stores L    oidc-provider stores to measure: default,large (both)
  --skip-ours        measure the peer only (for testing the bench itself)
  --bundle DIR       serve this already built bundle instead of building one
  --storage-dir DIR  put the Durable Objects' SQLite files under DIR (e.g. /dev/shm) instead of
                     the temporary folder (os.tmpdir())
  --out FILE         results file (bench/results/token-<date>.json)
  --keep-tmp         keep the temporary folder (logs, generated config)
  --smoke            smallest run, to check that the bench starts (also BENCH_SMOKE=1): ours only,
                     both shapes (20 sandboxes), 1 s of load without warm-up, 4 connections,
                     unpinned; results to a temporary folder unless --out. --peer-stores adds the
                     peer (and its npm install). See bench/README.md
env: PEER_BENCH_DIR  the shared harness, whose lock file pins the peer's packages (default:
                     <project>/../shared/bench/token-endpoint; without it, oidc-provider 9.13.3 from
                     the registry)`;

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const log = (...m) => console.error('[bench]', ...m);

// Smoke mode measures ours only: the peer (oidc-provider) comes from the harness's own `npm ci`,
// which needs the npm registry, so it runs only when --peer-stores is given. Flags given win.
const DEFAULTS = {
  duration: '10',
  warmup: '2',
  connections: '32',
  runs: '1',
  sandboxes: '1000',
  shapes: SHAPES.join(','),
  'peer-stores': PEER_STORES.join(','),
};
const SMOKE_DEFAULTS = { ...DEFAULTS, duration: '1', warmup: '0', connections: '4', sandboxes: '20', 'peer-stores': '' };
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
  sandboxes: positive('sandboxes', a.sandboxes),
  shapes: list(a.shapes),
  stores: a['skip-peer'] ? [] : list(a['peer-stores']),
};
for (const s of opts.stores) if (!PEER_STORES.includes(s)) usage(`unknown peer store: ${s}`);
for (const s of opts.shapes) if (!SHAPES.includes(s)) usage(`unknown shape: ${s} (one, many)`);
if (!opts.shapes.length) usage('--shapes names no shape');

function list(v) {
  return v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}
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

const shapeLabel = (shape, n, unit) => (shape === 'one' ? `1 ${unit}` : `${n} ${unit === 'sandbox' ? 'sandboxes' : `${unit}s`}`);

/** One load run (on CPU 1) against the server `serverPid` (on CPU 0), with others' use of CPU 0. */
async function loadRun(target, clientsFile, serverPid) {
  const others = PINNED ? await othersOnCore(0, serverPid) : async () => null;
  const report = await runLoad(
    [
      '--url',
      target.token_endpoint,
      '--aud',
      target.aud,
      '--jwks',
      target.jwks_uri,
      '--clients',
      clientsFile,
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

/** POST /api/admin/sandboxes/<id>/bootstrap: the client's private JWK, or an explanation. */
async function bootstrap(origin, adminToken, id, warnings) {
  const res = await fetch(`${origin}/api/admin/sandboxes/${id}/bootstrap`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}` },
  });
  const text = await res.text();
  if (res.status !== 200) {
    const hint = res.status === 404 ? ' (route missing?)' : '';
    throw new Error(`bootstrap of ${id} answered ${res.status}${hint}: ${text.slice(0, 200)}`);
  }
  const body = JSON.parse(text);
  const key = body.key;
  if (key?.kty !== 'OKP' || key.crv !== 'Ed25519' || typeof key.d !== 'string') {
    throw new Error('bootstrap answer has no private Ed25519 JWK in `key`');
  }
  const expected = { client_id: id, issuer: origin, token_endpoint: `${origin}/oauth/token` };
  for (const [k, v] of Object.entries(expected)) {
    if (body[k] !== v) warnings.push(`bootstrap: ${k} is ${JSON.stringify(body[k])}, expected ${JSON.stringify(v)}`);
  }
  if (!key.kid) warnings.push('bootstrap: the key has no kid');
  return { client_id: id, jwk: key };
}

/** Bootstraps `ids`, a few at a time; resolves to the clients in order. */
async function bootstrapAll(origin, adminToken, ids, warnings) {
  const out = new Array(ids.length);
  let next = 0;
  const worker = async () => {
    while (next < ids.length && !shuttingDown()) {
      const i = next++;
      out[i] = await bootstrap(origin, adminToken, ids[i], warnings);
    }
  };
  await Promise.all(Array.from({ length: BOOTSTRAP_CONCURRENCY }, worker));
  return out;
}

/** Writes a clients file (private JWKs, 0600, in the temporary folder) for the load generator. */
async function clientsFile(file, clients) {
  await writeFile(file, `${JSON.stringify(clients)}\n`, { mode: 0o600 });
  return file;
}

/**
 * Runs every shape `opts.runs` times against one server, the shapes alternating run by run, so
 * that both see the same server at the same age. Resolves to { shape: reports }.
 */
async function measureShapes(files, target, serverPid, name) {
  const reports = Object.fromEntries(opts.shapes.map((s) => [s, []]));
  for (let i = 1; i <= opts.runs; i++) {
    for (const shape of opts.shapes) {
      log(`${name}, ${shape === 'one' ? 'one sandbox' : `${opts.sandboxes} sandboxes`}: run ${i}/${opts.runs}`);
      reports[shape].push(await loadRun(target, files[shape], serverPid));
    }
  }
  return reports;
}

async function measureOurs(tmp, warnings) {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const bindings = await workerBindings(projectRoot, origin);
  const configFile = await writeConfig({ dir: tmp, bundleName: 'bundle', port, bindings, storageDir });
  const logFile = path.join(tmp, 'workerd.log');
  const server = await startWorkerd({ projectRoot, dir: tmp, configFile, origin, logFile });
  log(`ours: workerd up (pid ${server.pid}) at ${origin}`);
  let reports = {};
  try {
    const t0 = Date.now();
    const files = {};
    if (opts.shapes.includes('one')) {
      files.one = await clientsFile(
        path.join(tmp, 'ours-one.json'),
        await bootstrapAll(origin, bindings.ADMIN_TOKEN, [CLIENT_ID], warnings),
      );
    }
    if (opts.shapes.includes('many')) {
      const ids = Array.from({ length: opts.sandboxes }, (_, i) => `${CLIENT_ID}-${String(i).padStart(4, '0')}`);
      files.many = await clientsFile(path.join(tmp, 'ours-many.json'), await bootstrapAll(origin, bindings.ADMIN_TOKEN, ids, warnings));
    }
    log(
      `ours: ${opts.shapes.includes('many') ? opts.sandboxes + (opts.shapes.includes('one') ? 1 : 0) : 1} sandbox(es) bootstrapped in ${Date.now() - t0} ms`,
    );
    const target = { token_endpoint: `${origin}/oauth/token`, aud: origin, jwks_uri: `${origin}/.well-known/jwks.json` };
    reports = await measureShapes(files, target, server.pid, 'ours');
    return reports;
  } finally {
    await stop(server);
    const failed = Object.values(reports)
      .flat()
      .some((r) => Object.keys(r.errors).length || Object.keys(r.non_2xx).length || r.warmup_errors);
    if (failed) console.error(`[bench] ours had failed requests; end of the workerd log:\n${await tail(logFile)}`);
  }
}

async function measurePeer(tmp, peerDir, store) {
  const port = await freePort();
  const all = path.join(tmp, `peer-${store}-many.json`);
  const { child, info } = await startPeer(peerDir, {
    port,
    store,
    clients: opts.shapes.includes('many') ? opts.sandboxes : 1,
    clientsOut: all,
    logFile: path.join(tmp, `peer-${store}.log`),
  });
  log(`peer (store ${store}): up (pid ${child.pid}) at ${info.issuer} with ${info.clients} client(s)`);
  try {
    const clients = JSON.parse(await readFile(all, 'utf8'));
    const files = { many: all, one: await clientsFile(path.join(tmp, `peer-${store}-one.json`), clients.slice(0, 1)) };
    return await measureShapes(files, info, child.pid, `peer (store ${store})`);
  } finally {
    await stop(child);
  }
}

/** The many-sandbox goal of the issue: at least 2x the peer's tokens/s, p99 at or below the peer's, nothing unanswered. */
const GOAL = { throughput: 2, p99: 1 };

async function main(tmp) {
  const started = Date.now();
  const peerDir = path.join(tmp, 'peer');
  const src = harnessSource(projectRoot);
  log(`temporary folder ${tmp}`);
  const warnings = [];
  let bundleSource = 'skipped';
  let peerFrom = null;
  let peerError = null;
  await Promise.all([
    opts.stores.length
      ? mkdir(peerDir)
          .then(() => installPeer(src, peerDir, path.join(tmp, 'npm-peer.log')))
          .then(
            (from) => {
              peerFrom = from;
            },
            (e) => {
              peerError = e.message;
            },
          )
      : null,
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
  log(
    `bundle ${bundleSource}${opts.stores.length ? `, peer ${peerError ? 'NOT installed' : `from ${peerFrom}`}` : ''} (${((Date.now() - started) / 1000).toFixed(1)} s)`,
  );

  // One target per (server, shape): the table's rows and the ratios' operands.
  const targets = [];
  const unit = { ours: 'sandbox', peer: 'client' };
  const addTargets = (name, kind, measured) => {
    const list = [];
    for (const shape of opts.shapes) {
      const label = `${name}, ${shapeLabel(shape, opts.sandboxes, unit[kind])}`;
      list.push(measured.error ? { label, shape, error: measured.error } : { label, shape, reports: measured.reports[shape] });
    }
    targets.push(...list);
    return list;
  };
  let ours = [];
  if (!a['skip-ours']) {
    let measured;
    try {
      measured = { reports: await measureOurs(tmp, warnings) };
    } catch (e) {
      measured = { error: e.message };
      if (!shuttingDown()) log(`ours: not measured: ${e.message}`);
    }
    ours = addTargets('ours', 'ours', measured);
  }
  const peers = {};
  for (const store of opts.stores) {
    const name = `oidc-provider (${store})`;
    let measured;
    try {
      if (peerError) throw new Error(peerError);
      measured = { reports: await measurePeer(tmp, peerDir, store) };
    } catch (e) {
      measured = { error: e.message };
      if (!shuttingDown()) log(`${name}: not measured: ${e.message}`);
    }
    peers[store] = addTargets(name, 'peer', measured);
  }

  // Interrupted (Ctrl-C): the measurements above were cut short, so print and write nothing.
  if (shuttingDown()) return false;
  const summary = (t) => (t?.reports ? summarize(t.reports) : null);
  const problems = [];
  for (const t of ours) {
    if (t.error) problems.push(`${t.label} not measured: ${t.error}`);
    else problems.push(...oursProblems(t.reports).map((p) => `${t.label}: ${p}`));
  }
  for (const list of Object.values(peers)) for (const t of list) if (t.error) problems.push(`${t.label} not measured: ${t.error}`);
  if (!targets.length) problems.push('nothing measured (--skip-ours without a peer store)');
  for (const t of targets) {
    if (t.reports?.some((r) => !(r.ok_per_s > 0))) problems.push(`${t.label}: no tokens/s figure (no token issued in a run)`);
  }
  const notes = targets.flatMap((t) => (t.reports ? caveats(t.label, t.reports) : []));
  // ours / peer, per shape and store.
  const ratioByShape = {};
  for (const o of ours) {
    ratioByShape[o.shape] = Object.fromEntries(
      Object.entries(peers).map(([store, list]) => [store, ratios(summary(o), summary(list.find((p) => p.shape === o.shape)))]),
    );
  }

  console.log(
    `\nToken endpoint, client_credentials + private_key_jwt (EdDSA): ${opts.connections} connections, ` +
      `${opts.warmup} s warm-up + ${opts.duration} s, ${opts.runs} run(s) per shape; ` +
      `${PINNED ? 'server on CPU 0, load generator on CPU 1' : SMOKE ? 'not pinned (smoke mode)' : 'NOT pinned (no taskset or one CPU)'}\n`,
  );
  if (SMOKE) console.log('smoke mode: a check that the bench starts and measures; these figures mean nothing\n');
  console.log(table(targets));
  console.log('');
  for (const [shape, byStore] of Object.entries(ratioByShape)) {
    for (const [store, r] of Object.entries(byStore)) {
      if (!r) continue;
      const what = shape === 'one' ? 'one sandbox' : `${opts.sandboxes} sandboxes`;
      let line = `ours / oidc-provider (${store}), ${what}: throughput x${r.throughput}, p90 x${r.p90}, p99 x${r.p99}`;
      if (shape === 'many') {
        const unanswered = summary(ours.find((o) => o.shape === 'many'))?.errors ?? 0;
        const met = r.throughput >= GOAL.throughput && r.p99 <= GOAL.p99 && unanswered === 0;
        line += ` (goal: x${GOAL.throughput} throughput, p99 at most the peer's, nothing unanswered: ${met ? 'met' : 'NOT met'})`;
      }
      console.log(line);
    }
  }
  for (const n of [...warnings, ...notes]) console.log(`note: ${n}`);
  for (const p of problems) console.log(`FAIL: ${p}`);

  const date = new Date().toISOString();
  const outFile = resultsFile(a.out, 'token', path.join(projectRoot, 'bench', 'results', `token-${date.slice(0, 10)}.json`));
  const result = {
    bench: 'token endpoint: grant_type=client_credentials, private_key_jwt (EdDSA) client assertion, JWT access token',
    date,
    smoke: SMOKE,
    git: gitState(projectRoot, ['src', 'wrangler.toml', 'package.json', 'package-lock.json']),
    machine: machine(),
    packages: {
      workerd: packageVersion(projectRoot, 'workerd'),
      wrangler: packageVersion(projectRoot, 'wrangler'),
      'oidc-provider': packageVersion(peerDir, 'oidc-provider'),
      'loadgen jose': packageVersion(projectRoot, 'jose'),
      'loadgen undici': packageVersion(projectRoot, 'undici'),
    },
    method: {
      runs: opts.runs,
      duration_s: opts.duration,
      warmup_s: opts.warmup,
      connections: opts.connections,
      shapes: opts.shapes,
      sandboxes: opts.sandboxes,
      pinning: PINNED ? 'server (workerd or the peer) on CPU 0, loadgen on CPU 1 (taskset)' : 'none',
      ours:
        `${bundleSource} bundle served by workerd serve, compatibility date 2026-04-26, nodejs_compat; ` +
        `SQLite-backed Durable Objects (localDisk) in ${a['storage-dir'] ? `--storage-dir ${a['storage-dir']}` : 'the temporary folder'}; ` +
        'Worker logs to a file',
      peer: `oidc-provider in-process (bench/lib/token-peer.mjs), installed from ${peerFrom ?? 'nowhere'}`,
      loadgen:
        'bench/lib/token-load.mjs: closed loop, one request in flight per connection, every assertion signed before the first request, each from a client picked at random',
    },
    summary: {
      targets: Object.fromEntries(targets.map((t) => [t.label, t.error ? { error: t.error } : summary(t)])),
      ours_over_peer: ratioByShape,
      problems,
      notes: [...warnings, ...notes],
    },
    reports: Object.fromEntries(targets.map((t) => [t.label, t.reports ?? null])),
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
