/**
 * bench:chain starts (bench/README.md, "Chain latency"): its smoke mode brings up the local stack
 * with the real gateway in a copy of the tree, the bench's own verifying proxy and Worker, opens
 * every target and measures each with a few requests, then stops all of it. A file of its own, in
 * the real-gateway project: the stack's start is what takes its time (60 to 130 s on two shared
 * cores), as in the other files that start one, and those run two at a time after the rest.
 *
 * The figures mean nothing here; what is checked is that every target answered and that the results
 * file holds no token.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect } from 'vitest';
import { assertRealGateway, itRealGateway } from './real-gateway.js';
import { ROOT } from './worker-process.js';

const out = mkdtempSync(join(tmpdir(), 'bench-chain-smoke-'));
/** The stack's start, then a few requests per target; SIGTERM past this (the bench stops its children on it). */
const LIMIT_MS = 300_000;

afterAll(() => rmSync(out, { recursive: true, force: true }));

itRealGateway(
  'bench:chain starts the stack with the real gateway, measures every target through and around the chain, and stops it',
  async () => {
    assertRealGateway();
    const file = join(out, 'chain.json');
    const env = { ...process.env };
    delete env.BENCH_SMOKE;
    const child = spawn(process.execPath, [join(ROOT, 'bench', 'chain.mjs'), '--smoke', '--out', file], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const term = setTimeout(() => child.kill('SIGTERM'), LIMIT_MS);
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    clearTimeout(term);
    const shown = `exit ${code}\n--- stdout\n${stdout}\n--- stderr\n${stderr.slice(-4000)}`;
    expect(code, shown).toBe(0);
    expect(stdout, shown).toMatch(/^HTTP Worker -> proxy -> gateway +20 +[\d.]+/m);
    expect(stdout, shown).toMatch(/^WS health Worker -> proxy -> gateway +20 +[\d.]+/m);
    // The second chain: the Worker's bundle under plain workerd serve.
    expect(stdout, shown).toMatch(/^HTTP Worker \(workerd serve\) -> proxy -> gateway +20 +[\d.]+/m);
    expect(stdout, shown).toMatch(/^WS health Worker \(workerd serve\) -> proxy -> gateway +20 +[\d.]+/m);
    expect(stdout, shown).toMatch(/^WS proxy - direct +-?[\d.]+/m);
    expect(stdout, shown).not.toMatch(/^FAIL:/m);
    const text = readFileSync(file, 'utf8');
    const j = JSON.parse(text);
    expect(j.smoke).toBe(true);
    const targets = Object.entries(j.targets) as Array<[string, { count: number; failed: number }]>;
    expect(targets.length, shown).toBeGreaterThanOrEqual(10);
    for (const [name, t] of targets) {
      expect(t.count, name).toBe(20);
      expect(t.failed, name).toBe(0);
    }
    // No JWT, so no token of the Worker's or the bench's, in what it wrote.
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{8,}\.eyJ/);
  },
  LIMIT_MS + 20_000,
);
