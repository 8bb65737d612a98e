/**
 * What the tests that run whole local stacks share: a fresh copy of the working tree for a stack
 * to run in (so its .dev.vars, .dev-stack/ and .wrangler/state never touch the clone's), and the
 * live processes with their environment, to find what of a stack is still running.
 */
import { type ChildProcess, exec, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './worker-process.js';

const run = promisify(exec);

/**
 * Copies the files a clone would hold (tracked and not ignored) to `dest`, and links in the
 * installed `node_modules` and, when asked and present, `.gateway/`.
 */
export async function freshCopy(dest: string, opts: { gateway: boolean }): Promise<void> {
  const { stdout } = await run('git ls-files -z --cached --others --exclude-standard', { cwd: ROOT, maxBuffer: 16 << 20 });
  for (const rel of stdout.split('\0').filter(Boolean)) {
    if (!existsSync(join(ROOT, rel))) continue; // deleted in the working tree
    mkdirSync(dirname(join(dest, rel)), { recursive: true });
    cpSync(join(ROOT, rel), join(dest, rel));
  }
  symlinkSync(join(ROOT, 'node_modules'), join(dest, 'node_modules'));
  if (opts.gateway && existsSync(join(ROOT, '.gateway'))) symlinkSync(join(ROOT, '.gateway'), join(dest, '.gateway'));
}

export interface Proc {
  pid: number;
  /** The command line, arguments joined by spaces. */
  cmd: string;
  /** The raw command line and environment (NUL-separated), for searching values in them. */
  cmdline: string;
  environ: string;
  env: string[];
  cwd: string;
}

/** Live (not zombie) processes with their environment and working folder (only ours are readable). */
export function processes(): Proc[] {
  const out: Proc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      const environ = readFileSync(`/proc/${name}/environ`, 'utf8');
      let cwd = '';
      try {
        cwd = readlinkSync(`/proc/${name}/cwd`);
      } catch {
        /* gone meanwhile */
      }
      out.push({ pid: Number(name), cmd: cmdline.replace(/\0/g, ' '), cmdline, environ, env: environ.split('\0'), cwd });
    } catch {
      /* gone meanwhile, or not ours */
    }
  }
  return out;
}

export interface DevStackProcess {
  child: ChildProcess;
  /** Everything it printed so far, stdout and stderr. */
  output(): string;
  /** How it ended: its signal, or `exit <code>`. */
  exited: Promise<string>;
}

/**
 * `npm run dev -- --gateway openclaw --base-port <base>` in `dir`, as a user runs it. Detached: a
 * process group of its own, so Ctrl-C can go to the whole group as a terminal sends it.
 */
export function spawnOpenClawStack(dir: string, base: number): DevStackProcess {
  let out = '';
  const child = spawn('npm', ['run', 'dev', '--', '--gateway', 'openclaw', '--base-port', String(base)], {
    cwd: dir,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false' },
  });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<string>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? `exit ${code}`)));
  return { child, output: () => out, exited };
}
