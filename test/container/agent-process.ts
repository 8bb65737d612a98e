/**
 * Runs the built agent (the bundle `npm run build:container` makes for the container image) as a
 * child process on loopback, and small helpers to watch it.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, ROOT } from '../node/worker-process.js';

let bundleDir: string | undefined;

/**
 * Builds the container bundles exactly as `npm run build:container` does, into a folder of this
 * test file's own (test files run in parallel; one must not rewrite a bundle another is running).
 */
export function buildContainer(): void {
  bundleDir = mkdtempSync(join(tmpdir(), 'container-bundle-'));
  // AGENT_SOURCE_ROOT: build another checkout's agent (e.g. an older commit's, to show that a
  // regression test fails there). Its path ends with a slash, like ROOT.
  const src = process.env.AGENT_SOURCE_ROOT ?? ROOT;
  execFileSync(process.execPath, [`${src}scripts/build-container.mjs`, '--outdir', bundleDir], { cwd: src, stdio: 'pipe' });
}

/** Removes what buildContainer() built. */
export function removeBundle(): void {
  if (bundleDir) rmSync(bundleDir, { recursive: true, force: true });
  bundleDir = undefined;
}

/** The built agent of buildContainer(). */
export function agentBundle(): string {
  if (!bundleDir) throw new Error('call buildContainer() first');
  return join(bundleDir, 'refresh.mjs');
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
  const child = spawn(process.execPath, [agentBundle(), '--port', String(port), ...args], {
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
