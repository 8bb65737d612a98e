// CPU time on the server's core that did not belong to the server: other processes on the machine
// (a test run, a build) compete with the server and lower its figure. Linux /proc only.
import { readFile } from 'node:fs/promises';
import { processTicks } from './run-info.mjs';

// /proc/stat `cpuN`: user nice system idle iowait irq softirq steal ...
async function coreTicks(cpu) {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n').find((l) => l.startsWith(`cpu${cpu} `));
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return { busy: user + nice + system, total: user + nice + system + idle + iowait + irq + softirq + steal };
}

/** Starts a measurement on `cpu`; the returned function gives the % of that core used by others. */
export async function othersOnCore(cpu, serverPid) {
  try {
    const [c0, p0] = [await coreTicks(cpu), processTicks(serverPid)];
    if (p0 === undefined) throw new Error('no such process');
    return async () => {
      try {
        const [c1, p1] = [await coreTicks(cpu), processTicks(serverPid)];
        if (p1 === undefined) return null;
        const others = Math.max(0, c1.busy - c0.busy - (p1 - p0));
        return Math.round((others / Math.max(1, c1.total - c0.total)) * 1000) / 10;
      } catch {
        return null;
      }
    };
  } catch {
    return async () => null;
  }
}
