#!/usr/bin/env node
// `npm run bench:chain`: what the chain adds to a request's latency on loopback, with the real
// gateway. Starts the project's local stack (`npm run dev -- --gateway openclaw`) in a fresh copy of
// the working tree, then measures, one request in flight, the targets taking turns:
//
//   HTTP GET of a small gateway path (/health): straight to the gateway's own port, through a
//   verifying proxy alone (with a bearer token of the bench's, see lib/bench-proxy.mjs), and
//   through the whole chain two ways: Worker in wrangler dev (the stack's, as users run it) ->
//   verifying proxy -> OpenClaw, and the same Worker's deployable bundle under plain `workerd
//   serve` (lib/chain-worker.mjs) -> a verifying proxy that trusts its JWKS -> the same OpenClaw;
//   and, for reference, a Worker route that is not forwarded (the JWKS), through either Worker.
//   WebSocket: a `health` request on an open, handshaken connection, direct, proxy, both chains.
//
// The wrangler dev chain is the local stack's latency; the workerd serve chain is the Worker's own
// cost, without wrangler's dev machinery (its Node proxy and a second workerd in front of ours).
// Prints p50/p90/p99/max per target and what the proxy and each chain add (p50, p99, ratios)
// beside the goals. See bench/README.md, "Chain latency".
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startBenchIssuer, startBenchProxy } from './lib/bench-proxy.mjs';
import { buildWorkerBundle, startChainWorker } from './lib/chain-worker.mjs';
import { GatewayClient } from './lib/gateway-ws.mjs';
import { difference, interleaved, ms, stats, textTable } from './lib/latency.mjs';
import { ensureGateway, freeBase, freshCopy, spawnStack } from './lib/openclaw-stack.mjs';
import { installSignalHandlers, shuttingDown, stopAll } from './lib/processes.mjs';
import { stackSources } from './lib/project-ts.mjs';
import { gitState, machine, othersOnMachine, packageVersion } from './lib/run-info.mjs';
import { resultsFile, SMOKE } from './lib/smoke.mjs';
import { tail } from './lib/workerd.mjs';

const USAGE = `usage: npm run bench:chain -- [options]
  --requests N     recorded requests per target (2000)
  --warmup N       requests per target before those, not recorded (200)
  --round N        requests per target in a row before the next target's turn (10)
  --http-path P    the gateway path of the HTTP targets (/health)
  --out FILE       results file (bench/results/chain-<date>.json)
  --keep-tmp       keep the temporary folder (the stack's copy and logs)
  --smoke          smallest run, to check that the bench starts (also BENCH_SMOKE=1): the whole
                   stack, 20 requests per target after 5 of warm-up; results to a temporary folder
                   unless --out. See bench/README.md`;

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const log = (...m) => console.error('[bench]', ...m);

// Defaults, and (smoke mode) the smallest run that still measures every target; flags given win.
// Turns of 10: a target's keep-alive connection idles while the others take their turns, and is
// closed by the client after 4 s (CLIENT_IDLE_MS). With seven targets, turns of 20 took ~0.5 s on a
// quiet machine and ~1.5 s on a loaded one; with ten, turns of 20 took 1.5 s on average and up to
// 3.6 s on a busy one (40% of it taken by others), and some HTTP targets opened a new connection or
// three. Turns of 10 took 0.5 s on average and at most 1 s (11% taken by others), every target on
// its one connection: no recorded request pays for a new one.
const DEFAULTS = { requests: '2000', warmup: '200', round: '10', 'http-path': '/health' };
const SMOKE_DEFAULTS = { requests: '20', warmup: '5', round: '10', 'http-path': '/health' };
const { values: given } = parseArgs({
  options: {
    ...Object.fromEntries(Object.keys(DEFAULTS).map((k) => [k, { type: 'string' }])),
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
  requests: int('requests', 1),
  warmup: int('warmup', 0),
  round: int('round', 1),
  httpPath: a['http-path'],
};
if (!/^\/[^/\\]/.test(opts.httpPath) && opts.httpPath !== '/') usage('--http-path must be a path such as /health');

function int(name, min) {
  const n = Number(a[name]);
  if (!Number.isInteger(n) || n < min) usage(`--${name} must be an integer >= ${min}`);
  return n;
}
function usage(message) {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

/** The goals the issue sets, printed beside the figures (never asserted: a loaded machine misses them). */
const GOALS = [
  { key: 'ws_proxy', limit_ms: 0.5, text: 'the proxy adds at most 0.5 ms p50 to a WebSocket round trip' },
  ...['http', 'ws'].flatMap((kind) =>
    chains().map((c) => ({
      key: `${kind}_chain${c.suffix}`,
      limit_ms: 2,
      chain: c.name,
      text: `the whole chain adds at most 2 ms p50 on loopback (${kind === 'ws' ? 'WebSocket' : 'HTTP'}; Worker in ${c.name})`,
    })),
  ),
];
/** Above this share of the machine taken by other work, the figures are noted as noisy. */
const BUSY_MACHINE_PCT = 10;
/** The WebSocket request measured, and its parameters: the gateway's cached health snapshot. */
const WS_METHOD = 'health';
/** Asked for on connect; the stack's identityScopes give DEV_USER its scopes whatever is asked. */
const WS_SCOPES = ['operator.read'];
/** The paths whose changes change what this bench measures (the Worker, the proxy, the stack). */
const MEASURED_PATHS = ['src', 'container', 'scripts', 'wrangler.toml', 'keys.example', 'package.json', 'package-lock.json'];
/** Attempts at opening each WebSocket, and the pause between them (see openWithRetry). */
const WS_OPEN_ATTEMPTS = 3;
const WS_RETRY_MS = 1_000;
/** Lines of each log shown when the bench fails. */
const LOG_TAIL_LINES = 12;
/** An HTTP request not answered by then has failed (the slowest seen through the chain: ~0.2 s). */
const HTTP_TIMEOUT_MS = 15_000;
/**
 * An idle keep-alive connection is closed by the client after this: before the servers' own 5 s
 * (workerd's, Node's default), so a request never goes out on a connection the server is closing
 * at that moment ("socket hang up"). The `conns` column shows whether it happened.
 */
const CLIENT_IDLE_MS = 4_000;
/** A failed HTTP answer's body is quoted this far in the error (proxy and gateway never echo a token). */
const ERROR_BODY_CHARS = 200;
/** Ports after the stack's six: the bench's proxy, the workerd Worker, that Worker's proxy. */
const EXTRA_PORTS = { benchProxy: 6, workerd: 7, workerdProxy: 8 };

/**
 * The two Workers a chain starts at, and what each one's figures are (the suffix of its keys, what
 * its target labels call it): a function, so that GOALS above can use it. The stack's targets keep
 * their labels from before the workerd chain (the smoke test matches them).
 */
function chains() {
  return [
    {
      suffix: '',
      name: 'wrangler dev',
      worker: 'Worker',
      what: "the local stack as users run it (wrangler's Node proxy and a second workerd in front of ours)",
    },
    {
      suffix: '_workerd',
      name: 'workerd serve',
      worker: 'Worker (workerd serve)',
      what: "the Worker's own cost: its deployable bundle under plain workerd, no dev tooling",
    },
  ];
}

// ---------------------------------------------------------------- targets

/**
 * One HTTP target: GET `url` with `headers` on a keep-alive connection of its own. It counts the
 * connections it opened: more than one means some samples include a new connection.
 */
function httpTarget(key, label, url, headers) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1, timeout: CLIENT_IDLE_MS });
  const seen = new WeakSet();
  const target = { key, kind: 'http', label, url: redacted(url), samples: [], failed: 0, firstError: null, connections: 0 };
  target.close = () => agent.destroy();
  target.once = () =>
    new Promise((resolve, reject) => {
      const req = http.get(url, { agent, headers }, (res) => {
        res.once('error', reject);
        if (res.statusCode === 200) {
          res.resume();
          res.once('end', resolve);
          return;
        }
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.once('end', () => reject(new Error(`HTTP ${res.statusCode}: ${body.slice(0, ERROR_BODY_CHARS)}`)));
      });
      req.once('socket', (socket) => {
        if (!seen.has(socket)) target.connections++;
        seen.add(socket);
      });
      req.once('error', reject);
      req.setTimeout(HTTP_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${HTTP_TIMEOUT_MS / 1000} s`)));
    });
  return target;
}

/** One WebSocket target: a `health` request on `client`'s open connection. */
function wsTarget(key, label, url, client) {
  const once = async () => {
    const f = await client.call(WS_METHOD, {});
    if (!f.ok) throw new Error(`${WS_METHOD} answered not ok: ${JSON.stringify(f.error).slice(0, ERROR_BODY_CHARS)}`);
  };
  return { key, kind: 'ws', label, url, once, samples: [], failed: 0, firstError: null, connections: 1, close: () => client.close() };
}

/** A URL as it may be printed: origin and path only. */
function redacted(url) {
  const u = new URL(url);
  return `${u.origin}${u.pathname}`;
}

/** What the proxy sends the gateway for the token's claims (container/lib/proxy/server.ts forwardedHeaders). */
function proxiedHeaders(src, issuer, user) {
  const origin = new URL(issuer);
  return {
    'x-forwarded-for': src.LOCAL_CLIENT_IP,
    'x-forwarded-proto': origin.protocol.replace(':', ''),
    'x-forwarded-host': origin.host,
    'x-forwarded-user': user,
  };
}

/**
 * Opens every target into up.targets (one by one, so that cleanup closes those already open).
 * `workers`: the origin of each chain's Worker, by its suffix (chains()).
 */
async function openTargets(src, stack, benchProxyUrl, token, user, workers) {
  const direct = proxiedHeaders(src, stack.issuer, user);
  const bearer = { authorization: `Bearer ${token}` };
  const p = opts.httpPath;
  const targets = up.targets;
  const all = chains();
  targets.push(
    httpTarget('http_direct', 'HTTP direct to the gateway', `${stack.gateway}${p}`, direct),
    httpTarget('http_proxy', 'HTTP proxy -> gateway', `${benchProxyUrl}${p}`, bearer),
    ...all.map((c) => httpTarget(`http_chain${c.suffix}`, `HTTP ${c.worker} -> proxy -> gateway`, `${workers[c.suffix]}${p}`, {})),
    ...all.map((c) =>
      httpTarget(`http_worker${c.suffix}`, `HTTP ${c.worker} alone (JWKS, reference)`, `${workers[c.suffix]}${src.JWKS_PATH}`, {}),
    ),
  );
  const ws = (base) => `${base.replace(/^http/, 'ws')}/`;
  const sockets = [
    ['ws_direct', 'WS health direct to the gateway', stack.gateway, direct],
    ['ws_proxy', 'WS health proxy -> gateway', benchProxyUrl, bearer],
    ...all.map((c) => [`ws_chain${c.suffix}`, `WS health ${c.worker} -> proxy -> gateway`, workers[c.suffix], {}]),
  ];
  for (const [key, label, base, headers] of sockets) {
    targets.push(wsTarget(key, label, ws(base), await openWithRetry(label, ws(base), headers)));
  }
}

/**
 * Opens a connection, trying again after a failed attempt: one upgrade right after the stack came
 * up was once answered 500 (not seen again in 120 tries). Each failure is kept as a note.
 */
async function openWithRetry(label, url, headers) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await GatewayClient.open(url, headers, WS_SCOPES);
    } catch (e) {
      if (attempt >= WS_OPEN_ATTEMPTS || stopped()) throw new Error(`${label}: ${e.message}`);
      notes.push(`${label}: connection attempt ${attempt} failed (${e.message}); tried again`);
      log(notes.at(-1));
      await sleep(WS_RETRY_MS);
    }
  }
}

// ---------------------------------------------------------------- report

/** The differences that tell the parts apart: proxy - direct, and for each chain chain - direct, chain - proxy. */
function added(byKey) {
  const out = {};
  for (const [kind, name] of [
    ['http', 'HTTP'],
    ['ws', 'WS'],
  ]) {
    const s = (k) => byKey[`${kind}_${k}`]?.stats;
    out[`${kind}_proxy`] = { what: `${name} proxy - direct`, ...difference(s('proxy'), s('direct')) };
    for (const c of chains()) {
      const chain = s(`chain${c.suffix}`);
      out[`${kind}_chain${c.suffix}`] = { what: `${name} chain(${c.name}) - direct`, ...difference(chain, s('direct')) };
      out[`${kind}_worker${c.suffix}`] = { what: `${name} chain(${c.name}) - proxy (the Worker's part)`, ...difference(chain, s('proxy')) };
    }
  }
  return out;
}

function goalResults(adds) {
  return GOALS.map((g) => {
    const v = adds[g.key].p50_ms;
    return { ...g, p50_added_ms: v, met: v == null ? null : v <= g.limit_ms };
  });
}

function printReport(targets, adds, goals, othersPct) {
  console.log(
    `\nChain latency on loopback, OpenClaw's real gateway: ${opts.requests} requests per target after ${opts.warmup} of warm-up, ` +
      `one in flight, targets in turns of ${opts.round}; HTTP GET ${opts.httpPath}, WebSocket ${WS_METHOD} on an open connection\n`,
  );
  if (SMOKE) console.log('smoke mode: a check that the bench starts and measures; these figures mean nothing\n');
  const head = ['target', 'count', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'failed', 'conns'];
  const rows = targets.map((t) => {
    const { count, p50, p90, p99, max } = t.stats;
    return [t.label, count, ms(p50), ms(p90), ms(p99), ms(max), t.failed, t.connections];
  });
  console.log(textTable(head, rows));
  console.log('(conns: connections the target opened, warm-up included; 1: every request went on one connection)');
  console.log("(Worker: the local stack's, in wrangler dev; Worker (workerd serve): its bundle under plain workerd serve)\n");
  const goalOf = Object.fromEntries(goals.map((g) => [g.key, g]));
  const addRows = Object.entries(adds).map(([key, d]) => {
    const g = goalOf[key];
    const goal = g ? `<= ${g.limit_ms} ms p50: ${g.met == null ? 'n/a' : g.met ? 'met' : 'NOT met'}` : '';
    return [d.what, ms(d.p50_ms), ms(d.p99_ms), ratio(d.p50_ratio), ratio(d.p99_ratio), goal];
  });
  console.log(textTable(['added', 'p50 ms', 'p99 ms', 'x p50', 'x p99', 'goal'], addRows));
  console.log('\n(differences of percentiles, not percentiles of differences; x = the first over the second)');
  console.log('\ngoal: the whole chain adds at most 2 ms p50 on loopback');
  const of = (key) => {
    const g = goalOf[key];
    return `${ms(g.p50_added_ms)} ms (${g.met == null ? 'n/a' : g.met ? 'met' : 'NOT met'})`;
  };
  const width = Math.max(...chains().map((c) => c.name.length));
  for (const c of chains()) {
    console.log(`  ${c.name.padEnd(width)}  HTTP ${of(`http_chain${c.suffix}`)}, WS ${of(`ws_chain${c.suffix}`)}: ${c.what}`);
  }
  if (othersPct != null) {
    const note = othersPct > BUSY_MACHINE_PCT ? ': the machine was busy, compare with care' : '';
    console.log(`other processes used ${othersPct}% of the machine's CPU time during the measurement${note}`);
  }
}

const ratio = (x) => (x == null ? '-' : `x${x}`);

function problemsOf(targets) {
  const out = [];
  for (const t of targets) {
    if (t.failed) out.push(`${t.label}: ${t.failed} failed (first: ${t.firstError})`);
    if (t.stats.count !== opts.requests) out.push(`${t.label}: ${t.stats.count} of ${opts.requests} requests measured`);
  }
  return out;
}

function versions(src) {
  const gw = path.join(projectRoot, src.GATEWAY_DIR);
  return {
    openclaw: packageVersion(path.join(gw, 'lib', 'node_modules', 'openclaw')),
    'gateway node': gatewayNode(gw),
    wrangler: packageVersion(projectRoot, 'wrangler'),
    workerd: packageVersion(projectRoot, 'workerd'),
    undici: packageVersion(projectRoot, 'undici'),
    ws: packageVersion(projectRoot, 'ws'),
  };
}

/** The Node that runs OpenClaw: the installer's stamp names it (scripts/local-stack/openclaw-runtime.ts). */
function gatewayNode(gw) {
  try {
    return JSON.parse(readFileSync(path.join(gw, 'installed.json'), 'utf8')).node?.version ?? null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- run

/** The stack, the bench's issuer and proxy, the targets: whatever is up, for cleanup. */
const up = { stack: null, issuer: null, targets: [], dir: null };
/** The workerd chain's files (bundle, config, Durable Object storage) and logs, in the temporary folder. */
const WORKERD_DIR = 'workerd-worker';
const WORKERD_LOGS = ['worker-build.log', 'workerd.log', 'workerd-proxy.log'];
/** What qualifies the figures (printed, and kept in the results file). */
const notes = [];
/** Set when cleanup begins (the end, an error, or Ctrl-C): the measurement stops at the next request. */
let closing = false;
const stopped = () => closing || shuttingDown();

async function startEverything(src, tmp) {
  log(`temporary folder ${tmp}`);
  const gatewayInstall = await ensureGateway(projectRoot, src, tmp, log);
  const dir = path.join(tmp, 'tree');
  up.dir = dir;
  freshCopy(projectRoot, dir, src.GATEWAY_DIR);
  // Three more ports after the stack's six: the bench's own proxy, the workerd Worker and its proxy.
  const base = await freeBase(src.LOCAL_HOST, Object.keys(EXTRA_PORTS).length);
  log(`starting the local stack with OpenClaw on ports ${base}..${base + 5} (30 to 90 s) ...`);
  const started = Date.now();
  up.stack = spawnStack({ src, dir, base, logFile: path.join(tmp, 'stack.log'), log });
  // The workerd chain's bundle, from the same copy, meanwhile (a few seconds of esbuild).
  const workDir = path.join(tmp, WORKERD_DIR);
  await mkdir(workDir);
  const bundled = buildWorkerBundle(dir, workDir, path.join(tmp, WORKERD_LOGS[0]));
  const [, bundleExit] = await Promise.all([up.stack.ready(), bundled]);
  // After writing the bundle, the dry run builds the container image too: without Docker it exits 1.
  if (bundleExit !== 0)
    notes.push(
      `wrangler dry run exited with ${bundleExit} (its container image step; see lib/workerd.mjs buildBundle): its bundle was written and is used`,
    );
  const upSeconds = (Date.now() - started) / 1000;
  const vars = up.stack.devVars();
  const sandbox = vars.SANDBOX_ID || 'main';
  const user = vars.DEV_USER;
  if (!user) throw new Error("the stack's .dev.vars has no DEV_USER");
  const host = src.LOCAL_HOST;
  const url = (port) => `http://${host}:${port}`;
  const audience = src.gatewayAudience(sandbox);
  // The stack's proxy flags, for both proxies of the bench: the same gateway, the same credentials file.
  const proxyFlags = { dir, host, audience, upstream: up.stack.gateway, credentialsFile: up.stack.credentialsFile };
  const worker = await startChainWorker({
    dir,
    workDir,
    host,
    port: base + EXTRA_PORTS.workerd,
    sandbox,
    user,
    upstream: url(base + EXTRA_PORTS.workerdProxy),
    logFile: path.join(tmp, WORKERD_LOGS[1]),
  });
  log(`workerd Worker up at ${worker.origin} (pid ${worker.child.pid})`);
  up.issuer = await startBenchIssuer(src, host);
  const [proxy, workerProxy] = await Promise.all([
    startBenchProxy({
      ...proxyFlags,
      port: base + EXTRA_PORTS.benchProxy,
      jwksUrl: up.issuer.jwksUrl,
      issuer: up.stack.issuer,
      logFile: path.join(tmp, 'bench-proxy.log'),
    }),
    startBenchProxy({
      ...proxyFlags,
      port: base + EXTRA_PORTS.workerdProxy,
      jwksUrl: `${worker.origin}${src.JWKS_PATH}`,
      issuer: worker.origin,
      logFile: path.join(tmp, WORKERD_LOGS[2]),
      name: "the workerd Worker's proxy",
    }),
  ]);
  const token = up.issuer.token({ issuer: up.stack.issuer, sandbox, user, clientIp: src.LOCAL_CLIENT_IP });
  await openTargets(src, up.stack, proxy.url, token, user, { '': up.stack.issuer, _workerd: worker.origin });
  return { base, upSeconds, gatewayInstall, bundleExit, pids: [proxy.child.pid, worker.child.pid, workerProxy.child.pid] };
}

async function measure(started) {
  log(`warm-up: ${opts.warmup} requests per target (not recorded)`);
  await interleaved(up.targets, { perTarget: opts.warmup, roundSize: opts.round, record: false, stopped });
  log(`measuring: ${opts.requests} requests per target, ${up.targets.length} targets in turns of ${opts.round}`);
  const others = othersOnMachine(() => [process.pid, ...started.pids, ...up.stack.pids()]);
  const t0 = Date.now();
  await interleaved(up.targets, { perTarget: opts.requests, roundSize: opts.round, record: true, stopped });
  return { othersPct: others(), seconds: (Date.now() - t0) / 1000 };
}

async function main(tmp) {
  const runStarted = Date.now();
  const src = await stackSources();
  const started = await startEverything(src, tmp);
  const measured = await measure(started);
  // Interrupted (Ctrl-C): the measurement was cut short, so print and write nothing.
  if (stopped()) return false;
  for (const t of up.targets) t.stats = stats(t.samples);
  const byKey = Object.fromEntries(up.targets.map((t) => [t.key, t]));
  const adds = added(byKey);
  const goals = goalResults(adds);
  printReport(up.targets, adds, goals, measured.othersPct);
  const problems = problemsOf(up.targets);
  for (const n of notes) console.log(`note: ${n}`);
  for (const p of problems) console.log(`FAIL: ${p}`);

  const date = new Date().toISOString();
  const outFile = resultsFile(a.out, 'chain', path.join(projectRoot, 'bench', 'results', `chain-${date.slice(0, 10)}.json`));
  const result = {
    bench:
      'chain latency on loopback: HTTP GET and WebSocket health, direct to OpenClaw, through the verifying proxy, through Worker -> proxy -> OpenClaw with the Worker in wrangler dev and under plain workerd serve',
    date,
    smoke: SMOKE,
    git: gitState(projectRoot, MEASURED_PATHS),
    machine: machine(),
    packages: versions(src),
    method: {
      requests_per_target: opts.requests,
      warmup_per_target: opts.warmup,
      round: opts.round,
      http_path: opts.httpPath,
      ws_method: WS_METHOD,
      closed_loop: 'one request in flight; targets take turns of `round` requests, the first place moving each turn',
      stack: `scripts/dev.ts --gateway openclaw --base-port ${started.base} in a fresh copy of the working tree (wrangler dev, agent, proxy, OpenClaw ${src.OPENCLAW_VERSION})`,
      proxy_target:
        "a second verifying proxy (container/gateway-proxy.ts, the stack's flags) in front of the same gateway, with the bench's own JWKS and token",
      workerd_chain:
        "the Worker's bundle (wrangler deploy --dry-run in the copy, as bench:token builds it) under plain workerd serve, not pinned, " +
        "bindings: wrangler.toml's vars and fresh secrets, ISSUER its own origin, the stack's SANDBOX_ID and DEV_USER, GATEWAY_UPSTREAM " +
        "a third verifying proxy (the stack's flags) that trusts that Worker's JWKS, in front of the same gateway with the same credentials file",
      workerd_bundle_exit: started.bundleExit,
      gateway_install: started.gatewayInstall,
      stack_up_s: Math.round(started.upSeconds * 10) / 10,
      measured_s: measured.seconds,
      pinning: 'none',
    },
    other_processes_cpu_pct_of_machine: measured.othersPct,
    targets: Object.fromEntries(
      up.targets.map((t) => [
        t.key,
        { label: t.label, url: t.url, ...t.stats, failed: t.failed, first_error: t.firstError, connections: t.connections },
      ]),
    ),
    added: adds,
    goals,
    notes,
    problems,
    samples_ms: Object.fromEntries(up.targets.map((t) => [t.key, t.samples])),
  };
  await mkdir(path.dirname(outFile), { recursive: true });
  await writeFile(outFile, `${JSON.stringify(result, null, 2)}\n`);
  const shown = path.relative(process.cwd(), outFile);
  console.log(`\nresults: ${shown.startsWith('..') ? outFile : shown} (${((Date.now() - runStarted) / 1000).toFixed(0)} s in all)`);
  return problems.length === 0;
}

/** The ends of the stack's logs and the bench proxy's (identifiers only: none holds a token). */
async function showLogs() {
  if (!up.dir) return;
  const stackLogs = path.join(up.dir, '.dev-stack', 'logs');
  for (const file of [path.join(tmp, 'stack.log'), ...['issuer.log', 'proxy.log', 'gateway.log'].map((f) => path.join(stackLogs, f))]) {
    log(`end of ${path.relative(tmp, file)}:\n${await tail(file, LOG_TAIL_LINES)}`);
  }
  for (const f of ['bench-proxy.log', ...WORKERD_LOGS]) log(`end of ${f}:\n${await tail(path.join(tmp, f), LOG_TAIL_LINES)}`);
}

const tmp = await mkdtemp(path.join(os.tmpdir(), 'chain-bench-'));
let cleaning;
/** Once: the connections, the stack (Ctrl-C and its sweep), the bench's proxy and issuer, the folder. */
const cleanup = () =>
  (cleaning ??= (async () => {
    closing = true;
    await Promise.allSettled(up.targets.map((t) => t.close()));
    if (up.stack) {
      const { stoppedInTime, leftovers } = await up.stack.stop();
      if (!stoppedInTime) log('the stack did not stop on Ctrl-C in time: killed');
      if (leftovers.length) log(`killed ${leftovers.length} process(es) of the stack still running after it stopped`);
    }
    await up.issuer?.close();
    await stopAll();
    if (a['keep-tmp']) log(`kept ${tmp}`);
    else await rm(tmp, { recursive: true, force: true });
  })());
installSignalHandlers(cleanup);
let passed = false;
try {
  passed = await main(tmp);
} catch (e) {
  if (!stopped()) {
    log(`FAIL: ${e.stack ?? e}`);
    await showLogs();
  }
} finally {
  await cleanup();
}
process.exit(passed ? 0 : 1);
