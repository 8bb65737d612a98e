/**
 * One local stack with the real gateway for a whole test file: `npm run dev -- --gateway openclaw`
 * exactly as a user runs it, on a fresh copy of the working tree (tracked and unignored files;
 * node_modules and the installed .gateway/ linked in), so the stack's own .dev.vars, .dev-stack/
 * and .wrangler/state never touch the clone's, and on a free base port (other stacks may hold
 * 8787.. on a shared machine). OpenClaw takes 25 to 30 s to be ready: start it once per file.
 *
 * stop() is Ctrl-C (SIGINT to the stack's process group, as a terminal sends it), then a check that
 * nothing of it still runs (the gateway's spawn broker runs in a group of its own: the stack sweeps
 * for it, and this checks the sweep), then SIGKILL for anything left, so a failing run leaves no
 * process behind either.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MARKER_ENV } from '../../scripts/local-stack/processes.js';
import { freshCopy, processes, spawnOpenClawStack } from './stack-copy.js';
import { freeBase } from './worker-process.js';

export { processes } from './stack-copy.js';

/** The stack with the real gateway: issuer, agent, proxy, gateway, model provider, egress hop. */
const PORT_COUNT = 6;
/**
 * wrangler's first bundle, the agent, then OpenClaw (25 to 30 s on two shared cores, more when
 * busy), then the stack's own first chat completion through the chain (10 to 25 s).
 */
export const STACK_UP_MS = 240_000;
/** Ctrl-C: the stack stops each part (OpenClaw in about a second; each child gets 8 s of grace). */
const STOP_MS = 45_000;
/** The line the stack prints last once everything is up. */
const READY_LINE = /^Then the operator CLI/m;

export interface OpenClawStack {
  /** The copy the stack runs in (its .dev-stack/, .dev.vars). */
  dir: string;
  base: number;
  /** The Worker: `http://127.0.0.1:<base>`. */
  issuer: string;
  /** The verifying proxy: `http://127.0.0.1:<base + 2>`. */
  proxy: string;
  /** The real gateway's own port: `http://127.0.0.1:<base + 3>`. */
  gateway: string;
  gatewayPort: number;
  /** The CLI command the stack printed, as printed (run it in `dir`). */
  cliCommand: string;
  /** The Control UI URL the stack printed. */
  uiUrl: string;
  /** Seconds from the start to the printed status. */
  upSeconds: number;
  /** Everything the stack printed so far. */
  output(): string;
  /** OpenClaw's own log (JSONL), read now. */
  gatewayLog(): string;
  /** Ctrl-C, then what is still running of it (expected: nothing), then SIGKILL for that, then removes the copy. */
  stop(): Promise<{ exit: string; leftovers: string[] }>;
}

export async function startOpenClawStack(): Promise<OpenClawStack> {
  const dir = mkdtempSync(join(tmpdir(), 'issuer-openclaw-chain-'));
  await freshCopy(dir, { gateway: true });
  const base = await freeBase(PORT_COUNT);
  const started = Date.now();
  const { child, output, exited } = spawnOpenClawStack(dir, base);
  const home = `HOME=${join(dir, '.dev-stack', 'openclaw-home')}`;

  let stopped: Promise<{ exit: string; leftovers: string[] }> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(-child.pid!, 'SIGINT');
        } catch {
          /* already gone */
        }
      }
      const exit = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running'), STOP_MS))]);
      // What the stack should have stopped: anything with the gateway's throwaway HOME, or marked as
      // a child of a stack and running in the copy.
      const ours = processes().filter(
        (p) =>
          p.pid !== process.pid && (p.env.includes(home) || (p.cwd.startsWith(dir) && p.env.some((e) => e.startsWith(`${MARKER_ENV}=`)))),
      );
      for (const p of ours) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          /* gone meanwhile */
        }
      }
      if (exit === 'still running') {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          /* gone meanwhile */
        }
      }
      rmSync(dir, { recursive: true, force: true });
      return { exit, leftovers: ours.map((p) => `${p.pid} ${p.cmd}`) };
    })());

  try {
    await new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + STACK_UP_MS;
      const timer = setInterval(() => {
        if (READY_LINE.test(output())) return done(resolve);
        if (child.exitCode !== null || child.signalCode !== null)
          return done(() => reject(new Error(`npm run dev stopped (${child.exitCode ?? child.signalCode}):\n${output()}`)));
        if (Date.now() > deadline) done(() => reject(new Error(`the stack was not up within ${STACK_UP_MS} ms:\n${output()}`)));
      }, 200);
      const done = (f: () => void) => {
        clearInterval(timer);
        f();
      };
    });
  } catch (e) {
    await stop();
    throw e;
  }

  const lines = output().split('\n');
  const cliCommand = lines.find((l) => /\.gateway\/bin\/openclaw gateway call health/.test(l))?.trim() ?? '';
  const issuer = `http://127.0.0.1:${base}`;
  const uiUrl = lines.find((l) => l.trim() === `${issuer}/`)?.trim() ?? '';
  return {
    dir,
    base,
    issuer,
    proxy: `http://127.0.0.1:${base + 2}`,
    gateway: `http://127.0.0.1:${base + 3}`,
    gatewayPort: base + 3,
    cliCommand,
    uiUrl,
    upSeconds: (Date.now() - started) / 1000,
    output,
    gatewayLog: () => {
      try {
        return readFileSync(join(dir, '.dev-stack', 'logs', 'openclaw.jsonl'), 'utf8');
      } catch {
        return '';
      }
    },
    stop,
  };
}
