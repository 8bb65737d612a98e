/**
 * `npm run dev`: the whole system on one machine (DESIGN §7), as ordinary processes on loopback.
 *
 *   issuer   8787  the Worker in workerd (wrangler dev), state kept in .wrangler/state
 *   agent    8788  the container agent, bootstrapped for SANDBOX_ID through the admin API
 *   proxy    8789  the verifying proxy in front of the gateway
 *   gateway  8790  a stand-in gateway that accepts only the agent's current GATEWAY_TOKEN
 *
 * Order: check every port, write .dev.vars on first run, start the issuer, bootstrap the sandbox,
 * start the gateway, the agent and the proxy, each waited on until healthy, send one request
 * through the whole chain, then print where everything is. Ctrl-C stops it all; nothing is left.
 * Files of a run live in .dev-stack/ (git-ignored): the bootstrap file, the agent's output, logs.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureDevVars, readDevVars } from './local-stack/dev-vars.js';
import { StackError } from './local-stack/errors.js';
import { waitHealthy } from './local-stack/health.js';
import { assertFree, DEFAULT_BASE_PORT, HOST, portsFrom, type StackPorts } from './local-stack/ports.js';
import { startChild, stopChildren, type Child } from './local-stack/processes.js';
import { startStandInGateway } from './local-stack/stand-in-gateway.js';
import { statusText } from './local-stack/status.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const STATE_DIR = '.dev-stack';
/** The first `wrangler dev` of a clone bundles the Worker and starts workerd: allow for a slow machine. */
const ISSUER_START_MS = 120_000;
/** The agent's first token, the proxy's first JWKS fetch. */
const COMPONENT_START_MS = 30_000;
const TOKEN_NAME = 'GATEWAY_TOKEN';
/** keys.example's DEV_USER. */
const DEFAULT_DEV_USER = 'dev@localhost';
/** A signal this soon after the first is the same Ctrl-C, relayed by npm. */
const REPEAT_SIGNAL_MS = 1_000;

const USAGE = `usage: npm run dev [-- --base-port N]
  Starts the issuer (${DEFAULT_BASE_PORT}), agent (${DEFAULT_BASE_PORT + 1}), verifying proxy (${DEFAULT_BASE_PORT + 2}) and a stand-in
  gateway (${DEFAULT_BASE_PORT + 3}) on ${HOST}; --base-port N moves them to N..N+3. Ctrl-C stops everything.`;

function parseFlags(argv: string[]): { basePort: number } {
  let values: { 'base-port'?: string; help?: boolean };
  try {
    ({ values } = parseArgs({ args: argv, options: { 'base-port': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]!);
  }
  if (values.help) throw new UsageError(USAGE, 0);
  const raw = values['base-port'];
  const basePort = raw === undefined ? DEFAULT_BASE_PORT : /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
  if (!(basePort >= 1024 && basePort <= 65532)) throw new UsageError('--base-port: must be a port number from 1024 to 65532 (four ports from it are used)');
  return { basePort };
}

class UsageError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}

interface Running {
  children: Child[];
  gateway?: Server;
}

async function bootstrap(issuer: string, adminToken: string, sandbox: string, file: string): Promise<void> {
  let res: Response;
  try {
    res = await fetch(`${issuer}/api/admin/sandboxes/${sandbox}/bootstrap`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } });
  } catch {
    throw new StackError(`could not reach the issuer at ${issuer} to bootstrap sandbox "${sandbox}"`);
  }
  const text = await res.text();
  if (!res.ok) {
    // An error answer names a code and a reason, never a secret.
    throw new StackError(`bootstrapping sandbox "${sandbox}" failed: HTTP ${res.status} ${text.slice(0, 200)}${res.status === 401 ? ' (is ADMIN_TOKEN in .dev.vars the one the issuer runs with?)' : ''}`);
  }
  // Holds the sandbox's private key: owner-only, replaced atomically.
  writeFileSync(`${file}.tmp`, text, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

async function chainCheck(issuer: string): Promise<void> {
  let res: Response;
  try {
    res = await fetch(`${issuer}/`, { signal: AbortSignal.timeout(10_000) });
  } catch {
    throw new StackError(`the request through the chain (${issuer}/) got no answer`);
  }
  const body = await res.text();
  if (res.status !== 200) throw new StackError(`the request through the chain (${issuer}/) answered HTTP ${res.status}: ${body.slice(0, 300)}`);
}

async function start(ports: StackPorts, running: Running, say: (line: string) => void): Promise<{ sandbox: string }> {
  await assertFree(ports);
  if (ensureDevVars(`${ROOT}.dev.vars`, `${ROOT}keys.example`)) say('wrote .dev.vars from keys.example with fresh random secrets (ADMIN_TOKEN is in it)');
  const vars = readDevVars(`${ROOT}.dev.vars`);
  const adminToken = vars.ADMIN_TOKEN ?? '';
  if (adminToken === '') throw new StackError('.dev.vars has no ADMIN_TOKEN: the local stack needs it to bootstrap the sandbox (delete .dev.vars to get a fresh one)');
  const sandbox = vars.SANDBOX_ID || 'main';
  // A .dev.vars from before DEV_USER existed (or with it emptied) would leave the chain without a user.
  const devUser = vars.DEV_USER || DEFAULT_DEV_USER;

  const dir = `${ROOT}${STATE_DIR}`;
  mkdirSync(`${dir}/logs`, { recursive: true, mode: 0o700 });
  const issuer = `http://${HOST}:${ports.issuer}`;
  const env = { WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' };

  say(`starting the issuer on ${issuer} (wrangler dev) ...`);
  const worker = startChild(
    'issuer',
    `${ROOT}node_modules/.bin/wrangler`,
    // ISSUER and GATEWAY_UPSTREAM follow the ports, whatever .dev.vars says; the chain needs a DEV_USER.
    [
      ...['dev', '--ip', HOST, '--port', String(ports.issuer), '--show-interactive-dev-session=false'],
      ...['--var', `ISSUER:${issuer}`, '--var', `GATEWAY_UPSTREAM:http://${HOST}:${ports.proxy}`, '--var', `DEV_USER:${devUser}`],
    ],
    { cwd: ROOT, env, logFile: `${dir}/logs/issuer.log` },
  );
  running.children.push(worker);
  await waitHealthy('the issuer', `${issuer}/.well-known/jwks.json`, worker, ISSUER_START_MS);

  const bootFile = `${dir}/bootstrap.json`;
  await bootstrap(issuer, adminToken, sandbox, bootFile);
  const agentDir = `${dir}/agent`;
  const credentialsFile = `${agentDir}/credentials.json`;

  running.gateway = await startStandInGateway({ host: HOST, port: ports.gateway, credentialsFile, tokenName: TOKEN_NAME });

  // The container programs from their TypeScript sources, as `npm run agent` / `gateway-proxy` run them.
  const fromSource = (script: string) => ['--import', './scripts/register-ts.mjs', script];
  say(`starting the agent for sandbox "${sandbox}" ...`);
  // Every flag explicit: a flag wins over its environment twin, and a shell that exports
  // ISSUER_URL for credctl (perhaps a deployed issuer) must not redirect the local agent.
  const agentArgs = ['--bootstrap-key', bootFile, '--dir', agentDir, '--issuer', issuer, '--host', HOST, '--port', String(ports.agent)];
  const agent = startChild('agent', process.execPath, [...fromSource('container/refresh.ts'), ...agentArgs], {
    cwd: ROOT,
    env,
    logFile: `${dir}/logs/agent.log`,
  });
  running.children.push(agent);
  await waitHealthy('the agent', `http://${HOST}:${ports.agent}/healthz`, agent, COMPONENT_START_MS);

  const proxyArgs = ['--jwks', `${issuer}/.well-known/jwks.json`, '--issuer', issuer, '--audience', `gateway:${sandbox}`];
  proxyArgs.push('--upstream', `http://${HOST}:${ports.gateway}`, '--credentials', credentialsFile, '--upstream-token', TOKEN_NAME, '--host', HOST, '--port', String(ports.proxy));
  const proxy = startChild('proxy', process.execPath, [...fromSource('container/gateway-proxy.ts'), ...proxyArgs], { cwd: ROOT, env, logFile: `${dir}/logs/proxy.log` });
  running.children.push(proxy);
  await waitHealthy('the verifying proxy', `http://${HOST}:${ports.proxy}/healthz`, proxy, COMPONENT_START_MS);

  await chainCheck(issuer);
  return { sandbox };
}

async function stop(running: Running): Promise<void> {
  // All at once; SIGINT is how wrangler dev stops cleanly (it stops its workerd), SIGTERM for the rest.
  await stopChildren(running.children, { issuer: 'SIGINT' });
  running.children = [];
  await new Promise<void>((resolve) => (running.gateway ? running.gateway.close(() => resolve()).closeAllConnections() : resolve()));
}

async function main(): Promise<number> {
  const say = (line: string) => console.log(line);
  let ports: StackPorts;
  try {
    ports = portsFrom(parseFlags(process.argv.slice(2)).basePort);
  } catch (e) {
    const u = e as UsageError;
    (u.exitCode === 0 ? console.log : console.error)(u.exitCode === 0 ? u.message : `dev: ${u.message}`);
    return u.exitCode;
  }

  const running: Running = { children: [] };
  let stopping: Promise<void> | undefined;
  let signalled: number | undefined;
  const stopOnce = () => (stopping ??= stop(running));
  const stoppedBySignal = new Promise<NodeJS.Signals>((resolve) => {
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.on(sig, () => {
        // npm passes on the Ctrl-C its own process got: a repeat within a moment is the same one.
        // A later one means "now": exit, and the exit hook SIGKILLs every group.
        if (signalled !== undefined) {
          if (Date.now() - signalled > REPEAT_SIGNAL_MS) process.exit(130);
          return;
        }
        signalled = Date.now();
        resolve(sig);
      });
    }
  });

  try {
    const up = await Promise.race([start(ports, running, say), stoppedBySignal]);
    if (typeof up === 'string') {
      say('\nstopping ...');
      await stopOnce();
      return 0;
    }
    say(statusText({ ports, sandbox: up.sandbox, stateDir: STATE_DIR, host: HOST, defaultBase: DEFAULT_BASE_PORT, issuerUrlEnv: process.env.ISSUER_URL || undefined }));
  } catch (e) {
    await stopOnce();
    if (e instanceof StackError) {
      console.error(`dev: ${e.message}`);
      const detail = typeof e.detail === 'function' ? e.detail() : e.detail;
      if (detail) console.error(detail.replace(/^/gm, '  | '));
      return 1;
    }
    throw e;
  }

  // Up: wait for Ctrl-C, or for a component to stop on its own.
  const died = Promise.race(running.children.map((c) => c.exited.then((how) => ({ c, how }))));
  const outcome = await Promise.race([stoppedBySignal, died]);
  if (typeof outcome === 'string') {
    say('\nstopping ...');
    await stopOnce();
    say('stopped; nothing of the stack is left running');
    return 0;
  }
  console.error(`dev: ${outcome.c.name} stopped on its own (${outcome.how}); its log is ${outcome.c.logFile}`);
  console.error(outcome.c.tail().replace(/^/gm, '  | '));
  await stopOnce();
  return 1;
}

process.exit(await main());
