// The token bench's peer and load generator as processes: oidc-provider installed into the bench's
// temporary folder (never into the project), bench/lib/token-peer.mjs started on the server's core,
// bench/lib/token-load.mjs on the other.
import { closeSync, existsSync, openSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { onCpu, run, spawnTracked, stop } from './processes.mjs';
import { tail } from './workerd.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const PEER_READY_TIMEOUT_MS = 60_000; // a thousand clients' keys are generated before it listens
const LOADGEN_SLACK_MS = 120_000; // signing, verification and replay checks around the timed phase
const LOADGEN_ERROR_LINES = 6;
/**
 * The peer's version when the shared harness (whose package-lock.json pins it and its tree) is not
 * next to the project: the same version, resolved by npm from the registry.
 */
const PEER_PACKAGE = 'oidc-provider@9.13.3';

/** Where the shared harness lives: $PEER_BENCH_DIR, else <project>/../shared/bench/token-endpoint. */
export function harnessSource(projectRoot) {
  return process.env.PEER_BENCH_DIR
    ? path.resolve(process.env.PEER_BENCH_DIR)
    : path.resolve(projectRoot, '..', 'shared', 'bench', 'token-endpoint');
}

function npmCommand() {
  // Under `npm run`, use the same npm that runs us.
  const cli = process.env.npm_execpath;
  return cli?.endsWith('.js') ? [process.execPath, [cli]] : ['npm', []];
}

/**
 * Installs oidc-provider into `dest`: `npm ci` from the shared harness's package files when they
 * are there (its lock file pins the whole tree), else `npm install` of the same version. Returns
 * where the versions came from.
 */
export async function installPeer(src, dest, logFile) {
  const [npm, pre] = npmCommand();
  let from;
  let npmArgs;
  if (existsSync(path.join(src, 'package-lock.json')) && existsSync(path.join(src, 'package.json'))) {
    // Read and written, not copied: the shared folder may be read-only, and a copy keeps its modes.
    for (const f of ['package.json', 'package-lock.json']) await writeFile(path.join(dest, f), await readFile(path.join(src, f)));
    from = 'the shared harness lock file';
    npmArgs = ['ci', '--no-audit', '--no-fund'];
  } else {
    await writeFile(path.join(dest, 'package.json'), '{"private":true,"type":"module"}\n');
    from = `${PEER_PACKAGE} from the registry (no shared harness at ${src})`;
    npmArgs = ['install', '--no-audit', '--no-fund', '--no-save', PEER_PACKAGE];
  }
  const fd = openSync(logFile, 'w');
  try {
    const code = await run(npm, [...pre, ...npmArgs], { cwd: dest, stdio: ['ignore', fd, fd] });
    if (code !== 0) throw new Error(`npm ${npmArgs[0]} of the peer failed (exit ${code}):\n${await tail(logFile)}`);
  } finally {
    closeSync(fd);
  }
  return from;
}

/** Runs token-load.mjs on CPU 1 with `args`; resolves to its JSON report. Progress goes to stderr. */
export async function runLoad(args, { duration, warmup }) {
  const child = spawnTracked(...onCpu(1, process.execPath, [path.join(here, 'token-load.mjs'), ...args]), {
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
    console.error(`[bench] load generator still running after ${limitMs / 1000} s: stopping it`);
    stop(child);
  }, limitMs);
  const { code, signal, error } = await child.exited;
  clearTimeout(timer);
  if (error) throw error;
  if (code !== 0) throw new Error(`load generator failed (exit ${code ?? signal}): ${lastLines.join(' | ')}`);
  return JSON.parse(out);
}

/** Starts token-peer.mjs on CPU 0; resolves to { child, info } once it prints its ready line. */
export async function startPeer(peerDir, { port, store, clients, clientsOut, logFile }) {
  const fd = openSync(logFile, 'w');
  const child = spawnTracked(
    ...onCpu(0, process.execPath, [
      path.join(here, 'token-peer.mjs'),
      '--harness',
      peerDir,
      '--port',
      String(port),
      '--store',
      store,
      '--clients',
      String(clients),
      '--clients-out',
      clientsOut,
    ]),
    { stdio: ['ignore', 'pipe', fd] },
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
