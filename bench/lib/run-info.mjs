// What a results file says about the run besides its figures: the machine, the versions, the
// project's commit and whether the measured code had uncommitted changes (as bench/token.mjs
// writes them), and how busy the machine was with other work meanwhile.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The commit, and whether any of `paths` (the code the bench measures) differs from it. */
export function gitState(projectRoot, paths) {
  try {
    const git = (...args) => execFileSync('git', args, { cwd: projectRoot, encoding: 'utf8' }).trim();
    const changed = git('status', '--porcelain', '--', ...paths);
    return { commit: git('rev-parse', 'HEAD'), uncommitted_changes: changed !== '', checked_paths: paths };
  } catch {
    return null;
  }
}

export function machine() {
  return {
    cpu: os.cpus()[0]?.model,
    cpus: os.cpus().length,
    mem_gib: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    loadavg_1m_at_start: round1(os.loadavg()[0]),
  };
}

const round1 = (x) => Math.round(x * 10) / 10;

/** The version in `<dir>/node_modules/<name>/package.json` (or `<dir>/package.json` with no name), or null. */
export function packageVersion(dir, name) {
  try {
    const file = name ? path.join(dir, 'node_modules', name, 'package.json') : path.join(dir, 'package.json');
    return JSON.parse(readFileSync(file, 'utf8')).version ?? null;
  } catch {
    return null;
  }
}

// /proc/stat's first line: cpu user nice system idle iowait irq softirq steal ...
function machineTicks() {
  const [user, nice, system, idle, iowait, irq, softirq, steal] = readFileSync('/proc/stat', 'utf8')
    .split('\n')[0]
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  return { busy: user + nice + system + irq + softirq + steal, total: user + nice + system + idle + iowait + irq + softirq + steal };
}

/** utime + stime of a local process (fields 14 and 15 of /proc/PID/stat, in clock ticks of 10 ms); undefined once it is gone. */
export function processTicks(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return undefined;
  }
}

/**
 * Starts a measurement of the CPU time other processes (not `pids()`, read at both ends) take of
 * the whole machine; the returned function gives it in % of all CPUs. Linux /proc only, else null.
 */
export function othersOnMachine(pids) {
  try {
    const start = { machine: machineTicks(), ours: new Map(pids().map((p) => [p, processTicks(p) ?? 0])) };
    return () => {
      try {
        const end = machineTicks();
        let ours = 0;
        // A process gone by the end reads 0: count nothing for it rather than a negative share.
        for (const p of new Set([...start.ours.keys(), ...pids()])) ours += Math.max(0, (processTicks(p) ?? 0) - (start.ours.get(p) ?? 0));
        const others = Math.max(0, end.busy - start.machine.busy - ours);
        return round1((others / Math.max(1, end.total - start.machine.total)) * 100);
      } catch {
        return null;
      }
    };
  } catch {
    return () => null;
  }
}
