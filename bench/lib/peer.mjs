// The shared token-endpoint harness (loadgen.mjs, peer-oidc-provider.mjs): used from a temporary
// copy with its own `npm ci`, never copied into the project.
import { closeSync, existsSync, openSync } from 'node:fs';
import { chmod, cp, mkdir, readdir, readFile, stat, symlink } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { onCpu, run, spawnTracked, stop } from './processes.mjs';
import { tail } from './workerd.mjs';

const PEER_READY_TIMEOUT_MS = 30_000;
const LOADGEN_SLACK_MS = 120_000; // signing, verification and replay checks around the timed phase
const LOADGEN_ERROR_LINES = 6;

/** Where the shared harness lives: $PEER_BENCH_DIR, else <project>/../shared/bench/token-endpoint. */
export function harnessSource(projectRoot) {
  return process.env.PEER_BENCH_DIR
    ? path.resolve(process.env.PEER_BENCH_DIR)
    : path.resolve(projectRoot, '..', 'shared', 'bench', 'token-endpoint');
}

// The shared folder is read-only: give the copy's owner write access so npm ci can fill it.
async function makeWritable(dir) {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) await makeWritable(p);
    else if (entry.isFile()) await chmod(p, (await stat(p)).mode | 0o200);
  }
}

function npmCommand() {
  // Under `npm run`, use the same npm that runs us.
  const cli = process.env.npm_execpath;
  return cli?.endsWith('.js') ? [process.execPath, [cli]] : ['npm', []];
}

/** Copies the harness (without node_modules and *.tmp) to `dest` and runs `npm ci` there. */
export async function prepareHarness(src, dest, logFile) {
  for (const f of ['loadgen.mjs', 'peer-oidc-provider.mjs', 'package-lock.json']) {
    if (!existsSync(path.join(src, f))) {
      throw new Error(`shared harness not found: no ${f} in ${src} (set PEER_BENCH_DIR to its folder)`);
    }
  }
  await cp(src, dest, {
    recursive: true,
    filter: (p) => !p.split(path.sep).includes('node_modules') && !p.endsWith('.tmp'),
  });
  await makeWritable(dest);
  const [npm, pre] = npmCommand();
  const fd = openSync(logFile, 'w');
  try {
    const code = await run(npm, [...pre, 'ci', '--no-audit', '--no-fund'], { cwd: dest, stdio: ['ignore', fd, fd] });
    if (code !== 0) throw new Error(`npm ci in the harness copy failed (exit ${code}):\n${await tail(logFile)}`);
  } finally {
    closeSync(fd);
  }
}

/**
 * Smoke mode: only the load generator, without `npm ci` (no registry needed). Copies loadgen.mjs
 * to `dest` and links `dest/node_modules` to the project's, which holds the same pinned jose and
 * undici; returns notes for any version that differs from the harness's package.json.
 */
export async function linkHarness(src, dest, projectNodeModules) {
  for (const f of ['loadgen.mjs', 'package.json']) {
    if (!existsSync(path.join(src, f))) {
      throw new Error(`shared harness not found: no ${f} in ${src} (set PEER_BENCH_DIR to its folder)`);
    }
  }
  await mkdir(dest, { recursive: true });
  for (const f of ['loadgen.mjs', 'package.json']) await cp(path.join(src, f), path.join(dest, f));
  await chmod(dest, 0o755);
  await symlink(projectNodeModules, path.join(dest, 'node_modules'), 'dir');
  const wanted = JSON.parse(await readFile(path.join(src, 'package.json'), 'utf8')).dependencies ?? {};
  const notes = [];
  for (const name of ['jose', 'undici']) {
    const have = await packageVersion(dest, name);
    if (!have) throw new Error(`the project has no ${name} in node_modules (the load generator needs it): run npm ci`);
    if (wanted[name] && have !== wanted[name])
      notes.push(`loadgen runs with the project's ${name} ${have}, the harness pins ${wanted[name]}`);
  }
  return notes;
}

export async function packageVersion(dir, name) {
  try {
    return JSON.parse(await readFile(path.join(dir, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return null;
  }
}

/** Runs loadgen.mjs on CPU 1 with `args`; resolves to its JSON report. Progress goes to stderr. */
export async function runLoadgen(harnessDir, args, { duration, warmup }) {
  const child = spawnTracked(...onCpu(1, process.execPath, ['loadgen.mjs', ...args]), {
    cwd: harnessDir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  const lastLines = []; // its last words go into the error if it fails
  createInterface({ input: child.stderr }).on('line', (l) => {
    console.error(`  ${l}`);
    lastLines.push(l);
    if (lastLines.length > LOADGEN_ERROR_LINES) lastLines.shift();
  });
  const limitMs = (duration + warmup) * 1000 + LOADGEN_SLACK_MS;
  const timer = setTimeout(() => {
    console.error(`[bench] loadgen still running after ${limitMs / 1000} s: stopping it`);
    stop(child);
  }, limitMs);
  const { code, signal, error } = await child.exited;
  clearTimeout(timer);
  if (error) throw error;
  if (code !== 0) throw new Error(`loadgen failed (exit ${code ?? signal}): ${lastLines.join(' | ')}`);
  return JSON.parse(out);
}

/** Starts peer-oidc-provider.mjs on CPU 0; resolves to { child, info } once it prints its ready line. */
export async function startPeer(harnessDir, { port, store, keyOut, logFile }) {
  const fd = openSync(logFile, 'w');
  const child = spawnTracked(
    ...onCpu(0, process.execPath, ['peer-oidc-provider.mjs', '--port', String(port), '--store', store, '--key-out', keyOut]),
    { cwd: harnessDir, stdio: ['ignore', 'pipe', fd] },
  );
  closeSync(fd);
  try {
    let timer;
    const info = await new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`peer not ready within ${PEER_READY_TIMEOUT_MS} ms`)), PEER_READY_TIMEOUT_MS);
      child.exited.then((e) => reject(new Error(`peer exited at start (${JSON.stringify(e)})`)));
      createInterface({ input: child.stdout }).once('line', (line) => {
        try {
          resolve(JSON.parse(line));
        } catch (e) {
          reject(e);
        }
      });
    }).finally(() => clearTimeout(timer));
    child.stdout.resume(); // nothing more is expected; keep the pipe drained
    return { child, info };
  } catch (e) {
    await stop(child);
    throw new Error(`${e.message}:\n${await tail(logFile)}`);
  }
}
