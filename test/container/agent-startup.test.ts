/**
 * The built agent's start, its --once against the loopback issuer: AGENT_TIMING=1
 * (container/agent/timing.ts) gives one `startup_timing` line of marks in the order a run reaches
 * them, numbers only (no token, no credential value in the output), and nothing without it; and a
 * --once over http without a hook loads none of the Node modules it does not use (tls,
 * child_process, perf_hooks), each a few ms of every container start (bench/first-credential.mjs).
 */

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { MARKS as AGENT_MARKS } from '../../container/agent/timing.js';
import { type LoopbackIssuer, startLoopbackIssuer } from './agent-issuer.js';
import { agentBundle, buildContainer, removeBundle } from './agent-process.js';

const root = mkdtempSync(join(tmpdir(), 'agent-timing-'));
let issuer: LoopbackIssuer;

beforeAll(async () => {
  buildContainer();
  issuer = await startLoopbackIssuer({ ttlS: 30 });
}, 60_000);

afterAll(async () => {
  await issuer?.close();
  rmSync(root, { recursive: true, force: true });
  removeBundle();
});

/** One --once run in a fresh directory; its stdout's JSON lines. */
async function once(
  id: string,
  env: Record<string, string>,
  nodeArgs: string[] = [],
): Promise<{ code: number; lines: Record<string, unknown>[]; out: string; dir: string }> {
  const boot = join(root, `${id}.bootstrap.json`);
  writeFileSync(boot, await issuer.bootstrapFile(id), { mode: 0o600 });
  const dir = join(root, id);
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...nodeArgs, agentBundle(), '--once', '--bootstrap-key', boot, '--dir', dir],
      { timeout: 20_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env } },
      (err, stdout) => {
        const lines = stdout
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>);
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, lines, out: stdout, dir });
      },
    );
  });
}

/** Node's own start, then the agent's marks, as the line carries them. */
const MARKS = ['node_ready', ...AGENT_MARKS];

it('AGENT_TIMING=1: one startup_timing line, its marks in order and numbers only; none without it', async () => {
  const before = Date.now();
  const timed = await once('timed', { AGENT_TIMING: '1' });
  expect(timed.code).toBe(0);
  const lines = timed.lines.filter((l) => l.event === 'startup_timing');
  expect(lines).toHaveLength(1);
  const { time, level, event, time_origin, cpu, ...marks } = lines[0]!;
  expect(cpu as number).toBeGreaterThan(0);
  expect(Object.keys(marks).sort()).toEqual([...MARKS].sort());
  const at = MARKS.map((m) => marks[m]);
  for (const v of at) expect(typeof v).toBe('number');
  expect(at).toEqual([...(at as number[])].sort((x, y) => x - y));
  // The process's start as epoch ms, on the clock of the process that started it.
  expect(time_origin as number).toBeGreaterThanOrEqual(before - 1_000);
  expect(time_origin as number).toBeLessThanOrEqual(Date.now());
  // Nothing of the token or the credentials in the output.
  const token = readFileSync(join(timed.dir, 'token'), 'utf8').trim();
  const creds = JSON.parse(readFileSync(join(timed.dir, 'credentials.json'), 'utf8')) as { values: Record<string, string> };
  for (const secret of [token, token.split('.')[2]!, ...Object.values(creds.values)]) expect(timed.out).not.toContain(secret);

  const plain = await once('plain', {});
  expect(plain.code).toBe(0);
  expect(plain.lines.map((l) => l.event)).toContain('token_refreshed');
  expect(plain.lines.filter((l) => l.event === 'startup_timing')).toEqual([]);
}, 60_000);

it('a --once run over http without a hook loads no tls, child_process or perf_hooks', async () => {
  // A preload that writes the process's list of loaded Node modules as it exits.
  const preload = join(root, 'module-list.cjs');
  const list = join(root, 'modules.txt');
  writeFileSync(
    preload,
    `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(list)}, process.moduleLoadList.join('\\n')));\n`,
  );
  const r = await once('modules', {}, ['--require', preload]);
  expect(r.code).toBe(0);
  const loaded = readFileSync(list, 'utf8').split('\n');
  expect(loaded).toContain('NativeModule http'); // the list is what it claims to be
  for (const m of ['tls', 'https', 'child_process', 'perf_hooks', 'internal/perf/performance'])
    expect(loaded).not.toContain(`NativeModule ${m}`);
}, 60_000);
