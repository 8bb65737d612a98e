/**
 * Every benchmark in bench/ starts: each one's smoke mode (`node bench/<x>.mjs --smoke`, see
 * bench/README.md) runs as a child process and must exit 0, print its table and write its results
 * file, into a temporary folder (bench/results/ is left as it is). The smoke modes start every
 * process the real benches start (workerd, wrangler dev, the agent, the proxy, the stand-in
 * upstream, autocannon, the token bench's load generator), with a second or less of load each.
 *
 * bench:token runs with its oidc-provider peer (`--peer-stores default`): the peer is installed with
 * npm into the bench's temporary folder, from the shared harness's lock file where that is next to
 * the project, else from the registry (as in CI, which has the registry). Its load generator is the
 * project's own (bench/lib/token-load.mjs).
 *
 * One at a time: about 30 s in all on two cores shared with other work (each bench 7 to 10 s), up
 * to 30 to 45 s each while a whole test suite runs beside it (load average ~12).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from './worker-process.js';

const out = mkdtempSync(join(tmpdir(), 'bench-smoke-test-'));
const running = new Set<ChildProcess>();
const resultsBefore = readdirSync(join(ROOT, 'bench', 'results')).sort();

/** What one bench printed and how it ended. */
interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  file: string;
}

/**
 * `node bench/<name>.mjs --smoke --out <tmp>/<name>.json`. Past `limitMs` it gets SIGTERM (the
 * benches stop their own children on it), then SIGKILL 5 s later.
 */
function smoke(name: string, limitMs: number, args: string[] = []): Promise<Run> {
  const file = join(out, `${name}.json`);
  const env = { ...process.env };
  delete env.BENCH_SMOKE;
  const child = spawn(process.execPath, [join(ROOT, 'bench', `${name}.mjs`), '--smoke', '--out', file, ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const term = setTimeout(() => child.kill('SIGTERM'), limitMs);
  const kill = setTimeout(() => child.kill('SIGKILL'), limitMs + 5000);
  return new Promise((resolve) => {
    child.once('close', (code, signal) => {
      clearTimeout(term);
      clearTimeout(kill);
      running.delete(child);
      resolve({ code, signal, stdout, stderr, file });
    });
  });
}

/** The whole output, for a failed expectation's message. */
const shown = (r: Run) => `exit ${r.code ?? r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr.slice(-4000)}`;
const results = (r: Run) => JSON.parse(readFileSync(r.file, 'utf8'));

afterAll(() => {
  for (const c of running) c.kill('SIGKILL');
  rmSync(out, { recursive: true, force: true });
});

describe('bench smoke runs', () => {
  it('bench:verify starts the verifier, the bundled proxy, the upstream and autocannon, and measures', async () => {
    const r = await smoke('verify', 45_000);
    expect(r.code, shown(r)).toBe(0);
    expect(r.stdout, shown(r)).toMatch(/^ {2}verifier, first-seen, \d+ in flight +[\d,]+\/s/m);
    expect(r.stdout, shown(r)).toMatch(/^ {4}through the proxy +[\d,]+ req\/s/m);
    expect(r.stdout, shown(r)).toMatch(/^ {4}proxy \/ direct: x[\d.]+/m);
    const j = results(r);
    expect(j.smoke).toBe(true);
    expect(j.verify.oursMany).toBeGreaterThan(0);
    expect(j.proxy.length).toBeGreaterThan(0);
    for (const p of j.proxy) expect(p.proxied.rps).toBeGreaterThan(0);
  }, 55_000);

  it('bench:token builds the Worker, starts workerd, bootstraps one sandbox and many, installs and starts the oidc-provider peer, and measures both shapes of each with its own load generator', async () => {
    // The peer comes from npm into the bench's temporary folder (the shared harness's lock file
    // where it is next to the project, else the registry): that install is most of this run.
    const r = await smoke('token', 150_000, ['--peer-stores', 'default']);
    expect(r.code, shown(r)).toBe(0);
    expect(r.stderr, shown(r)).toMatch(/ours: 21 sandbox\(es\) bootstrapped/);
    expect(r.stderr, shown(r)).toMatch(/peer \(store default\): up \(pid \d+\) at \S+ with 20 client\(s\)/);
    // One row per shape: tokens/s, p50, p90, p99, max, stalls over 1 s, then no failed request.
    expect(r.stdout, shown(r)).toMatch(/^ours, 1 sandbox +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +\d+ +\d+ +0 /m);
    expect(r.stdout, shown(r)).toMatch(/^ours, 20 sandboxes +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +\d+ +\d+ +0 /m);
    expect(r.stdout, shown(r)).toMatch(/^oidc-provider \(default\), 1 client +[\d.]+ /m);
    expect(r.stdout, shown(r)).toMatch(/^oidc-provider \(default\), 20 clients +[\d.]+ /m);
    // The ratios, one line per shape; the many-sandbox one with its goal.
    expect(r.stdout, shown(r)).toMatch(/^ours \/ oidc-provider \(default\), one sandbox: throughput x[\d.]+, p90 x[\d.]+, p99 x[\d.]+$/m);
    expect(r.stdout, shown(r)).toMatch(
      /^ours \/ oidc-provider \(default\), 20 sandboxes: throughput x[\d.]+, p90 x[\d.]+, p99 x[\d.]+ \(goal: .*: (met|NOT met)\)$/m,
    );
    expect(r.stdout, shown(r)).not.toMatch(/^FAIL:/m);
    const j = results(r);
    expect(j.smoke).toBe(true);
    for (const shape of ['ours, 1 sandbox', 'ours, 20 sandboxes']) {
      expect(j.summary.targets[shape].tokens_per_s_mean, shape).toBeGreaterThan(0);
      expect(j.summary.targets[shape].late_replay[0].rejected, shape).toBe(true);
      expect(j.summary.targets[shape].tokens_verified, shape).toBeGreaterThan(0);
    }
    for (const shape of ['oidc-provider (default), 1 client', 'oidc-provider (default), 20 clients']) {
      expect(j.summary.targets[shape].tokens_per_s_mean, shape).toBeGreaterThan(0);
      expect(j.summary.targets[shape].tokens_verified, shape).toBeGreaterThan(0);
    }
    // The many-sandbox shape's requests really came from many clients, on both servers.
    expect(j.reports['ours, 20 sandboxes'][0].target.clients).toBe(20);
    expect(j.reports['oidc-provider (default), 20 clients'][0].target.clients).toBe(20);
    expect(j.packages['oidc-provider']).toMatch(/^\d+\.\d+\.\d+$/);
  }, 160_000);

  it('bench:agent-memory starts wrangler dev and the built agent, and reads its memory', async () => {
    const r = await smoke('agent-memory', 60_000);
    expect(r.code, shown(r)).toBe(0);
    expect(r.stdout, shown(r)).toMatch(/^agent resident memory: idle [\d.]+ MB; after [1-9]\d* refreshes [\d.]+ MB/m);
    const j = results(r);
    expect(j.smoke).toBe(true);
    expect(j.idle_rss_mb).toBeGreaterThan(0);
    expect(j.rss_after_mb).toBeGreaterThan(0);
  }, 70_000);

  it('bench:first-credential builds the agent and the Worker, runs start.sh, the agent alone and bare node starts, and splits the time', async () => {
    const r = await smoke('first-credential', 60_000);
    expect(r.code, shown(r)).toBe(0);
    expect(r.stdout, shown(r)).toMatch(/^= start\.sh start -> credentials\.json on disk +[\d.]+ +[\d.]+$/m);
    expect(r.stdout, shown(r)).toMatch(/^= start\.sh start -> gateway process started +[\d.]+ +[\d.]+$/m);
    expect(r.stdout, shown(r)).toMatch(/^agent over node -e 0 \(paired by round\): [+-][\d.]+ ms median/m);
    expect(r.stdout, shown(r)).toMatch(/^goal: the agent adds at most 300 ms over a bare node start: (met|NOT met) /m);
    const j = results(r);
    expect(j.smoke).toBe(true);
    expect(j.rounds).toHaveLength(2);
    for (const k of ['to_credentials', 'to_gateway', 'http', 'writes']) expect(j.summary.start_sh_phases_ms[k].median).toBeGreaterThan(0);
    expect(j.summary.wall_ms['node -e 0'].median).toBeGreaterThan(0);
    // Nothing of a token (a JWT starts eyJ), a private JWK ("d") or a token answer in what it printed or wrote.
    expect(r.stdout + r.stderr + readFileSync(r.file, 'utf8')).not.toMatch(/eyJ[\w-]{10,}\.|"d":|access_token/);
  }, 70_000);

  it('left bench/results/ as it was', () => {
    expect(readdirSync(join(ROOT, 'bench', 'results')).sort()).toEqual(resultsBefore);
  });
});
