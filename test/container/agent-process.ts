/**
 * Runs the built agent (dist/container/refresh.mjs, the file the container image ships) as a
 * child process on loopback, and small helpers to watch it.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { ROOT, freePort } from '../node/worker-process.js';

export function buildContainer(): void {
  execFileSync(process.execPath, [`${ROOT}scripts/build-container.mjs`], { cwd: ROOT, stdio: 'pipe' });
}

export interface AgentProcess {
  child: ChildProcess;
  port: number;
  url: string;
  logs: () => Record<string, unknown>[];
  stderr: () => string;
  stop: () => Promise<void>;
}

export async function startAgent(args: string[], opts: { port?: number; env?: Record<string, string> } = {}): Promise<AgentProcess> {
  const port = opts.port ?? (await freePort());
  const child = spawn(process.execPath, [`${ROOT}dist/container/refresh.mjs`, '--port', String(port), ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const logs = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      child.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      child.kill('SIGTERM');
    });
  return { child, port, url: `http://127.0.0.1:${port}`, logs, stderr: () => err, stop };
}

/** Polls `check` every 100 ms until it returns a truthy value or `ms` pass. */
export async function waitFor<T>(check: () => Promise<T> | T, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function health(url: string): Promise<number> {
  try {
    return (await fetch(`${url}/healthz`)).status;
  } catch {
    return 0;
  }
}
