/**
 * `npm run gateway:install [-- --force]`: installs the real gateway (docs/architecture.md, "OpenClaw as the gateway") into `.gateway/`:
 * the pinned OpenClaw, the pinned Node runtime it needs (from the registry package
 * node-<platform>), and a wrapper `.gateway/bin/openclaw` that runs the OpenClaw CLI with that Node.
 * Everything comes from the npm registry through npm itself; nothing else is downloaded.
 *
 * Idempotent: when `.gateway/` already holds the pinned versions (its stamp says so and the files
 * exist) it only checks the runtime starts, and says "already installed". Otherwise it installs into
 * a staging folder and swaps it in at the end, so a failed or interrupted install never leaves a
 * half-installed `.gateway/` that the fast path would trust.
 *
 * Exit codes: 0 installed or already installed, 1 the install failed (npm's last lines shown),
 * 2 a bad flag or a platform without a pinned runtime.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  GATEWAY_DIR,
  gatewayPaths,
  installProblem,
  NODE_VERSION,
  nodePackageFor,
  OPENCLAW_VERSION,
  type Stamp,
  WRAPPER_REVISION,
} from './local-stack/openclaw-runtime.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Each npm step: OpenClaw is ~330 packages and ~650 MB; a slow mirror may take minutes, not hours. */
const NPM_STEP_TIMEOUT_MS = 15 * 60_000;
/** `node --version` / `openclaw --version`: a healthy runtime answers in well under a second. */
const VERSION_CHECK_TIMEOUT_MS = 30_000;
/** Lines of npm's output shown when a step fails. */
const TAIL_LINES = 25;
/**
 * Flags for both npm steps. --ignore-scripts: OpenClaw and its dependencies work without their
 * install scripts (npm 11 skips them by default anyway; npm 10 would run them), so the install is
 * the same on every npm and runs no third-party code. --engine-strict=false: npm compares engines
 * with the Node running npm (20), not the runtime we install; an operator's engine-strict would
 * otherwise refuse OpenClaw.
 */
const NPM_FLAGS = ['--global', '--no-audit', '--no-fund', '--ignore-scripts', '--engine-strict=false', '--no-update-notifier'];

class InstallError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
    readonly detail = '',
  ) {
    super(message);
  }
}

/**
 * The wrapper: POSIX sh, paths relative to itself (so the folder can move), its Node first on PATH
 * so anything OpenClaw starts by the name `node` gets the same runtime, and exec so the CLI is the
 * process (signals reach it, no shell stays behind).
 */
function wrapperText(): string {
  return `#!/bin/sh
# Written by scripts/gateway-install.ts (revision ${WRAPPER_REVISION}): the pinned OpenClaw ${OPENCLAW_VERSION} CLI run
# with the pinned Node ${NODE_VERSION} beside it. Reinstall with \`npm run gateway:install -- --force\`.
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd) || exit 1
PATH="$here:$PATH"
export PATH
exec "$here/node" "$here/../lib/node_modules/openclaw/openclaw.mjs" "$@"
`;
}

function writeWrapper(file: string): void {
  // npm links bin/openclaw to openclaw.mjs: writing through that link would overwrite the package.
  if (existsSync(file) || isLink(file)) unlinkSync(file);
  writeFileSync(file, wrapperText(), { mode: 0o755 });
  chmodSync(file, 0o755);
}

function isLink(file: string): boolean {
  try {
    return lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}

function version(command: string, args: string[]): string | undefined {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: VERSION_CHECK_TIMEOUT_MS, env: { ...process.env, NO_COLOR: '1' } });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** npm as the one running this script (npm run sets npm_execpath), else the npm on PATH. */
function npmCommand(): { command: string; prefixArgs: string[] } {
  const execPath = process.env.npm_execpath;
  if (execPath && /npm-cli\.[cm]?js$/.test(execPath)) return { command: process.execPath, prefixArgs: [execPath] };
  return { command: 'npm', prefixArgs: [] };
}

function npmInstall(prefix: string, spec: string, env: NodeJS.ProcessEnv): Promise<void> {
  const { command, prefixArgs } = npmCommand();
  const args = [...prefixArgs, 'install', ...NPM_FLAGS, '--prefix', prefix, spec];
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: prefix, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), NPM_STEP_TIMEOUT_MS);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new InstallError(`could not run npm to install ${spec}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve();
      const how = signal
        ? `was stopped (${signal}${signal === 'SIGTERM' ? `, over ${NPM_STEP_TIMEOUT_MS / 60_000} min` : ''})`
        : `exited with code ${code}`;
      reject(new InstallError(`npm install ${spec} ${how}`, 1, out.trimEnd().split('\n').slice(-TAIL_LINES).join('\n')));
    });
  });
}

/** Bytes under a folder (files as stored, links not followed). */
function sizeOf(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += sizeOf(path);
    else if (entry.isFile()) total += lstatSync(path).size;
  }
  return total;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

async function install(force: boolean, say: (line: string) => void): Promise<void> {
  const started = performance.now();
  const target = gatewayPaths(ROOT);
  const nodePackage = nodePackageFor();
  const what = `openclaw ${OPENCLAW_VERSION} and node ${NODE_VERSION} (${nodePackage ?? 'no runtime package'})`;
  if (!nodePackage) {
    throw new InstallError(
      `no pinned Node runtime for ${process.platform}-${process.arch}: the registry's node-<platform> packages at ${NODE_VERSION} cover linux-x64 and linux-arm64`,
      2,
    );
  }

  const problem = force ? 'reinstall asked for (--force)' : installProblem(ROOT);
  if (problem === undefined) {
    // The stamp could outlive a broken binary (a copy from another machine): the runtime must start.
    const nodeVersion = version(target.node, ['--version']);
    if (nodeVersion === `v${NODE_VERSION}`) {
      const wrapper = existsSync(target.openclaw) && !isLink(target.openclaw) ? readFileSync(target.openclaw, 'utf8') : '';
      if (wrapper !== wrapperText()) writeWrapper(target.openclaw);
      say(`gateway:install: already installed: ${what} in ${GATEWAY_DIR}/; nothing to do (${seconds(performance.now() - started)})`);
      return;
    }
    say(
      `gateway:install: ${GATEWAY_DIR}/bin/node does not run as node ${NODE_VERSION} (${nodeVersion ?? 'it did not start'}); reinstalling`,
    );
  } else if (existsSync(target.dir)) {
    say(`gateway:install: ${problem}; reinstalling`);
  }

  say(`gateway:install: installing ${what} from the npm registry into ${GATEWAY_DIR}/ (about 650 MB; a minute or so) ...`);
  const staging = join(ROOT, `${GATEWAY_DIR}.staging-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  try {
    const env = { ...process.env, NO_COLOR: '1' };
    await npmInstall(staging, `${nodePackage}@${NODE_VERSION}`, env);
    const stagedNode = join(staging, 'bin', 'node');
    const nodeVersion = version(stagedNode, ['--version']);
    if (nodeVersion !== `v${NODE_VERSION}`)
      throw new InstallError(
        `${nodePackage}@${NODE_VERSION} installed, but its node reports ${nodeVersion ?? 'nothing (it did not start)'}`,
      );

    // OpenClaw's own install script refuses a node older than its engines; with scripts ignored
    // none runs, but the pinned runtime goes first on PATH for any npm that runs them regardless.
    await npmInstall(staging, `openclaw@${OPENCLAW_VERSION}`, { ...env, PATH: `${join(staging, 'bin')}:${process.env.PATH ?? ''}` });
    const stagedWrapper = join(staging, 'bin', 'openclaw');
    writeWrapper(stagedWrapper);
    const cliVersion = version(stagedWrapper, ['--version']);
    if (!cliVersion?.includes(OPENCLAW_VERSION))
      throw new InstallError(
        `openclaw@${OPENCLAW_VERSION} installed, but \`openclaw --version\` answers ${cliVersion ?? 'nothing (it did not start)'}`,
      );

    const stamp: Stamp = {
      openclaw: OPENCLAW_VERSION,
      node: { package: nodePackage, version: NODE_VERSION },
      wrapper: WRAPPER_REVISION,
      installedAt: new Date().toISOString(),
    };
    // Written last: its presence is what says "complete".
    writeFileSync(join(staging, 'installed.json'), `${JSON.stringify(stamp, null, 2)}\n`);
    rmSync(target.dir, { recursive: true, force: true });
    renameSync(staging, target.dir);
  } catch (e) {
    rmSync(staging, { recursive: true, force: true });
    throw e;
  }
  const mb = Math.round(sizeOf(target.dir) / 1e6);
  say(`gateway:install: installed ${what} in ${GATEWAY_DIR}/: ${mb} MB in ${seconds(performance.now() - started)}`);
  say(`gateway:install: the CLI is ${GATEWAY_DIR}/bin/openclaw; \`npm run dev -- --gateway openclaw\` runs it behind the local stack`);
}

async function main(): Promise<number> {
  let force = false;
  try {
    const { values } = parseArgs({
      args: process.argv.slice(2),
      options: { force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    });
    if (values.help) {
      console.log(
        `usage: npm run gateway:install [-- --force]\n  Installs openclaw@${OPENCLAW_VERSION} and its Node ${NODE_VERSION} runtime from the npm registry into ${GATEWAY_DIR}/; --force reinstalls.`,
      );
      return 0;
    }
    force = values.force === true;
  } catch (e) {
    console.error(`gateway:install: ${(e as Error).message.split('\n')[0]}`);
    return 2;
  }
  try {
    await install(force, (line) => console.log(line));
    return 0;
  } catch (e) {
    if (!(e instanceof InstallError)) throw e;
    console.error(`gateway:install: ${e.message}`);
    if (e.detail) console.error(e.detail.replace(/^/gm, '  | '));
    return e.exitCode;
  }
}

process.exit(await main());
