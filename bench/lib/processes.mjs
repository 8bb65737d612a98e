// Child processes of the bench: every one is tracked from spawn to exit, so that a normal end, an
// error or Ctrl-C stops all of them (by their own PIDs) and leaves no orphan behind.
import { execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import os from 'node:os';
import { SMOKE } from './smoke.mjs';

const children = new Set();
let closing = false; // set by stopAll(): after it, nothing new is started
const STOP_GRACE_MS = 3000; // SIGTERM first; SIGKILL whatever is still alive after this

const hasTaskset = (() => {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/**
 * True when the server and the load generator each get a core of their own (like the shared harness).
 * Never in smoke mode: its figures mean nothing, and it must run wherever the tests run.
 */
export const PINNED = hasTaskset && os.cpus().length >= 2 && !SMOKE;

/** `[cmd, args]` that runs `cmd` on one CPU. taskset execs the command, so the PID stays the same. */
export function onCpu(cpu, cmd, args) {
  return PINNED ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args];
}

/** spawn() whose child is stopped by stopAll(); `child.exited` resolves on exit (or spawn failure). */
export function spawnTracked(cmd, args, options) {
  if (closing) throw new Error('shutting down: no new processes');
  const child = spawn(cmd, args, options);
  children.add(child);
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
  }).finally(() => children.delete(child));
  return child;
}

const alive = (child) => child.exitCode === null && child.signalCode === null && children.has(child);

/** Stops one child: SIGTERM, then SIGKILL after a grace period. Resolves once it has exited. */
export async function stop(child) {
  if (!alive(child)) return;
  child.kill('SIGTERM');
  let timer;
  const timedOut = new Promise((resolve) => {
    timer = setTimeout(() => resolve(true), STOP_GRACE_MS);
  });
  if (await Promise.race([child.exited.then(() => false), timedOut])) child.kill('SIGKILL');
  clearTimeout(timer);
  await child.exited;
}

/** True once stopAll() has begun (a signal, or the end of the run). */
export const shuttingDown = () => closing;

/** Stops every tracked child and refuses to start new ones. */
export function stopAll() {
  closing = true;
  return Promise.all([...children].map(stop));
}

/** Runs `cleanup` (once) on SIGINT/SIGTERM/SIGHUP, then exits; SIGKILLs stragglers if the process exits anyway. */
export function installSignalHandlers(cleanup) {
  let exiting = false;
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ]) {
    process.on(sig, () => {
      if (exiting) return;
      exiting = true;
      console.error(`\n[bench] ${sig}: stopping ${children.size} child process(es)`);
      Promise.resolve(cleanup()).finally(() => process.exit(code));
    });
  }
  // Last resort (an exit path that skipped the async cleanup): kill synchronously by PID.
  process.on('exit', () => {
    for (const child of children) if (alive(child)) child.kill('SIGKILL');
  });
}

/** Runs a command to completion; resolves to its exit code. stdout/stderr go where `options.stdio` says. */
export async function run(cmd, args, options) {
  const child = spawnTracked(cmd, args, options);
  const { code, error } = await child.exited;
  if (error) throw error;
  return code;
}

/** A port that was free on 127.0.0.1 a moment ago, for a server the bench is about to start. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer()
      .once('error', reject)
      .listen(0, '127.0.0.1', () => {
        const { port } = srv.address();
        srv.close(() => resolve(port));
      });
  });
}
