/**
 * The stack's child processes. Each runs in a process group of its own (detached), so stopping
 * one stops everything it started too: wrangler's workerd, a shell's children. Their output goes
 * to a log file each; the terminal keeps a short status.
 *
 * A process group is not enough for every child: OpenClaw starts helpers (its spawn broker) in a
 * group of their own, and anything may call setsid. So every child also carries a marker in its
 * environment (LOCAL_STACK_CHILD, inherited by whatever it starts), and stopping a child ends with a
 * sweep of /proc for processes that still carry it (or another `KEY=VALUE` entry given at start,
 * such as the throwaway HOME of the real gateway).
 *
 * A synchronous exit hook SIGKILLs every group and every marked process still alive, so even a
 * crash of the stack script leaves no orphan behind (only a SIGKILL of the script itself can).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** How long a child gets to stop on its own before its group is killed. */
const STOP_GRACE_MS = 8_000;
const POLL_MS = 100;
/** Lines of a child's log shown when it fails. */
const TAIL_LINES = 20;
/** The environment variable that marks a process as started by the local stack (see above). */
export const MARKER_ENV = 'LOCAL_STACK_CHILD';

export interface Child {
  name: string;
  pid: number;
  logFile: string;
  process: ChildProcess;
  /** Resolves with a description of how it ended ("exit code 2", "signal SIGKILL"). */
  exited: Promise<string>;
  /** Last lines of its log, for an error message. */
  tail(): string;
  /** `KEY=VALUE` environment entries that mark a process as this child's, wherever it moved. */
  marks: string[];
}

const live = new Set<Child>();

process.on('exit', () => {
  for (const c of live) {
    killGroup(c.pid, 'SIGKILL');
    for (const pid of strays(c.marks)) kill(pid, 'SIGKILL');
  }
});

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* gone meanwhile */
  }
}

function killGroup(pid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false; // ESRCH: the group is empty
  }
}

export interface StartOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  logFile: string;
  /** More `KEY=VALUE` environment entries that identify this child's processes (it must set them). */
  marks?: string[];
  /** Append to the log instead of starting it afresh (a restarted child keeps the earlier lines). */
  append?: boolean;
}

export function startChild(name: string, command: string, args: string[], opts: StartOptions): Child {
  const fd = openSync(opts.logFile, opts.append ? 'a' : 'w', 0o600);
  // The stack's pid makes the marker unique to this run, so a second stack (another clone) is not swept.
  const marker = `${process.pid}:${name}`;
  const marks = [`${MARKER_ENV}=${marker}`, ...(opts.marks ?? [])];
  const env = { ...opts.env, [MARKER_ENV]: marker };
  const proc = spawn(command, args, { cwd: opts.cwd, env, stdio: ['ignore', fd, fd], detached: true });
  closeSync(fd);
  const exited = new Promise<string>((resolve) => {
    proc.once('exit', (code, signal) => resolve(signal ? `signal ${signal}` : `exit code ${code}`));
    proc.once('error', (e) => resolve(`could not start: ${e.message}`));
  });
  if (proc.pid === undefined) throw new Error(`${name}: could not start ${command}`);
  const child: Child = {
    name,
    pid: proc.pid,
    logFile: opts.logFile,
    process: proc,
    exited,
    marks,
    tail: () => {
      try {
        return readFileSync(opts.logFile, 'utf8').trimEnd().split('\n').slice(-TAIL_LINES).join('\n');
      } catch {
        return '';
      }
    },
  };
  live.add(child);
  return child;
}

/**
 * Whether any process of the group still runs. A zombie does not count: once wrangler exits, its
 * workerd is reparented to PID 1, and a PID 1 that does not reap (some containers) leaves it a
 * zombie forever; it holds no port and runs nothing. Linux reads /proc; elsewhere, kill(0).
 */
function groupRunning(pgid: number): boolean {
  if (!existsSync('/proc/self/stat')) return killGroup(pgid, 0);
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after the last ')'.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') return true;
  }
  return false;
}

/**
 * Live (not zombie) processes, other than this one, whose environment holds one of `marks`. Linux
 * only (/proc); elsewhere none are found and the process group is all there is. A process of
 * another user cannot be read, and is not ours.
 */
export function strays(marks: string[]): number[] {
  if (!existsSync('/proc/self/environ')) return [];
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      const env = readFileSync(`/proc/${name}/environ`, 'utf8').split('\0');
      if (marks.some((m) => env.includes(m))) found.push(Number(name));
    } catch {}
  }
  return found;
}

async function stopOne(c: Child, signal: NodeJS.Signals): Promise<void> {
  killGroup(c.pid, signal);
  const deadline = Date.now() + STOP_GRACE_MS;
  while (groupRunning(c.pid) && Date.now() < deadline) await sleep(POLL_MS);
  if (groupRunning(c.pid)) {
    killGroup(c.pid, 'SIGKILL');
    while (groupRunning(c.pid)) await sleep(POLL_MS);
  }
  // What left the group (a new group or session) and still runs: the same signal, then SIGKILL.
  let left = strays(c.marks);
  for (const pid of left) kill(pid, signal);
  const strayDeadline = Date.now() + STOP_GRACE_MS;
  while ((left = strays(c.marks)).length > 0 && Date.now() < strayDeadline) await sleep(POLL_MS);
  for (const pid of left) kill(pid, 'SIGKILL');
  while (strays(c.marks).length > 0) await sleep(POLL_MS);
  await c.exited;
  live.delete(c);
}

/**
 * Stops every child at once: `signal` (default SIGTERM) to each group, then waits until no
 * process of the group runs (not just the leader: workerd outlives wrangler by a moment),
 * SIGKILL after the grace; then the same for its marked processes outside the group.
 */
export async function stopChildren(children: Child[], signal: Record<string, NodeJS.Signals> = {}): Promise<void> {
  await Promise.all(children.map((c) => stopOne(c, signal[c.name] ?? 'SIGTERM')));
}
