#!/usr/bin/env node
// `npm run bench:verify`: the verifier (src/verifier) and the verifying proxy (container/gateway-proxy.ts)
// against their baselines, in one run. See bench/README.md, "Verifier and proxy".
//
//   A. verifications/s in this process: first-seen tokens (signature checked) beside raw node:crypto
//      Ed25519 verify on the same tokens, and repeated tokens (verified-token cache hits).
//   B. requests/s with autocannon: through the proxy (esbuild bundle, as shipped) beside straight to
//      the upstream and beside nginx (Debian's, one worker, keep-alive upstream, the same core), for
//      a no-op upstream and for ones that spend CPU on each request like an app.
import { generateKeyPairSync, randomUUID, sign, verify } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { NODE_BUNDLE, REQUIRE_BANNER } from '../scripts/bundle-options.mjs';
import { ensureNginx, findNginx, nginxVersion, nginxWorkers, startNginx } from './lib/nginx.mjs';
import { freePort, installSignalHandlers, onCpu, PINNED, spawnTracked, stop, stopAll } from './lib/processes.mjs';
import { gitState, machine } from './lib/run-info.mjs';
import { resultsFile, SMOKE } from './lib/smoke.mjs';

const USAGE = `usage: npm run bench:verify -- [options]
  --tokens N        distinct tokens for the first-seen figures (20000)
  --repeats N       verifications for the repeated-token figure (500000)
  --concurrency N   verifications in flight for the concurrent figures (64)
  --runs N          runs of each verification figure; the median is printed (3)
  --duration S      timed load per proxy/direct measurement, seconds (10)
  --warmup S        untimed load before each, seconds (2)
  --connections N   autocannon connections (32)
  --work-us L       upstream CPU per request, microseconds, comma-separated profiles (0,250,1000)
  --skip-proxy      part A only
  --skip-nginx      part B without nginx (else nginx is installed with apt-get if missing)
  --out FILE        also write the figures as JSON
  --cpu-prof DIR    run the proxy under node --cpu-prof, profiles (.cpuprofile) into DIR
  --smoke           smallest run, to check that the bench starts (also BENCH_SMOKE=1): 1,000 tokens,
                    one run, 1 s of load without warm-up, no-op upstream only, 4 connections, unpinned,
                    no quiet-machine check, nginx only if installed (never apt-get); figures to a
                    temporary folder unless --out. See bench/README.md`;

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const log = (...m) => console.error('[bench]', ...m);
// Defaults, and (smoke mode) the smallest run that still starts everything; flags given win.
const DEFAULTS = {
  tokens: '20000',
  repeats: '500000',
  concurrency: '64',
  runs: '3',
  duration: '10',
  warmup: '2',
  connections: '32',
  'work-us': '0,250,1000',
};
const SMOKE_DEFAULTS = {
  tokens: '1000',
  repeats: '10000',
  concurrency: '16',
  runs: '1',
  duration: '1',
  warmup: '0',
  connections: '4',
  'work-us': '0',
};
const { values: given } = parseArgs({
  options: {
    ...Object.fromEntries(Object.keys(DEFAULTS).map((k) => [k, { type: 'string' }])),
    'skip-proxy': { type: 'boolean', default: false },
    'skip-nginx': { type: 'boolean', default: false },
    out: { type: 'string' },
    'cpu-prof': { type: 'string' },
    smoke: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
const a = { ...(SMOKE ? SMOKE_DEFAULTS : DEFAULTS), ...given };
if (a.help) {
  console.log(USAGE);
  process.exit(0);
}
function int(name, min = 1) {
  const n = Number(a[name]);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be an integer >= ${min}\n${USAGE}`);
    process.exit(2);
  }
  return n;
}
const opts = {
  tokens: int('tokens', 100),
  repeats: int('repeats', 1000),
  concurrency: int('concurrency'),
  runs: int('runs'),
  duration: int('duration'),
  warmup: int('warmup', 0),
  connections: int('connections'),
  work: a['work-us'].split(',').map((s) => Number(s.trim())),
};
if (opts.work.some((w) => !Number.isInteger(w) || w < 0)) {
  console.error('--work-us must be a comma-separated list of integers >= 0');
  process.exit(2);
}

const ISSUER = 'https://issuer.bench';
const AUDIENCE = 'gateway:bench';
/** What the upstream is told in Authorization, by our proxy (from credentials.json) and by nginx. */
const GATEWAY_TOKEN = 'bench-gateway-token';
/** Node flags of the proxy process: a CPU profile written when it stops, if asked for. */
const PROXY_NODE_FLAGS = a['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(a['cpu-prof'])] : [];
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const fmt = (n) => Math.round(n).toLocaleString('en-US');
const ratio = (x, y) => Math.round((x / y) * 100) / 100;
/** The issue's goal for upstreams that do work per request: the proxy costs at most a tenth. */
const DIRECT_GOAL = 0.9;
/**
 * Share of CPU 0 taken by other programs during a measurement above which its goal gets no
 * verdict: such a figure says more about the machine than about the proxy (one run here had
 * nginx at 12 req/s beside a program that took 98% of the core, and the proxy "beat" it).
 */
const DISTURBED_PCT = 25;

// ---------------------------------------------------------------- tokens and keys

const { publicKey, privateKey } = generateKeyPairSync('ed25519');
const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'bench-key', alg: 'EdDSA', use: 'sig' };
const jwksBody = JSON.stringify({ keys: [jwk] });
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

/** Tokens shaped like the issuer's access tokens, with the signing input and signature kept for the raw baseline. */
function makeTokens(n) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64({ alg: 'EdDSA', kid: jwk.kid, typ: 'at+jwt' });
  const out = { tokens: [], inputs: [], sigs: [] };
  for (let i = 0; i < n; i++) {
    const payload = b64({
      iss: ISSUER,
      sub: `user-${i}`,
      aud: AUDIENCE,
      iat: now,
      exp: now + 3600,
      jti: randomUUID(),
      client_id: 'bench',
      scope: 'gateway',
    });
    const input = Buffer.from(`${header}.${payload}`);
    const sig = sign(null, input, privateKey);
    out.tokens.push(`${header}.${payload}.${sig.toString('base64url')}`);
    out.inputs.push(input);
    out.sigs.push(sig);
  }
  return out;
}

// ---------------------------------------------------------------- part A: verifications/s

async function inFlight(n, concurrency, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

async function timed(n, fn) {
  const t = performance.now();
  await fn();
  return (n / (performance.now() - t)) * 1000;
}

/** % of all CPUs busy over `ms` while this process idles (other programs skew every figure). */
async function othersOnMachine(ms) {
  const total = async () => {
    const [user, nice, system, idle, iowait, irq, softirq, steal] = (await readFile('/proc/stat', 'utf8'))
      .split('\n')[0]
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    return { busy: user + nice + system + irq + softirq + steal, all: user + nice + system + idle + iowait + irq + softirq + steal };
  };
  try {
    const t0 = await total();
    await new Promise((r) => setTimeout(r, ms));
    const t1 = await total();
    return Math.round(((t1.busy - t0.busy) / Math.max(1, t1.all - t0.all)) * 1000) / 10;
  } catch {
    return null;
  }
}

async function partA(tmp) {
  const bundle = path.join(tmp, 'verifier.mjs');
  await build({
    entryPoints: [path.join(root, 'src/verifier/index.ts')],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'silent',
  });
  const { createVerifier } = await import(bundle);
  const newVerifier = async () => {
    const v = createVerifier({
      jwksUrl: `${ISSUER}/.well-known/jwks.json`,
      issuer: ISSUER,
      audience: AUDIENCE,
      // The network edge: the JWKS is fetched once per verifier, before timing starts.
      fetch: async () => new Response(jwksBody, { headers: { 'content-type': 'application/json', 'cache-control': 'max-age=3600' } }),
    });
    await v.refresh();
    return v;
  };
  const n = opts.tokens;
  const C = opts.concurrency;
  log(`signing ${fmt(n)} tokens`);
  const set = makeTokens(n);
  const { tokens, inputs, sigs } = set;
  const busyBefore = SMOKE ? null : await othersOnMachine(1000);
  const rows = { rawSync: [], rawAsync: [], oursOne: [], oursMany: [], repeated: [] };
  for (let run = 1; run <= opts.runs; run++) {
    log(`part A, run ${run}/${opts.runs}`);
    rows.rawSync.push(
      await timed(n, async () => {
        for (let i = 0; i < n; i++) if (!verify(null, inputs[i], publicKey, sigs[i])) throw new Error('raw verify failed');
      }),
    );
    rows.rawAsync.push(
      await timed(n, () =>
        inFlight(
          n,
          C,
          (i) =>
            new Promise((resolve, reject) => {
              verify(null, inputs[i], publicKey, sigs[i], (err, ok) => (ok ? resolve() : reject(err ?? new Error('raw verify failed'))));
            }),
        ),
      ),
    );
    let v = await newVerifier();
    rows.oursOne.push(
      await timed(n, async () => {
        for (let i = 0; i < n; i++) await v.verify(tokens[i]);
      }),
    );
    v = await newVerifier();
    rows.oursMany.push(await timed(n, () => inFlight(n, C, (i) => v.verify(tokens[i]))));
    // Repeated: 1,000 distinct tokens (fewer if --tokens is smaller), each seen many times (cache
    // hits after the first).
    const distinct = Math.min(1000, n);
    v = await newVerifier();
    for (let i = 0; i < distinct; i++) await v.verify(tokens[i]);
    rows.repeated.push(
      await timed(opts.repeats, async () => {
        for (let i = 0; i < opts.repeats; i++) await v.verify(tokens[i % distinct]);
      }),
    );
  }
  return { ...Object.fromEntries(Object.entries(rows).map(([k, xs]) => [k, median(xs)])), busyBefore };
}

// ---------------------------------------------------------------- part B: proxy vs direct

/** A stand-in gateway: a small JSON answer after `workUs` of CPU (0: at once). */
const UPSTREAM_SOURCE = `
import http from 'node:http';
const [port, workUs] = process.argv.slice(2).map(Number);
const body = JSON.stringify({ ok: true, gateway: 'stand-in', items: [1, 2, 3] });
http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    if (workUs > 0) { const until = performance.now() + workUs / 1000; while (performance.now() < until); }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}).listen(port, '127.0.0.1', () => console.log('ready'));
`;

function waitForLine(child, pattern, what, ms = 15_000) {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${what} not ready within ${ms} ms:\n${out}`)), ms);
    const onData = (d) => {
      out += d;
      if (pattern.test(out)) {
        clearTimeout(timer);
        child.stdout.off('data', onData);
        child.stdout.resume();
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.exited.then((e) => reject(new Error(`${what} exited at start (${JSON.stringify(e)}):\n${out}`)));
  });
}

async function autocannon(url, token, seconds) {
  const bin = path.join(root, 'node_modules', 'autocannon', 'autocannon.js');
  const args = [bin, '-j', '-c', String(opts.connections), '-d', String(seconds), '-H', `authorization=Bearer ${token}`, url];
  const child = spawnTracked(...onCpu(1, process.execPath, args), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.resume();
  const { code } = await child.exited;
  if (code !== 0) throw new Error(`autocannon exited ${code}`);
  const r = JSON.parse(out);
  return {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    total: r.requests.total,
  };
}

/**
 * Share of CPU 0 used by processes other than `pids` (ours: upstream and proxy) while a measurement
 * runs: another program on the machine lowers the figures. Linux /proc only; null elsewhere.
 */
async function othersOnCpu0(pids) {
  const core = async () => {
    const line = (await readFile('/proc/stat', 'utf8')).split('\n').find((l) => l.startsWith('cpu0 '));
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    return { busy: user + nice + system + irq + softirq, total: user + nice + system + idle + iowait + irq + softirq + steal };
  };
  const mine = async () => {
    let t = 0;
    for (const pid of pids) {
      const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
      t += Number(f[11]) + Number(f[12]);
    }
    return t;
  };
  try {
    const [c0, m0] = await Promise.all([core(), mine()]);
    return async () => {
      const [c1, m1] = await Promise.all([core(), mine()]);
      return Math.round((Math.max(0, c1.busy - c0.busy - (m1 - m0)) / Math.max(1, c1.total - c0.total)) * 1000) / 10;
    };
  } catch {
    return async () => null;
  }
}

async function measure(url, token, serverPids) {
  if (opts.warmup > 0) await autocannon(url, token, opts.warmup);
  const others = PINNED ? await othersOnCpu0(serverPids) : async () => null;
  const r = await autocannon(url, token, opts.duration);
  r.othersOnCore0 = await others();
  return r;
}

/** Why nginx is not in part B's figures, when it is not. */
let nginxSkipped = null;
/** The nginx binary for part B, or null (with the reason printed) when nginx is left out. */
function nginxForRun() {
  if (a['skip-nginx']) nginxSkipped = 'skipped (--skip-nginx)';
  // Smoke mode runs wherever the tests run and must not change the machine: no apt-get.
  else if (SMOKE && !findNginx()) nginxSkipped = 'not installed, skipped in smoke mode (a full run installs it)';
  else return SMOKE ? findNginx() : ensureNginx(log);
  log(`nginx: ${nginxSkipped}`);
  return null;
}

async function partB(tmp) {
  const proxyBundle = path.join(tmp, 'gateway-proxy.mjs');
  // The options of `npm run build:container` (the shared ones, and the require banner undici needs).
  await build({
    entryPoints: [path.join(root, 'container/gateway-proxy.ts')],
    outfile: proxyBundle,
    ...NODE_BUNDLE,
    banner: REQUIRE_BANNER,
  });
  const upstreamFile = path.join(tmp, 'upstream.mjs');
  await writeFile(upstreamFile, UPSTREAM_SOURCE);
  await writeFile(path.join(tmp, 'credentials.json'), JSON.stringify({ version: 'bench', values: { GATEWAY_TOKEN } }), { mode: 0o600 });
  const nginxBin = nginxForRun();
  const nginxInfo = nginxBin ? nginxVersion(nginxBin) : null;
  if (nginxBin) log(`nginx: ${nginxBin} (${nginxInfo ?? 'version unknown'})`);

  // The JWKS is served from here: fetched once by the proxy, idle during the load.
  const jwksServer = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=3600' });
    res.end(jwksBody);
  });
  await new Promise((r) => jwksServer.listen(0, '127.0.0.1', r));
  const jwksUrl = `http://127.0.0.1:${jwksServer.address().port}/.well-known/jwks.json`;
  const { tokens } = makeTokens(1);
  const token = tokens[0];
  const results = [];
  try {
    for (const workUs of opts.work) {
      const upPort = await freePort();
      const proxyPort = await freePort();
      // Gateway, proxy and nginx share CPU 0, as gateway and proxy share the container's CPU;
      // autocannon has CPU 1.
      const upstream = spawnTracked(...onCpu(0, process.execPath, [upstreamFile, String(upPort), String(workUs)]), {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await waitForLine(upstream, /ready/, 'upstream');
      const proxy = spawnTracked(
        ...onCpu(0, process.execPath, [
          ...PROXY_NODE_FLAGS,
          proxyBundle,
          '--jwks',
          jwksUrl,
          '--issuer',
          ISSUER,
          '--audience',
          AUDIENCE,
          '--upstream',
          `http://127.0.0.1:${upPort}`,
          '--credentials',
          path.join(tmp, 'credentials.json'),
          '--port',
          String(proxyPort),
        ]),
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let nginx = null;
      try {
        await waitForLine(proxy, /"proxy_listening"/, 'proxy');
        const nginxPort = nginxBin ? await freePort() : null;
        if (nginxBin) {
          nginx = await startNginx({
            bin: nginxBin,
            dir: path.join(tmp, `nginx-${workUs}`),
            port: nginxPort,
            upstreamPort: upPort,
            gatewayToken: GATEWAY_TOKEN,
            spawn: (cmd, args, options) => spawnTracked(...onCpu(0, cmd, args), options),
          });
        }
        // One real request first through each: it must be accepted (and the proxy's JWKS fetched).
        for (const [name, port] of [
          ['proxy', proxyPort],
          ['nginx', nginxPort],
        ]) {
          if (port === null) continue;
          const check = await fetch(`http://127.0.0.1:${port}/`, { headers: { authorization: `Bearer ${token}` } });
          if (check.status !== 200) throw new Error(`${name} answered ${check.status} to the bench token`);
          await check.arrayBuffer();
        }
        const pids = [upstream.pid, proxy.pid, ...(nginx ? [nginx.pid, ...nginxWorkers(nginx.pid)] : [])];
        log(`part B, upstream work ${workUs} µs: direct`);
        const direct = await measure(`http://127.0.0.1:${upPort}/api/status`, token, pids);
        let viaNginx = null;
        if (nginx) {
          log(`part B, upstream work ${workUs} µs: through nginx`);
          viaNginx = await measure(`http://127.0.0.1:${nginxPort}/api/status`, token, pids);
        }
        log(`part B, upstream work ${workUs} µs: through the proxy`);
        const proxied = await measure(`http://127.0.0.1:${proxyPort}/api/status`, token, pids);
        results.push({ workUs, direct, nginx: viaNginx, proxied });
      } finally {
        if (nginx) await stop(nginx);
        await stop(proxy);
        await stop(upstream);
      }
    }
  } finally {
    await new Promise((r) => jwksServer.close(r));
  }
  return { nginx: nginxBin ? { bin: nginxBin, version: nginxInfo } : null, results };
}

// ---------------------------------------------------------------- report

function report(A, B) {
  const lines = [];
  const goal = (ok) => (ok ? 'goal met' : 'goal NOT met');
  /** A goal over measurements of which one shared CPU 0 with another program: no verdict. */
  const judged = (ok, ...ms) => {
    const worst = Math.max(...ms.map((m) => m?.othersOnCore0 ?? 0));
    return worst > DISTURBED_PCT ? `not judged: other processes used ${worst}% of CPU 0 during a measurement` : goal(ok);
  };
  lines.push('');
  lines.push(`Verifier and proxy (${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? '?'}, Node ${process.version})`);
  if (SMOKE) lines.push('smoke mode: a check that the bench starts and measures; these figures mean nothing');
  lines.push('');
  if (A.busyBefore !== null && A.busyBefore > 10)
    lines.push(`note: other processes used ${A.busyBefore}% of the CPUs just before part A: figures are low`);
  lines.push(
    `A. verifications/s, median of ${opts.runs} run(s); ${fmt(opts.tokens)} distinct first-seen tokens, ${opts.concurrency} in flight where said`,
  );
  const rows = [
    ['raw node:crypto Ed25519 verify, sync, one thread (baseline)', A.rawSync, ''],
    [`raw node:crypto Ed25519 verify, async, ${opts.concurrency} in flight`, A.rawAsync, `x${ratio(A.rawAsync, A.rawSync)} baseline`],
    ['verifier, first-seen, one at a time', A.oursOne, `x${ratio(A.oursOne, A.rawSync)} baseline`],
    [
      `verifier, first-seen, ${opts.concurrency} in flight`,
      A.oursMany,
      `x${ratio(A.oursMany, A.rawSync)} baseline, x${ratio(A.oursMany, A.rawAsync)} raw async`,
    ],
    ['verifier, repeated tokens (cache hits), one at a time', A.repeated, `x${ratio(A.repeated, A.rawSync)} baseline`],
  ];
  for (const [label, v, r] of rows) lines.push(`  ${label.padEnd(64)} ${fmt(v).padStart(11)}/s  ${r}`);
  const firstSeen = ratio(A.oursMany, A.rawSync);
  lines.push(
    `  first-seen ${opts.concurrency} in flight / baseline: x${firstSeen} (goal >= 0.85: ${goal(firstSeen >= 0.85)}); like for like (both ${opts.concurrency} in flight): x${ratio(A.oursMany, A.rawAsync)}`,
  );
  lines.push(`  repeated / baseline: x${ratio(A.repeated, A.rawSync)} (goal >= 10: ${goal(A.repeated / A.rawSync >= 10)})`);
  if (B) {
    lines.push('');
    lines.push(
      `B. requests/s with autocannon, ${opts.connections} connections, ${opts.warmup} s warm-up + ${opts.duration} s; ` +
        `${PINNED ? 'upstream, nginx and proxy on CPU 0, autocannon on CPU 1' : SMOKE ? 'not pinned (smoke mode)' : 'NOT pinned (no taskset or one CPU)'}; one bearer token (cache hits, as the Worker reuses a user's token)`,
    );
    lines.push(
      B.nginx
        ? `  nginx: ${B.nginx.version ?? B.nginx.bin}, one worker, keep-alive upstream, no access log`
        : `  nginx: not measured: ${nginxSkipped}`,
    );
    for (const { workUs, direct, nginx, proxied } of B.results) {
      const label = workUs === 0 ? 'no-op upstream' : `upstream spending ${workUs} µs CPU per request`;
      lines.push(`  ${label}:`);
      for (const [name, m] of [
        ['direct to upstream', direct],
        ['through nginx', nginx],
        ['through the proxy', proxied],
      ]) {
        if (!m) continue;
        const bad = m.non2xx + m.errors;
        lines.push(
          `    ${name.padEnd(20)} ${fmt(m.rps).padStart(8)} req/s  p50 ${String(m.p50).padStart(3)} ms  p99 ${String(m.p99).padStart(3)} ms` +
            `  x${ratio(m.rps, direct.rps).toFixed(2)} direct${nginx ? `  x${ratio(m.rps, nginx.rps).toFixed(2)} nginx` : ''}` +
            `${bad ? `  FAILED: ${m.non2xx} non-2xx, ${m.errors} errors` : ''}` +
            `${m.othersOnCore0 != null && m.othersOnCore0 > 5 ? `  (other processes used ${m.othersOnCore0}% of CPU 0)` : ''}`,
        );
      }
      const r = ratio(proxied.rps, direct.rps);
      if (workUs === 0) {
        const vsNginx = nginx
          ? `; proxy / nginx: x${ratio(proxied.rps, nginx.rps)} req/s, p99 ${proxied.p99} vs ${nginx.p99} ms ` +
            `(goal: req/s >= nginx and p99 <= nginx: ${judged(proxied.rps >= nginx.rps && proxied.p99 <= nginx.p99, proxied, nginx)})`
          : '; proxy / nginx: not measured';
        lines.push(`    proxy / direct: x${r}${vsNginx}`);
      } else {
        lines.push(
          `    proxy / direct: x${r} (goal >= ${DIRECT_GOAL}: ${judged(r >= DIRECT_GOAL, proxied, direct)})${nginx ? `; proxy / nginx: x${ratio(proxied.rps, nginx.rps)}` : ''}`,
        );
      }
    }
  }
  return lines.join('\n');
}

const tmp = await mkdtemp(path.join(os.tmpdir(), 'verify-bench-'));
const cleanup = async () => {
  await stopAll();
  await rm(tmp, { recursive: true, force: true });
};
installSignalHandlers(cleanup);
/** What is missing or failed in the figures: each one fails the bench. */
function problems(A, B) {
  const out = [];
  for (const k of ['rawSync', 'rawAsync', 'oursOne', 'oursMany', 'repeated']) {
    if (!(Number.isFinite(A[k]) && A[k] > 0)) out.push(`part A: no figure for ${k}`);
  }
  for (const { workUs, direct, nginx, proxied } of B?.results ?? []) {
    for (const [name, m] of [
      ['direct', direct],
      ['nginx', nginx],
      ['proxy', proxied],
    ]) {
      if (!m) continue;
      if (!(m.total > 0 && m.rps > 0)) out.push(`part B, work ${workUs} µs, ${name}: no request answered`);
      if (m.non2xx + m.errors) out.push(`part B, work ${workUs} µs, ${name}: ${m.non2xx} non-2xx, ${m.errors} errors`);
    }
  }
  return out;
}

let ok = false;
try {
  const A = await partA(tmp);
  const B = a['skip-proxy'] ? null : await partB(tmp);
  console.log(report(A, B));
  const failed = problems(A, B);
  for (const p of failed) console.log(`FAIL: ${p}`);
  const date = new Date().toISOString();
  const out = resultsFile(a.out, 'verify', path.join(root, 'bench', 'results', `verify-${date.slice(0, 10)}.json`));
  await mkdir(path.dirname(out), { recursive: true });
  const git = gitState(root, [
    'src/verifier',
    'container',
    'scripts/build-container.mjs',
    'scripts/bundle-options.mjs',
    'package.json',
    'package-lock.json',
  ]);
  await writeFile(
    out,
    `${JSON.stringify({ date, smoke: SMOKE, git, machine: machine(), options: opts, pinned: PINNED, verify: A, nginx: B?.nginx ?? (nginxSkipped ? { skipped: nginxSkipped } : null), proxy: B?.results ?? null, problems: failed }, null, 2)}\n`,
  );
  const shown = path.relative(process.cwd(), out);
  console.log(`\nfigures: ${shown.startsWith('..') ? out : shown}`);
  ok = failed.length === 0;
} catch (e) {
  log(e.stack ?? e);
} finally {
  await cleanup();
}
process.exit(ok ? 0 : 1);
