/**
 * The local stack's stop (scripts/local-stack/processes.ts) reaches processes that left the child's
 * process group, as OpenClaw's spawn broker does: by the marker every child's environment carries,
 * or by another `KEY=VALUE` mark given at start for helpers that drop unknown variables.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, expect, it } from 'vitest';
import { startChild, stopChildren, strays } from '../../scripts/local-stack/processes.js';

const dir = mkdtempSync(join(tmpdir(), 'stack-processes-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Alive and not a zombie (a PID 1 that does not reap leaves orphans as zombies). */
function running(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0] !== 'Z';
  } catch {
    return false;
  }
}
function pgid(pid: number): number | undefined {
  try {
    return Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[2]);
  } catch {
    return undefined;
  }
}

async function until<T>(f: () => T | undefined, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(50);
  }
}

it('stopping a child also stops what it started in a new session, marked or by its HOME', async () => {
  const home = join(dir, 'home');
  // One helper keeps the marker, one drops it (as a sanitising spawner may); both leave the group.
  const script = 'setsid sleep 600 & env -u LOCAL_STACK_CHILD setsid sleep 601 & wait';
  const child = startChild('escaper', 'sh', ['-c', script], {
    cwd: dir,
    env: { PATH: process.env.PATH, HOME: home },
    logFile: join(dir, 'log'),
    marks: [`HOME=${home}`],
  });
  // Both helpers outside the child's group (a group kill misses them), once setsid has run.
  const helpers = await until(() => {
    const found = strays(child.marks).filter((p) => p !== child.pid && pgid(p) !== child.pid);
    return found.length === 2 ? found : undefined;
  });
  expect(strays([`LOCAL_STACK_CHILD=${process.pid}:escaper`]).filter((p) => p !== child.pid)).toHaveLength(1);

  await stopChildren([child]);
  expect(strays(child.marks)).toEqual([]);
  for (const pid of helpers) expect(running(pid)).toBe(false);
}, 60_000);
