// The project's local stack with the real gateway (`npm run dev -- --gateway openclaw`), run the way
// a user runs it, in a fresh copy of the working tree: tracked and unignored files copied,
// node_modules and the installed .gateway/ linked in (as test/node/stack-copy.ts does), so the
// stack's .dev.vars, .dev-stack/ and .wrangler/state are the copy's and the user's are never
// touched. On a free base port: other stacks may hold 8787.. on a shared machine.
//
// Stopping is Ctrl-C (SIGINT to the stack's process group, as a terminal sends it), then a sweep of
// /proc for anything of it still alive (the stack marks every child it starts, and OpenClaw's
// helpers carry its throwaway HOME), SIGKILLed; a synchronous exit hook does the same if the bench
// dies before it could stop the stack.
import { execFileSync } from 'node:child_process';
import { closeSync, cpSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, spawnTracked } from './processes.mjs';
import { tail } from './workerd.mjs';

/**
 * Where base ports are picked: below the kernel's ephemeral range (32768..), so no outgoing
 * connection holds one; windows of 10 (the stack uses 6), like test/node/worker-process.ts.
 */
const STACK_PORTS = { from: 20_000, to: 32_000, step: 10 };
/** Ports from the base: issuer, agent, proxy, gateway, model provider, egress hop. */
const STACK_PORT_COUNT = 6;
/** Base ports tried before giving up (a busy machine has some windows taken). */
const BASE_ATTEMPTS = 100;
/**
 * wrangler's first bundle, the agent, OpenClaw (25 to 35 s on two shared cores), then the stack's
 * own first chat completion through the chain (10 to 25 s): allow for a loaded machine.
 */
const STACK_UP_MS = 240_000;
/** The stack stops each part on Ctrl-C, each with 8 s of grace (scripts/local-stack/processes.ts). */
const STACK_STOP_MS = 45_000;
/** How often the stack's log is read for its ready line, and a stopped stack checked. */
const POLL_MS = 200;
/** What the stack prints once everything is up (scripts/local-stack/status.ts). */
const READY_LINE = /^Local stack is up/m;
/** Lines of the stack's own output shown when it fails to start (its message and what led to it). */
const STACK_LOG_LINES = 30;
/** The installer's output, in the bench's temporary folder (shown when it fails). */
const INSTALL_LOG = 'gateway-install.log';

/** Copies what a clone holds (tracked and unignored files) to `dest`; links node_modules and .gateway/. */
export function freshCopy(projectRoot, dest, gatewayDir) {
  const listed = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: projectRoot,
    maxBuffer: 64 << 20,
    encoding: 'utf8',
  });
  for (const rel of listed.split('\0').filter(Boolean)) {
    if (!existsSync(path.join(projectRoot, rel))) continue; // deleted in the working tree
    mkdirSync(path.dirname(path.join(dest, rel)), { recursive: true });
    cpSync(path.join(projectRoot, rel), path.join(dest, rel));
  }
  symlinkSync(path.join(projectRoot, 'node_modules'), path.join(dest, 'node_modules'));
  symlinkSync(path.join(projectRoot, gatewayDir), path.join(dest, gatewayDir));
}

function portFree(port, host) {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** A base port with the stack's ports (and `extra` more after them) all free now. */
export async function freeBase(host, extra = 0) {
  const slots = (STACK_PORTS.to - STACK_PORTS.from) / STACK_PORTS.step;
  const count = STACK_PORT_COUNT + extra;
  for (let i = 0; i < BASE_ATTEMPTS; i++) {
    const base = STACK_PORTS.from + STACK_PORTS.step * Math.floor(Math.random() * slots);
    const free = await Promise.all([...Array(count).keys()].map((d) => portFree(base + d, host)));
    if (free.every(Boolean)) return base;
  }
  throw new Error(`no ${count} free ports in a row between ${STACK_PORTS.from} and ${STACK_PORTS.to}`);
}

/**
 * The real gateway as `npm run gateway:install` lays it out: installed now if it is not (the
 * installer's own fast path and checks; output to a log in `tmp`), else the reason it cannot be.
 */
export async function ensureGateway(projectRoot, src, tmp, log) {
  const problem = src.installProblem(projectRoot);
  if (!problem) return 'already installed';
  log(`the real gateway is not installed (${problem}): running npm run gateway:install (output in ${INSTALL_LOG})`);
  const logFile = path.join(tmp, INSTALL_LOG);
  const fd = openSync(logFile, 'w');
  try {
    const code = await run('npm', ['run', 'gateway:install'], { cwd: projectRoot, stdio: ['ignore', fd, fd] });
    const still = src.installProblem(projectRoot);
    if (code !== 0 || still) {
      throw new Error(
        `npm run gateway:install failed (exit ${code}${still ? `; ${still}` : ''}): run it yourself and retry:\n${await tail(logFile)}`,
      );
    }
  } finally {
    closeSync(fd);
  }
  return 'installed by this run';
}

/** Live (not zombie) processes whose environment holds an entry `match` accepts. Linux /proc only. */
function marked(match) {
  const found = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      if (readFileSync(`/proc/${name}/environ`, 'utf8').split('\0').some(match)) found.push(Number(name));
    } catch {
      // exited meanwhile, or another user's: not ours
    }
  }
  return found;
}

function kill(pid, signal) {
  try {
    process.kill(pid, signal);
  } catch {
    // gone meanwhile
  }
}

/**
 * Starts the stack in `dir` (a fresh copy) on `base`: the package.json `dev` script's command, in
 * a process group of its own, its output to `logFile`. Returns its handle at once, so that a
 * Ctrl-C while it starts can stop it too; `ready()` resolves once it prints its ready line.
 */
export function spawnStack({ src, dir, base, logFile, log }) {
  const fd = openSync(logFile, 'w', 0o600);
  const child = spawnTracked(
    process.execPath,
    ['--import', './scripts/register-ts.mjs', 'scripts/dev.ts', '--gateway', 'openclaw', '--base-port', String(base)],
    { cwd: dir, detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } },
  );
  closeSync(fd);
  // The stack marks each child `<its pid>:<name>`; OpenClaw's helpers also carry its HOME.
  const home = `HOME=${path.join(dir, '.dev-stack', src.HOME_DIR)}`;
  const ours = (e) => e.startsWith(`${src.MARKER_ENV}=${child.pid}:`) || e === home;
  const killAll = () => {
    kill(-child.pid, 'SIGKILL');
    for (const pid of marked(ours)) kill(pid, 'SIGKILL');
  };
  // Last resort: an exit that skipped stop() (a crash, process.exit in a signal handler).
  process.on('exit', killAll);
  let stopping;
  /** Ctrl-C, then SIGKILL for whatever of it still runs; resolves to what had to be killed. */
  const stop = () =>
    (stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) kill(-child.pid, 'SIGINT');
      const stoppedInTime = await Promise.race([child.exited.then(() => true), sleep(STACK_STOP_MS, false)]);
      const leftovers = marked(ours);
      killAll();
      await child.exited;
      process.off('exit', killAll);
      return { stoppedInTime, leftovers };
    })());
  const ports = src.localStackPorts(base);
  const url = (port) => `http://${src.LOCAL_HOST}:${port}`;
  return {
    issuer: url(ports.issuer),
    gateway: url(ports.gateway),
    credentialsFile: path.join(dir, '.dev-stack', 'agent', src.CREDENTIALS_FILE),
    devVars: () => src.readDevVars(path.join(dir, src.DEV_VARS_FILE)),
    /** The stack's processes now: the script and everything it started. */
    pids: () => [child.pid, ...marked(ours)],
    ready: () => waitReady(child, logFile, log),
    stop,
  };
}

async function waitReady(child, logFile, log) {
  const started = Date.now();
  for (;;) {
    if (READY_LINE.test(readFileSync(logFile, 'utf8'))) break;
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`the stack stopped while starting (${child.exitCode ?? child.signalCode}):\n${await tail(logFile, STACK_LOG_LINES)}`);
    if (Date.now() - started > STACK_UP_MS)
      throw new Error(`the stack was not up within ${STACK_UP_MS / 1000} s:\n${await tail(logFile, STACK_LOG_LINES)}`);
    await sleep(POLL_MS);
  }
  log(`stack up in ${((Date.now() - started) / 1000).toFixed(1)} s (pid ${child.pid})`);
}
