/**
 * Starts the real Worker in workerd through `wrangler dev`, as a child process on loopback,
 * for tests that need it from outside (restarts, the agent, the CLI). Stops it with SIGINT to
 * the wrangler process itself (through npx, workerd would be left running).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TEST_ADMIN_TOKEN, TEST_GATEWAY_TOKEN } from '../secrets.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * An empty env file for `wrangler dev --env-file`: given one, wrangler does not load the
 * project's .dev.vars, which the local stack writes (DEV_USER, GATEWAY_UPSTREAM, its own secrets).
 */
const EMPTY_ENV_FILE = join(tmpdir(), `issuer-test-${process.pid}.env`);
writeFileSync(EMPTY_ENV_FILE, '');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Whether 127.0.0.1:port can be bound now. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * Where whole local stacks (`npm run dev -- --base-port N`, `count` ports in a row) are put in
 * tests: below Linux's ephemeral range (32768 and up), where freePort()'s binds and every outgoing
 * connection take their ports. A window picked from bind-0 ports sat among them: two stacks
 * started side by side got overlapping windows, and OpenClaw found its port taken.
 */
const STACK_PORTS = { from: 20_000, to: 32_000, step: 10 };

export async function freeBase(count: number): Promise<number> {
  const slots = (STACK_PORTS.to - STACK_PORTS.from) / STACK_PORTS.step;
  for (let i = 0; i < 100; i++) {
    const base = STACK_PORTS.from + STACK_PORTS.step * Math.floor(Math.random() * slots);
    if ((await Promise.all([...Array(count).keys()].map((d) => portFree(base + d)))).every(Boolean)) return base;
  }
  throw new Error(`no ${count} free ports in a row between ${STACK_PORTS.from} and ${STACK_PORTS.to}`);
}

export interface WorkerProcess {
  url: string;
  port: number;
  child: ChildProcess;
  output: () => string;
  stop: () => Promise<void>;
}

export async function startWorker(opts: {
  persistTo: string;
  vars?: Record<string, string>;
  port?: number;
  timeoutMs?: number;
}): Promise<WorkerProcess> {
  const port = opts.port ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  // An inspector port of its own: left alone, wrangler dev takes 9229 if it looks free, and two
  // started at once (test files run side by side) both take it; the second dies.
  const args = [
    'dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--inspector-port',
    String(await freePort()),
    '--persist-to',
    opts.persistTo,
    '--show-interactive-dev-session=false',
    '--env-file',
    EMPTY_ENV_FILE,
    '--var',
    `ISSUER:${url}`,
  ];
  const vars = { ADMIN_TOKEN: TEST_ADMIN_TOKEN, MOLTBOT_GATEWAY_TOKEN: TEST_GATEWAY_TOKEN, ...opts.vars };
  for (const [k, v] of Object.entries(vars)) args.push('--var', `${k}:${v}`);
  const child = spawn(`${ROOT}node_modules/.bin/wrangler`, args, {
    cwd: ROOT,
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', CI: 'true', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(killer);
        resolve();
      });
      child.kill('SIGINT');
    });
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited early:\n${out}`);
    try {
      const res = await fetch(`${url}/.well-known/openid-configuration`);
      if (res.ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`wrangler dev did not become ready on ${url}:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { url, port, child, output: () => out, stop };
}
