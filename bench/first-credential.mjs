#!/usr/bin/env node
// `npm run bench:first-credential`: time to first credential. Runs the real container/start.sh with
// the agent and proxy bundles built into its temporary folder, a local Worker (workerd) as the
// issuer, a fresh bootstrap file per run and a marker process as the gateway, and splits the time
// from start.sh's start to (1) credentials.json on disk and (2) the gateway's start, with the
// agent's own timing line (AGENT_TIMING=1, container/agent/timing.ts). Beside it, interleaved in
// the same run: the agent's --once alone and bare `node` starts, the baseline of the goal (the
// agent adds at most 300 ms over a bare node start). See bench/README.md, "Time to first credential".
import { execFile } from 'node:child_process';
import { closeSync, createWriteStream, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { register } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import {
  freePort,
  installSignalHandlers,
  onCpu,
  PINNED,
  run as runTracked,
  shuttingDown,
  spawnTracked,
  stopAll,
} from './lib/processes.mjs';
import { gitState, machine, packageVersion } from './lib/run-info.mjs';
import { resultsFile, SMOKE } from './lib/smoke.mjs';
import { buildBundle, startWorkerd, tail, workerBindings, writeConfig } from './lib/workerd.mjs';

const USAGE = `usage: npm run bench:first-credential -- [options]
  --runs N           measured rounds; each runs start.sh, the agent's --once alone and three bare
                     node starts once, in an order that rotates every round (20)
  --warmup N         unrecorded rounds first (1)
  --compare-ref REF  also the agent as built from git commit REF (e.g. HEAD, main~3), in every
                     round: before/after figures for an agent change from one run
  --compare-lib DIR  the same with an agent already built (DIR/refresh.mjs), e.g. a variant
  --openclaw-hook    start.sh's --once step runs the default change hook of the OpenClaw gateway
                     (openclaw-reload.mjs; no gateway listens yet, as at a container's start)
  --out FILE         results file (bench/results/first-credential-<date>.json)
  --keep-tmp         keep the temporary folder (logs; it also holds the runs' bootstrap files and
                     credentials)
  --smoke            smallest run, to check that the bench starts (also BENCH_SMOKE=1): 2 rounds,
                     no warm-up, unpinned; results to a temporary folder unless --out. See bench/README.md`;

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const log = (...m) => console.error('[bench]', ...m);
const run = promisify(execFile);

/** The goal: the agent's --once adds at most this over a bare `node` start. */
const GOAL_MS = 300;
/** A run that has not ended by then is stuck (start.sh retries a refused --once every 2 s, forever). */
const RUN_TIMEOUT_MS = 30_000;
/** SIGTERM to a stuck start.sh's process group first; SIGKILL after this. */
const STOP_GRACE_MS = 3_000;
/** After a run exits, how long its output pipes may stay open (held by something it left behind). */
const OUTPUT_CLOSE_MS = 5_000;
/** Where start.sh and every measured node run when pinned; the issuer (workerd) gets CPU 0, as in bench:token. */
const AGENT_CPU = 1;
/**
 * The bare module: Node's own start and the moment its entry module runs, the way timing.ts takes
 * them (process.hrtime, converted once the mark is taken, since `performance` loads modules).
 */
const MARKS_MODULE = `const loaded = Number(process.hrtime.bigint()) / 1e6;
const { user, system } = process.cpuUsage();
const p = globalThis.performance;
const start = Number(process.hrtime.bigint()) / 1e6 - p.now();
const line = { event: 'startup_timing', node_ready: p.nodeTiming.bootstrapComplete, loaded: loaded - start, cpu: (user + system) / 1000 };
process.stdout.write(JSON.stringify(line) + '\\n');
`;

const DEFAULTS = { runs: '20', warmup: '1' };
const SMOKE_DEFAULTS = { runs: '2', warmup: '0' };
const { values: given } = parseArgs({
  options: {
    runs: { type: 'string' },
    warmup: { type: 'string' },
    'compare-ref': { type: 'string' },
    'compare-lib': { type: 'string' },
    'openclaw-hook': { type: 'boolean', default: false },
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
function int(name, min) {
  const n = Number(a[name]);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be an integer >= ${min}\n${USAGE}`);
    process.exit(2);
  }
  return n;
}
if (a['compare-ref'] && a['compare-lib']) {
  console.error(`--compare-ref and --compare-lib: one or the other\n${USAGE}`);
  process.exit(2);
}
const opts = {
  runs: int('runs', 1),
  warmup: int('warmup', 0),
  ref: a['compare-ref'],
  otherLib: a['compare-lib'],
  hook: a['openclaw-hook'],
};
const COMPARING = Boolean(opts.ref || opts.otherLib);

// 'other': the agent of --compare-ref or --compare-lib.
const KINDS = ['start.sh', 'agent', ...(COMPARING ? ['other'] : []), 'node -e 0', 'node empty', 'node marks'];

// ---------------------------------------------------------------- small helpers

/**
 * Date.now() at the moment it ticks over to the next millisecond: an epoch time good to a few µs on
 * the clock that `date` and the agent's performance.timeOrigin read. performance.now() of this
 * long-running process would drift from that clock by whatever NTP slews meanwhile.
 */
function wallClockEdge() {
  const t = Date.now();
  let n = Date.now();
  while (n === t) n = Date.now();
  return n;
}

const round = (x, d = 1) => (x == null ? null : Math.round(x * 10 ** d) / 10 ** d);
/** Nearest-rank percentile. */
function percentile(xs, p) {
  const s = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((x, y) => x - y);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : null;
}
const stats = (xs) => ({ median: round(percentile(xs, 50)), p90: round(percentile(xs, 90)), n: xs.length });

// ---------------------------------------------------------------- the processes

/** start.sh runs in a process group of its own: a stuck one is stopped with everything it started. */
const groups = new Set();
function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    /* already gone */
  }
}
async function stopGroups() {
  await Promise.all(
    [...groups].map(async (child) => {
      killGroup(child, 'SIGTERM');
      let timer;
      const timedOut = new Promise((resolve) => {
        timer = setTimeout(() => resolve(true), STOP_GRACE_MS);
      });
      if (await Promise.race([child.exited.then(() => false), timedOut])) killGroup(child, 'SIGKILL');
      clearTimeout(timer);
      groups.delete(child);
    }),
  );
}
process.on('exit', () => {
  for (const child of groups) killGroup(child, 'SIGKILL');
});

/**
 * Runs `cmd args` on the agent's CPU, its stdout and stderr through pipes (as a container's log
 * collector takes them) into `logFile`; resolves when it exits, with its status, its wall time
 * (spawn to exit, ms) and the epoch it was spawned at.
 */
async function timed(cmd, args, { env, logFile, group = false }) {
  const out = createWriteStream(logFile);
  const [c, argv] = onCpu(AGENT_CPU, cmd, args);
  const spawnedAt = wallClockEdge();
  const start = performance.now();
  const child = spawnTracked(c, argv, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: group });
  let end;
  child.once('exit', () => {
    end = performance.now();
  });
  const closed = new Promise((resolve) => child.once('close', resolve));
  child.stdout.pipe(out, { end: false });
  child.stderr.pipe(out, { end: false });
  if (group) groups.add(child);
  let timer;
  const timedOut = new Promise((resolve) => {
    timer = setTimeout(() => resolve('timeout'), RUN_TIMEOUT_MS);
  });
  const outcome = await Promise.race([child.exited, timedOut]);
  clearTimeout(timer);
  if (outcome === 'timeout') await (group ? stopGroups() : stopAll());
  const waited = new AbortController();
  await Promise.race([closed, delay(OUTPUT_CLOSE_MS, undefined, { signal: waited.signal }).catch(() => undefined)]);
  waited.abort();
  child.stdout.unpipe(out);
  child.stderr.unpipe(out);
  await new Promise((resolve) => out.end(resolve));
  if (outcome === 'timeout') {
    throw new Error(`${path.basename(cmd)} did not end within ${RUN_TIMEOUT_MS / 1000} s:\n${await tail(logFile)}`);
  }
  groups.delete(child);
  if (outcome.error) throw outcome.error;
  return { code: outcome.code, signal: outcome.signal, wall_ms: end - start, spawned_at: spawnedAt };
}

/** The agent's timing line's fields, from their one home (container/agent/timing.ts), through the project's TS hook. */
register(new URL('../scripts/ts-hooks.mjs', import.meta.url));
const AGENT_MARKS = (await import('../container/agent/timing.ts')).STARTUP_TIMING_FIELDS;
/**
 * The `startup_timing` line in `logFile`: exactly one, with every one of `marks` a number. With
 * `optional`, none is null (another commit's agent may have no timing line).
 */
async function timingLine(logFile, marks, optional = false) {
  const lines = (await readFile(logFile, 'utf8'))
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes('"startup_timing"'))
    .map((l) => JSON.parse(l));
  if (optional && lines.length === 0) return null;
  if (lines.length !== 1) throw new Error(`${lines.length} startup_timing lines (one expected):\n${await tail(logFile)}`);
  const missing = marks.filter((m) => typeof lines[0][m] !== 'number');
  if (missing.length) throw new Error(`startup_timing without ${missing.join(', ')}:\n${await tail(logFile)}`);
  return Object.fromEntries(marks.map((m) => [m, lines[0][m]]));
}

/** What a successful --once leaves: the three files, credentials.json with a version. Nothing of them is printed. */
async function checkFiles(dir) {
  for (const f of ['token', 'state.json']) await stat(path.join(dir, f));
  const creds = JSON.parse(await readFile(path.join(dir, 'credentials.json'), 'utf8'));
  if (typeof creds.version !== 'string' || !creds.values) throw new Error(`${dir}/credentials.json has no version or values`);
}

/**
 * The agent as built from commit `ref`: its sources (git archive) in `dir`, the project's
 * node_modules linked in, bundled by that commit's own build script into `dir/lib`.
 */
async function buildRef(ref, dir) {
  const commit = await run('git', ['rev-parse', '--verify', '--quiet', `${ref}^{commit}`], { cwd: projectRoot }).then(
    ({ stdout }) => stdout.trim(),
    () => {
      throw new Error(`--compare-ref ${ref}: not a commit of this repository`);
    },
  );
  const src = path.join(dir, 'src');
  await mkdir(src, { recursive: true });
  const tar = path.join(dir, 'src.tar');
  await run('git', ['archive', '--format=tar', '-o', tar, commit, 'container', 'src', 'scripts', 'package.json', 'tsconfig.json'], {
    cwd: projectRoot,
  });
  await run('tar', ['-xf', tar, '-C', src]);
  await symlink(path.join(projectRoot, 'node_modules'), path.join(src, 'node_modules'));
  await buildAgent(src, path.join(dir, 'lib'), path.join(dir, 'build.log'));
  return { label: `agent@${commit.slice(0, 7)}`, commit, lib: path.join(dir, 'lib') };
}

/** The agent of --compare-lib: DIR/refresh.mjs, as it is. */
async function prebuilt(dir) {
  const lib = path.resolve(dir);
  await stat(path.join(lib, 'refresh.mjs')).catch(() => {
    throw new Error(`--compare-lib ${dir}: no refresh.mjs in it`);
  });
  return { label: `agent@${path.basename(lib)}`, commit: null, lib };
}

/** `scripts/build-container.mjs --outdir outdir` of the sources in `root` (a child stopped with the others), output to `logFile`. */
async function buildAgent(root, outdir, logFile) {
  const fd = openSync(logFile, 'w');
  try {
    const code = await runTracked(process.execPath, [path.join(root, 'scripts', 'build-container.mjs'), '--outdir', outdir], {
      cwd: root,
      stdio: ['ignore', fd, fd],
    });
    if (code !== 0) throw new Error(`build-container.mjs exited ${code}:\n${await tail(logFile)}`);
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------- one round

/** The phases of one start.sh run, in ms, from the agent's marks (since its process start) and the two outside times. */
function startShPhases(r) {
  const m = r.timing;
  const agentStart = m.time_origin;
  return {
    bash: agentStart - r.spawned_at,
    node_up: m.node_ready,
    code_loaded: m.loaded - m.node_ready,
    process_start: m.loaded,
    bootstrap_read: m.bootstrap_read - m.loaded,
    keys: m.keys_ready - m.bootstrap_read,
    dir: m.dir_ready - m.keys_ready,
    assertion: m.request_sent - m.dir_ready,
    http: m.answer_read - m.request_sent,
    decrypt: m.writes_started - m.answer_read,
    token_request: m.writes_started - m.dir_ready,
    writes: m.state_written - m.writes_started,
    credentials_write: m.credentials_written - m.writes_started,
    once_end: m.done - m.state_written,
    exit_to_gateway: r.gateway_at - (agentStart + m.done),
    to_credentials: agentStart + m.credentials_written - r.spawned_at,
    to_gateway: r.gateway_at - r.spawned_at,
  };
}

function makeRound(ctx) {
  const { tmp, lib, otherLib, origin, adminToken, env } = ctx;

  /** A fresh bootstrap file for sandbox `id` (POST /api/admin/sandboxes/:id/bootstrap), 0600 in `dir`. */
  async function bootstrap(id, dir) {
    const res = await fetch(`${origin}/api/admin/sandboxes/${id}/bootstrap`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}` },
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`bootstrap answered ${res.status}`);
    if (typeof JSON.parse(text).key?.d !== 'string') throw new Error('bootstrap answer has no private key');
    const file = path.join(dir, 'bootstrap.json');
    await writeFile(file, text, { mode: 0o600 });
    return file;
  }

  async function once(agentLib, name, dir, optional = false) {
    const boot = await bootstrap(`fc-${name}`, dir);
    const creds = path.join(dir, 'credentials');
    const logFile = path.join(dir, 'agent.log');
    const r = await timed(
      process.execPath,
      [path.join(agentLib, 'refresh.mjs'), '--once', '--bootstrap-key', boot, '--dir', creds, '--issuer', origin],
      { logFile, env: { ...env, AGENT_TIMING: '1' } },
    );
    if (r.code !== 0) throw new Error(`the agent's --once exited ${r.code ?? r.signal}:\n${await tail(logFile)}`);
    await checkFiles(creds);
    const timing = await timingLine(logFile, AGENT_MARKS, optional);
    if (!timing) return r;
    // From its exit call to the exit its parent sees: Node's teardown, part of every start.sh step.
    return { ...r, timing, exit_ms: r.spawned_at + r.wall_ms - (timing.time_origin + timing.done) };
  }

  async function bare(args, dir, marks) {
    const logFile = path.join(dir, 'node.log');
    const r = await timed(process.execPath, args, { logFile, env });
    if (r.code !== 0) throw new Error(`node ${args.join(' ')} exited ${r.code ?? r.signal}:\n${await tail(logFile)}`);
    return marks ? { ...r, timing: await timingLine(logFile, marks) } : r;
  }

  const runs = {
    async 'start.sh'(name, dir) {
      const boot = await bootstrap(`fc-${name}`, dir);
      const creds = path.join(dir, 'credentials');
      const mark = path.join(dir, 'gateway-started');
      if (mark.includes("'")) throw new Error(`a temporary path with a quote cannot go into GATEWAY_COMMAND: ${mark}`);
      const [agentPort, proxyPort, gatewayPort] = await Promise.all([freePort(), freePort(), freePort()]);
      const logFile = path.join(dir, 'start.log');
      const r = await timed('bash', [path.join(projectRoot, 'container', 'start.sh')], {
        logFile,
        group: true,
        env: {
          ...env,
          AGENT_TIMING: '1',
          CREDENTIAL_AGENT_LIB: lib,
          BOOTSTRAP_KEY_FILE: boot,
          CREDENTIALS_DIR: creds,
          CREDENTIALS_FILE: path.join(creds, 'credentials.json'),
          ISSUER_URL: origin,
          JWKS_URL: `${origin}/.well-known/jwks.json`,
          EXPECTED_ISSUER: origin,
          EXPECTED_AUDIENCE: 'gateway:bench',
          UPSTREAM_URL: `http://127.0.0.1:${gatewayPort}`,
          AGENT_PORT: String(agentPort),
          PROXY_PORT: String(proxyPort),
          // Nothing listens there: with --openclaw-hook, the hook finds no gateway yet, as at a real start.
          GATEWAY_PORT: String(gatewayPort),
          // The marker gateway: `date` exec'd by start.sh's `bash -c "exec $GATEWAY_COMMAND"`, so the
          // time it writes is when the gateway's own program starts. It exits at once, and start.sh
          // then stops the agent and the proxy and exits 0: the end of the run.
          GATEWAY_COMMAND: `date +%s%N > '${mark}'`,
          ...(opts.hook ? { ON_CHANGE: `node ${lib}/openclaw-reload.mjs` } : {}),
          // No platform CA here; start.sh would otherwise look for the Sandbox image's.
          PLATFORM_CA: path.join(dir, 'no-platform-ca.crt'),
        },
      });
      if (r.code !== 0) throw new Error(`start.sh exited ${r.code ?? r.signal}:\n${await tail(logFile)}`);
      const ns = (await readFile(mark, 'utf8').catch(() => '')).trim();
      if (!/^\d{19}$/.test(ns))
        throw new Error(`the marker gateway wrote no time (${JSON.stringify(ns.slice(0, 40))}):\n${await tail(logFile)}`);
      await checkFiles(creds);
      const done = { ...r, timing: await timingLine(logFile, AGENT_MARKS), gateway_at: Number(BigInt(ns) / 1000n) / 1000 };
      return { ...done, phases: startShPhases(done) };
    },
    agent: (name, dir) => once(lib, name, dir),
    // Another commit's agent may have no timing line: then only its wall time is compared.
    other: (name, dir) => once(otherLib, name, dir, true),
    'node -e 0': (_name, dir) => bare(['-e', '0'], dir, null),
    'node empty': (_name, dir) => bare([path.join(tmp, 'empty.mjs')], dir, null),
    'node marks': (_name, dir) => bare([path.join(tmp, 'marks.mjs')], dir, ['node_ready', 'loaded', 'cpu']),
  };

  /** Round `n`: every kind once, the order rotated by n so that none always follows the same one. */
  return async (n, label) => {
    const order = KINDS.map((_, i) => KINDS[(i + n) % KINDS.length]);
    const out = {};
    for (const [i, kind] of order.entries()) {
      if (shuttingDown()) throw new Error('interrupted');
      const name = `${label}-${i}`;
      const dir = path.join(tmp, 'runs', name);
      await mkdir(dir, { recursive: true });
      out[kind] = { position: i, ...(await runs[kind](name, dir)) };
    }
    return out;
  };
}

// ---------------------------------------------------------------- report

const PHASE_ROWS = [
  ['bash', 'start.sh until the agent process starts (bash, the script, exec)'],
  ['node_up', "node up (Node's own bootstrap)"],
  ['code_loaded', "agent code loaded (the ESM loader, the bundle, Node's modules it imports)"],
  ['bootstrap_read', 'bootstrap file read and checked'],
  ['keys', 'keys: bootstrap key imported, X25519 key pair made'],
  ['dir', 'output directory prepared, previous files read back'],
  ['assertion', 'token request: client assertion signed'],
  ['http', "token request: HTTP round trip (the Worker's work in it)"],
  ['decrypt', 'token request: answer checked, credentials decrypted'],
  ['writes', 'files: credentials.json, token, state.json (fsync each)'],
  ['credentials_write', '  of which credentials.json'],
  ['once_end', '--once end (log line, change hook, exit call)'],
  ['exit_to_gateway', '--once exit call -> gateway process start'],
  ['to_credentials', '= start.sh start -> credentials.json on disk'],
  ['to_gateway', '= start.sh start -> gateway process started'],
];

function tableOf(head, rows) {
  const all = [head, ...rows];
  const width = head.map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)));
  const line = (cells) =>
    cells
      .map((x, c) => (c === 0 ? (x ?? '').padEnd(width[c]) : (x ?? '').padStart(width[c])))
      .join('  ')
      .trimEnd();
  return [line(head), line(width.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
const ms = (x, sign = false) => (x == null ? '-' : `${sign && x >= 0 ? '+' : ''}${x.toFixed(1)}`);
const cell = (s, sign = false) => (s ? `${ms(s.median, sign)} (${ms(s.p90, sign)})` : '-');

function summarize(rounds) {
  const of = (kind, f) => rounds.map((r) => f(r[kind]));
  const phases = Object.fromEntries(
    [...PHASE_ROWS.map(([k]) => k), 'process_start', 'token_request'].map((k) => [k, stats(of('start.sh', (r) => r.phases[k]))]),
  );
  const wall = Object.fromEntries(KINDS.map((k) => [k, stats(of(k, (r) => r.wall_ms))]));
  // Paired: each round's agent against the same round's other run, so that load which comes and
  // goes during the bench falls on both.
  const paired = (x, y, f = (r) => r.wall_ms) => stats(rounds.map((r) => f(r[x]) - f(r[y])));
  const loading = (r) => r.timing.loaded - r.timing.node_ready;
  return {
    start_sh_phases_ms: phases,
    wall_ms: wall,
    agent_alone_ms: {
      node_up: stats(of('agent', (r) => r.timing.node_ready)),
      code_loaded: stats(of('agent', loading)),
      to_credentials: stats(of('agent', (r) => r.timing.credentials_written)),
      cpu: stats(of('agent', (r) => r.timing.cpu)),
      to_exit_call: stats(of('agent', (r) => r.timing.done)),
      exit: stats(of('agent', (r) => r.exit_ms)),
    },
    bare_module_ms: {
      node_up: stats(of('node marks', (r) => r.timing.node_ready)),
      code_loaded: stats(of('node marks', loading)),
      cpu: stats(of('node marks', (r) => r.timing.cpu)),
    },
    agent_cpu_over_bare_module_ms: paired('agent', 'node marks', (r) => r.timing.cpu),
    agent_over_node_e0_ms: paired('agent', 'node -e 0'),
    agent_over_node_empty_module_ms: paired('agent', 'node empty'),
    agent_code_loading_over_bare_module_ms: paired('agent', 'node marks', loading),
    agent_over_node_e0_ratio: round(wall.agent.median / wall['node -e 0'].median, 2),
    ...(COMPARING ? { other_agent: otherSummary(rounds, paired, loading) } : {}),
  };
}

/** The --compare-ref/--compare-lib agent: against this tree's, paired by round; its own marks if it has them. */
function otherSummary(rounds, paired, loading) {
  const timed = rounds.every((r) => r.other.timing);
  const of = (f) => stats(rounds.map((r) => f(r.other)));
  return {
    agent_minus_other_ms: paired('agent', 'other'),
    other_over_node_e0_ms: paired('other', 'node -e 0'),
    ...(timed
      ? {
          node_up: of((r) => r.timing.node_ready),
          code_loaded: of(loading),
          cpu: of((r) => r.timing.cpu),
          agent_minus_other_code_loaded_ms: paired('agent', 'other', loading),
          agent_minus_other_cpu_ms: paired('agent', 'other', (r) => r.timing.cpu),
        }
      : {}),
  };
}

function print(s, rounds, other) {
  console.log(
    `\nTime to first credential: container/start.sh with the built agent and proxy, workerd as the issuer, a marker gateway; ` +
      `${rounds} round(s)${opts.warmup ? ` after ${opts.warmup} warm-up round(s)` : ''}, interleaved; ` +
      `${PINNED ? `start.sh and every measured node on CPU ${AGENT_CPU}, workerd on CPU 0` : SMOKE ? 'not pinned (smoke mode)' : 'NOT pinned (no taskset or one CPU)'}` +
      `${opts.hook ? '; change hook: openclaw-reload.mjs' : '; no change hook'}\n`,
  );
  if (SMOKE) console.log('smoke mode: a check that the bench starts and measures; these figures mean nothing\n');
  const p = s.start_sh_phases_ms;
  console.log(
    tableOf(
      ['start.sh run', 'median ms', 'p90 ms'],
      PHASE_ROWS.map(([k, label]) => [label, ms(p[k].median), ms(p[k].p90)]),
    ),
  );
  const w = s.wall_ms;
  // Columns: agent, [the other agent], node -e 0, empty module, marks module.
  const o = s.other_agent;
  const row = (label, agent, theOther, e0, empty, marks) => [label, agent, ...(other ? [theOther] : []), e0, empty, marks];
  const rows = [
    row('node up (bootstrap)', cell(s.agent_alone_ms.node_up), cell(o?.node_up), '-', '-', cell(s.bare_module_ms.node_up)),
    row(
      'entry module loaded and running',
      cell(s.agent_alone_ms.code_loaded),
      cell(o?.code_loaded),
      '-',
      '-',
      cell(s.bare_module_ms.code_loaded),
    ),
    row(
      'CPU time used (user + system)',
      `${cell(s.agent_alone_ms.cpu)} *`,
      o?.cpu ? `${cell(o.cpu)} *` : '-',
      '-',
      '-',
      `${cell(s.bare_module_ms.cpu)} *`,
    ),
    row('spawn -> exit', cell(w.agent), cell(w.other), cell(w['node -e 0']), cell(w['node empty']), cell(w['node marks'])),
  ];
  const head = row('same rounds, ms: median (p90)', 'agent --once', other?.label, 'node -e 0', 'node, empty module', 'node, marks module');
  console.log(`\n${tableOf(head, rows)}`);
  console.log("* the agent's by its exit call, the marks module's by its first statement");
  console.log(
    `\nagent over node -e 0 (paired by round): ${ms(s.agent_over_node_e0_ms.median, true)} ms median, ${ms(s.agent_over_node_e0_ms.p90, true)} p90 (x${s.agent_over_node_e0_ratio})`,
  );
  console.log(
    `agent over node on an empty module: ${ms(s.agent_over_node_empty_module_ms.median, true)} ms median, ${ms(s.agent_over_node_empty_module_ms.p90, true)} p90`,
  );
  console.log(
    `agent's code loading over a bare module's: ${ms(s.agent_code_loading_over_bare_module_ms.median, true)} ms median, ${ms(s.agent_code_loading_over_bare_module_ms.p90, true)} p90`,
  );
  console.log(
    `agent's CPU time over a bare module's: ${ms(s.agent_cpu_over_bare_module_ms.median, true)} ms median, ${ms(s.agent_cpu_over_bare_module_ms.p90, true)} p90`,
  );
  console.log(`agent's exit (exit call -> exit seen by its parent): ${cell(s.agent_alone_ms.exit)} ms`);
  if (other) {
    const d = (x) => `${ms(x.median, true)} ms median, ${ms(x.p90, true)} p90`;
    console.log(`agent minus ${other.label} (paired by round): spawn -> exit ${d(o.agent_minus_other_ms)}`);
    if (o.agent_minus_other_cpu_ms) {
      console.log(`  code loading ${d(o.agent_minus_other_code_loaded_ms)}; CPU time ${d(o.agent_minus_other_cpu_ms)}`);
    }
  }
  const over = s.agent_over_node_e0_ms;
  console.log(
    `goal: the agent adds at most ${GOAL_MS} ms over a bare node start: ${over.median <= GOAL_MS ? 'met' : 'NOT met'} ` +
      `(${ms(over.median, true)} ms median, ${ms(over.p90, true)} ms p90, over node -e 0)`,
  );
}

// ---------------------------------------------------------------- main

const round1 = (x) => Math.round(x * 10) / 10;
/** One run as the results file keeps it: times only. */
function runRecord(v) {
  const r = (o) => (o ? Object.fromEntries(Object.entries(o).map(([k, x]) => [k, round(x, 2)])) : undefined);
  return {
    position: v.position,
    wall_ms: round(v.wall_ms, 2),
    exit_ms: round(v.exit_ms, 2) ?? undefined,
    phases: r(v.phases),
    marks: r(v.timing),
  };
}

async function main(tmp) {
  const started = Date.now();
  const loadavgAtStart = os.loadavg()[0];
  log(`temporary folder ${tmp}`);
  const lib = path.join(tmp, 'lib');
  // Everything into the temporary folder: the tree (dist/) stays as it is.
  // All settled before a failure is reported: none of them is still writing into the folder then.
  const built = await Promise.allSettled([
    buildAgent(projectRoot, lib, path.join(tmp, 'build-agent.log')),
    buildBundle(projectRoot, path.join(tmp, 'bundle'), path.join(tmp, 'build.log')),
    opts.ref ? buildRef(opts.ref, path.join(tmp, 'ref')) : opts.otherLib ? prebuilt(opts.otherLib) : null,
    writeFile(path.join(tmp, 'empty.mjs'), ''),
    writeFile(path.join(tmp, 'marks.mjs'), MARKS_MODULE),
  ]);
  const failed = built.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  const other = built[2].value;
  const agentBytes = (await stat(path.join(lib, 'refresh.mjs'))).size;
  log(`agent${other ? ` (and ${other.label})` : ''} and Worker built (${((Date.now() - started) / 1000).toFixed(1)} s)`);

  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const bindings = await workerBindings(projectRoot, origin);
  const configFile = await writeConfig({ dir: tmp, bundleName: 'bundle', port, bindings, storageDir: path.join(tmp, 'do-storage') });
  const server = await startWorkerd({ projectRoot, dir: tmp, configFile, origin, logFile: path.join(tmp, 'workerd.log') });
  log(`workerd up (pid ${server.pid}) at ${origin}`);

  // Every child gets only this: the bench's own `node` first on PATH (start.sh runs `node`).
  const env = { PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? '/usr/bin:/bin'}` };
  const oneRound = makeRound({ tmp, lib, otherLib: other?.lib, origin, adminToken: bindings.ADMIN_TOKEN, env });
  for (let i = 0; i < opts.warmup; i++) {
    log(`warm-up round ${i + 1}/${opts.warmup}`);
    await oneRound(i, `w${i}`);
  }
  const rounds = [];
  for (let i = 0; i < opts.runs; i++) {
    if (shuttingDown()) return false;
    rounds.push(await oneRound(i, `r${i}`));
    if ((i + 1) % 5 === 0 || i + 1 === opts.runs) log(`round ${i + 1}/${opts.runs}`);
  }
  if (shuttingDown()) return false;

  const summary = summarize(rounds);
  print(summary, rounds.length, other);
  const date = new Date().toISOString();
  const outFile = resultsFile(
    a.out,
    'first-credential',
    path.join(projectRoot, 'bench', 'results', `first-credential-${date.slice(0, 10)}.json`),
  );
  const result = {
    bench: 'time to first credential: container/start.sh to credentials.json on disk and to the gateway process start',
    date,
    smoke: SMOKE,
    git: gitState(projectRoot, [
      'container',
      'src',
      'scripts/build-container.mjs',
      'scripts/bundle-options.mjs',
      'package.json',
      'package-lock.json',
    ]),
    compared_with: other ? { label: other.label, ref: opts.ref ?? null, commit: other.commit, lib: opts.otherLib ?? null } : null,
    machine: { ...machine(), loadavg_1m: { start: round1(loadavgAtStart), end: round1(os.loadavg()[0]) } },
    packages: Object.fromEntries(['workerd', 'wrangler', 'jose', 'esbuild'].map((n) => [n, packageVersion(projectRoot, n)])),
    method: {
      runs: opts.runs,
      warmup_rounds: opts.warmup,
      pinning: PINNED ? `workerd on CPU 0; start.sh, the agent and the bare node starts on CPU ${AGENT_CPU} (taskset)` : 'none',
      issuer: 'wrangler deploy --dry-run bundle served by workerd serve (bench/lib/workerd.mjs), 600 s agent tokens',
      agent_bundle_bytes: agentBytes,
      change_hook: opts.hook ? 'openclaw-reload.mjs, no gateway listening' : 'none',
      gateway: 'date +%s%N, exec by start.sh',
      rounds: `each round: ${KINDS.join(', ')}, the order rotated by one every round; a fresh bootstrap file (and sandbox) for each agent run`,
      phases:
        'from the agent process (AGENT_TIMING=1: marks since its start, and its performance.timeOrigin), the marker gateway (date) and the epoch start.sh was spawned at',
      goal: `agent --once (spawn -> exit) minus node -e 0 (spawn -> exit), paired by round, median <= ${GOAL_MS} ms`,
    },
    summary,
    goal_met: summary.agent_over_node_e0_ms.median <= GOAL_MS,
    rounds: rounds.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, runRecord(v)]))),
  };
  await mkdir(path.dirname(outFile), { recursive: true });
  await writeFile(outFile, `${JSON.stringify(result, null, 2)}\n`);
  const shown = path.relative(process.cwd(), outFile);
  console.log(`\nresults: ${shown.startsWith('..') ? outFile : shown} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  return true;
}

const tmp = await mkdtemp(path.join(os.tmpdir(), 'first-credential-'));
// Once, whether a signal or the end of main() calls it first.
let cleaning;
const cleanup = () =>
  (cleaning ??= (async () => {
    await stopGroups();
    await stopAll();
    if (a['keep-tmp']) log(`kept ${tmp}`);
    // Retried: an interrupted round may still be writing into it for a moment.
    else
      await rm(tmp, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }).catch((e) =>
        log(`could not remove ${tmp}: ${e.message}`),
      );
  })());
installSignalHandlers(cleanup);
let passed = false;
try {
  passed = await main(tmp);
} catch (e) {
  // A stack only for the unexpected; the bench's own errors say what went wrong.
  if (!shuttingDown()) log(`FAIL: ${e.message?.startsWith('--') ? e.message : (e.stack ?? e)}`);
} finally {
  await cleanup();
}
process.exit(passed ? 0 : 1);
