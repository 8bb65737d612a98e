/**
 * `npm run dev [-- --gateway openclaw]`: the whole system on one machine (docs/architecture.md, "Local stack"), as ordinary
 * processes on loopback.
 *
 *   issuer   8787  the Worker in workerd (wrangler dev), state kept in .wrangler/state
 *   agent    8788  the container agent, bootstrapped for SANDBOX_ID through the admin API
 *   proxy    8789  the verifying proxy in front of the gateway
 *   gateway  8790  a stand-in gateway that accepts only the agent's current GATEWAY_TOKEN, or with
 *                  --gateway openclaw the real OpenClaw from .gateway/ (npm run gateway:install),
 *                  in trusted-proxy mode
 *   model    8791  the stand-in model provider the gateway's model calls reach (either gateway)
 *   egress   8792  the local egress hop (either gateway): the gateway addresses its provider
 *                  through it, and it hands each call to the Worker's egress handler
 *                  (/.local/egress), which puts STANDIN_PROVIDER_KEY in place of the sentinel the
 *                  sandbox holds (CREDENTIALS delivers PROVIDER_API_KEY at egress) and forwards it
 *                  to the provider; locally there is no platform interception to do that
 *
 * Order: with the real gateway, check it is installed; check every port, write .dev.vars on first
 * run (and bring a .dev.vars whose CREDENTIALS is exactly the previous keys.example default up to
 * the egress entry), start the issuer, the model provider and the hop, bootstrap the sandbox, start
 * the gateway (the stand-in first; the real one after the agent, since it resolves its secrets from
 * the agent's credentials.json at start), the agent and the proxy, each waited on until healthy,
 * send one request and one chat completion through the whole chain, then print where everything
 * is. Ctrl-C stops it all; nothing is left.
 * Files of a run live in .dev-stack/ (git-ignored): the bootstrap file, the agent's output, logs,
 * the real gateway's throwaway home, the change hook's bundle, the control socket.
 *
 * While it runs, `npm run dev:rotate -- NAME` rotates a secret as a deploy does
 * (scripts/local-stack/rotation.ts): new value in .dev.vars and the Worker restarted; for an
 * egress-delivered secret (STANDIN_PROVIDER_KEY) that is all, the provider accepting the new key
 * before and revoking the old one right after, then one completion proves it; for any other the
 * agent nudged too, and with the real gateway its change hook's secrets.reload awaited.
 */
import { appendFileSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { IssuerClient } from '../cli/client.js';
import { CliError, EXIT } from '../cli/errors.js';
import { ensureLocalPassword, LOCAL_AUTH_FILE } from '../container/openclaw-reload.js';
import {
  type BootstrapFile,
  CREDENTIALS_FILE,
  checkBootstrapFile,
  LOCAL_BASE_PORT as DEFAULT_BASE_PORT,
  DEV_VARS_FILE,
  LOCAL_HOST as HOST,
  JWKS_PATH,
  type LocalStackPorts,
  localStackPorts,
} from '../src/admin-api.js';
import { NODE_BUNDLE, REQUIRE_BANNER } from './bundle-options.mjs';
import { ensureDevVars, readDevVars } from './local-stack/dev-vars.js';
import { type EgressHop, startEgressHop } from './local-stack/egress-hop.js';
import { StackError } from './local-stack/errors.js';
import { waitHealthy } from './local-stack/health.js';
import { FIXED_REPLY, keyFingerprint, MODEL_ID, type ModelProvider, startModelProvider } from './local-stack/model-provider.js';
import { CLI_DIR, HOME_DIR, openClawConfig, startOpenClaw, writeCliProfile, writeOpenClawHome } from './local-stack/openclaw-gateway.js';
import { GATEWAY_DIR, installProblem, OPENCLAW_VERSION } from './local-stack/openclaw-runtime.js';
import { assertFree, ephemeralPort } from './local-stack/ports.js';
import { type Child, startChild, stopChildren } from './local-stack/processes.js';
import {
  CONTROL_SOCKET,
  type RotationEvent,
  type RotationFlow,
  type RotationReport,
  startControlServer,
  writeValue,
} from './local-stack/rotation.js';
import { startStandInGateway } from './local-stack/stand-in-gateway.js';
import { statusText } from './local-stack/status.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const STATE_DIR = '.dev-stack';
/** The first `wrangler dev` of a clone bundles the Worker and starts workerd: allow for a slow machine. */
const ISSUER_START_MS = 120_000;
/** The agent's first token, the proxy's first JWKS fetch. */
const COMPONENT_START_MS = 30_000;
/** The bootstrap call: the Worker is healthy by then; its first Durable Object start may still take a moment. */
const BOOTSTRAP_TIMEOUT_MS = 30_000;
/**
 * OpenClaw 2026.9.6 is ready in about 10 s on an idle machine, 20 to 30 s on two cores shared with
 * other work (measured): allow for a slower one before calling it failed.
 */
const OPENCLAW_START_MS = 180_000;
/** One request through the chain; OpenClaw's first answers are slower than the stand-in's. */
const CHAIN_CHECK_MS = 30_000;
/**
 * One chat completion through the chain: instant with the stand-in; with OpenClaw an agent run,
 * 10 to 25 s measured on two shared cores (the first is the slowest).
 */
const COMPLETION_CHECK_MS = 120_000;
const TOKEN_NAME = 'GATEWAY_TOKEN';
/** The Worker secret that holds the stand-in model provider's key (keys.example). */
const PROVIDER_SECRET = 'STANDIN_PROVIDER_KEY';
/** The host the provider entry's egress binding names: the hop's x-egress-url addresses the provider so. */
const PROVIDER_EGRESS_HOST = 'localhost';
/** The header OpenAI-style providers take their key in, as `Bearer <key>`. */
const PROVIDER_EGRESS_HEADER = 'authorization';
/** keys.example's CREDENTIALS before egress delivery: a .dev.vars with exactly this is brought up to today's. */
const PREVIOUS_DEFAULT_CREDENTIALS =
  '{"GATEWAY_TOKEN":{"secret":"MOLTBOT_GATEWAY_TOKEN","derive":true},"PROVIDER_API_KEY":{"secret":"STANDIN_PROVIDER_KEY"}}';
/** keys.example's CREDENTIALS now (its one source: keys.example). */
const CURRENT_CREDENTIALS = readDevVars(`${ROOT}keys.example`).CREDENTIALS ?? '';
/** Highest base port: the stack uses base..base+5 (issuer .. egress hop). */
const MAX_BASE_PORT = 65530;
/** keys.example's DEV_USER. */
const DEFAULT_DEV_USER = 'dev@localhost';
/**
 * A restarted Worker only re-bundles what changed since the first start, and workerd starts in
 * a second or two; allow for a loaded machine.
 */
const ISSUER_RESTART_MS = 60_000;
/** The agent's change hook runs at most HOOK_TIMEOUT_MS (30 s); a little more for the bookkeeping. */
const HOOK_WAIT_MS = 35_000;
/** Polling the agent's metrics for the hook's result: the hook itself takes ~150 ms to 1 s. */
const HOOK_POLL_MS = 20;
/** The agent takes one POST /refresh a second (429 otherwise): retry that often, this many times. */
const NUDGE_RETRY_MS = 1_000;
const NUDGE_ATTEMPTS = 5;
/** A signal this soon after the first is the same Ctrl-C, relayed by npm. */
const REPEAT_SIGNAL_MS = 1_000;

/** The stack's ports when no --base-port moves them. */
const DEFAULT_PORTS = localStackPorts(DEFAULT_BASE_PORT);
const USAGE = `usage: npm run dev [-- --base-port N] [--gateway stand-in|openclaw]
  Starts the issuer (${DEFAULT_PORTS.issuer}), agent (${DEFAULT_PORTS.agent}), verifying proxy (${DEFAULT_PORTS.proxy}), a gateway (${DEFAULT_PORTS.gateway}),
  a stand-in model provider (${DEFAULT_PORTS.modelProvider}) and the local egress hop (${DEFAULT_PORTS.egressHop}) on ${HOST}: the stand-in gateway,
  or with --gateway openclaw the real OpenClaw from ${GATEWAY_DIR}/ (npm run gateway:install). The gateway's model
  calls go through the hop to the Worker's egress handler, which puts the provider key in.
  --base-port N moves them to N..N+5. Ctrl-C stops everything.`;

type GatewayKind = 'stand-in' | 'openclaw';

function parseFlags(argv: string[]): { basePort: number; gateway: GatewayKind } {
  let values: { 'base-port'?: string; gateway?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { 'base-port': { type: 'string' }, gateway: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }));
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]!);
  }
  if (values.help) throw new UsageError(USAGE, 0);
  const gateway = values.gateway ?? 'stand-in';
  if (gateway !== 'stand-in' && gateway !== 'openclaw')
    throw new UsageError(`--gateway: must be stand-in (the default) or openclaw, not "${gateway.slice(0, 40)}"`);
  const raw = values['base-port'];
  const basePort = raw === undefined ? DEFAULT_BASE_PORT : /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
  if (!(basePort >= 1024 && basePort <= MAX_BASE_PORT)) {
    throw new UsageError(`--base-port: must be a port number from 1024 to ${MAX_BASE_PORT} (six ports from it are used)`);
  }
  return { basePort, gateway };
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
  modelProvider?: ModelProvider;
  egressHop?: EgressHop;
  control?: Server;
  /** Called when a child that is still part of the stack ends (not the Worker a rotation restarts). */
  onDeath?: (c: Child, how: string) => void;
}

/** Adds a child to the stack: its end is the stack's failure, unless it was taken out first. */
function track(running: Running, c: Child): Child {
  running.children.push(c);
  void c.exited.then((how) => running.children.includes(c) && running.onDeath?.(c, how));
  return c;
}

/**
 * A new bootstrap file for `sandbox` through the admin API, with the operator CLI's client (its
 * timeout, its loopback rule for the admin token, its error messages, which never carry a
 * credential), checked and written owner-only, atomically.
 */
async function bootstrap(issuer: string, adminToken: string, sandbox: string, file: string): Promise<void> {
  const client = new IssuerClient({
    issuer: new URL(issuer),
    credentials: { adminToken, source: 'flag' },
    timeoutMs: BOOTSTRAP_TIMEOUT_MS,
  });
  let answer: BootstrapFile;
  try {
    answer = await client.call('bootstrap', { id: sandbox });
  } catch (e) {
    if (!(e instanceof CliError)) throw e;
    const hint = e.exitCode === EXIT.auth ? ` (is ADMIN_TOKEN in ${DEV_VARS_FILE} the one the issuer runs with?)` : '';
    throw new StackError(`bootstrapping sandbox "${sandbox}" failed: ${e.message}${hint}`);
  }
  const check = checkBootstrapFile(answer);
  if (!check.ok)
    throw new StackError(`bootstrapping sandbox "${sandbox}" failed: the issuer's answer is not a bootstrap file (${check.problem})`);
  // Holds the sandbox's private key: owner-only, replaced atomically.
  writeFileSync(`${file}.tmp`, `${JSON.stringify(answer, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

/**
 * One request through the whole chain. For the real gateway, `GET /v1/models`: unlike `/` (the
 * Control UI's page, which OpenClaw serves to anyone) it needs the trusted-proxy identity, so it
 * shows the gateway accepted the proxy's user and address; then `/` must be the Control UI. Then,
 * for either gateway, one chat completion all the way to the model provider.
 */
async function chainCheck(issuer: string, gateway: GatewayKind): Promise<void> {
  const get = async (path: string) => {
    try {
      const res = await fetch(`${issuer}${path}`, { signal: AbortSignal.timeout(CHAIN_CHECK_MS) });
      return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
    } catch {
      throw new StackError(`the request through the chain (${issuer}${path}) got no answer`);
    }
  };
  const path = gateway === 'openclaw' ? '/v1/models' : '/';
  const res = await get(path);
  if (res.status !== 200)
    throw new StackError(`the request through the chain (${issuer}${path}) answered HTTP ${res.status}: ${res.body.slice(0, 300)}`);
  if (gateway === 'openclaw') {
    const ui = await get('/');
    if (ui.status !== 200 || !ui.type.startsWith('text/html'))
      throw new StackError(`the Control UI through the chain (${issuer}/) answered HTTP ${ui.status} ${ui.type}, not the page`);
  }
  await chainCompletion(issuer, gateway);
}

/**
 * One chat completion through the whole chain: Worker -> proxy -> gateway -> egress hop -> the
 * Worker's egress handler (the sentinel out, STANDIN_PROVIDER_KEY in) -> stand-in model provider.
 * It must answer the provider's fixed reply.
 */
async function chainCompletion(issuer: string, gateway: GatewayKind): Promise<void> {
  const url = `${issuer}/v1/chat/completions`;
  const model = gateway === 'openclaw' ? 'openclaw' : MODEL_ID;
  let status: number;
  let text: string;
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
      signal: AbortSignal.timeout(COMPLETION_CHECK_MS),
    });
    status = res.status;
    text = await res.text();
  } catch {
    throw new StackError(
      `the chat completion through the chain (${url}) got no answer within ${COMPLETION_CHECK_MS / 1000} s (see ${STATE_DIR}/logs/egress-hop.log and model-provider.log)`,
    );
  }
  let content: unknown;
  try {
    content = (JSON.parse(text) as { choices?: { message?: { content?: unknown } }[] }).choices?.[0]?.message?.content;
  } catch {
    /* not JSON: reported below */
  }
  if (status !== 200 || content !== FIXED_REPLY) {
    // An answer names a code and a reason (the provider's, the egress handler's rule), never a key or a sentinel.
    throw new StackError(
      `the chat completion through the chain (gateway -> egress hop -> the Worker's egress handler -> model provider) answered HTTP ${status}, not the provider's reply: ${text.slice(0, 300)} (see ${STATE_DIR}/logs/egress-hop.log and model-provider.log)`,
    );
  }
}

interface CredentialsEntries {
  [name: string]: { secret?: unknown; derive?: unknown; egress?: { hosts?: unknown; header?: unknown } };
}

/** CREDENTIALS of a .dev.vars, parsed; undefined when it is not a JSON object. */
function credentialsOf(vars: Record<string, string>): CredentialsEntries | undefined {
  try {
    const parsed = JSON.parse(vars.CREDENTIALS || '{}') as unknown;
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as CredentialsEntries) : undefined;
  } catch {
    return undefined;
  }
}

/** The Worker secrets CREDENTIALS delivers at egress: the Worker reads them at each request, the sandbox never holds them. */
function egressSecrets(vars: Record<string, string>): Set<string> {
  const entries = credentialsOf(vars) ?? {};
  return new Set(
    Object.values(entries)
      .filter((e) => e?.egress !== undefined && typeof e.secret === 'string')
      .map((e) => e.secret as string),
  );
}

/**
 * A .dev.vars written from keys.example before egress delivery holds its CREDENTIALS default, which
 * delivers the provider key as a plain value: exactly that line is replaced with today's default
 * (the only edit the stack ever makes to an existing .dev.vars). Returns whether it did.
 */
function migrateCredentials(devVarsPath: string, vars: Record<string, string>): boolean {
  if (vars.CREDENTIALS !== PREVIOUS_DEFAULT_CREDENTIALS) return false;
  writeValue(devVarsPath, 'CREDENTIALS', `'${CURRENT_CREDENTIALS}'`);
  return true;
}

/**
 * The CREDENTIALS entry that delivers the model provider's key, from .dev.vars, or a one-line fix.
 * It must be delivered at egress, to `localhost` in the `authorization` header: the gateway holds a
 * sentinel, and the Worker's egress handler puts the key into the calls the hop hands it.
 */
function providerKeyEntry(vars: Record<string, string>): { name: string; key: string } {
  const key = vars[PROVIDER_SECRET] ?? '';
  if (key === '') {
    throw new StackError(
      `.dev.vars has no ${PROVIDER_SECRET}, the stand-in model provider's key (keys.example has it: add a ${PROVIDER_SECRET}=<32 or more random characters> line, and CREDENTIALS='${CURRENT_CREDENTIALS}')`,
    );
  }
  const entries = credentialsOf(vars);
  if (!entries)
    throw new StackError(`CREDENTIALS in .dev.vars is not a JSON object (keys.example's: CREDENTIALS='${CURRENT_CREDENTIALS}')`);
  const egress = { hosts: [PROVIDER_EGRESS_HOST], header: PROVIDER_EGRESS_HEADER };
  const name = Object.keys(entries).find((n) => entries[n]?.secret === PROVIDER_SECRET);
  const entry = name === undefined ? undefined : entries[name]!;
  const bound =
    entry?.egress !== undefined &&
    Array.isArray(entry.egress.hosts) &&
    entry.egress.hosts.includes(PROVIDER_EGRESS_HOST) &&
    entry.egress.header === PROVIDER_EGRESS_HEADER;
  if (name === undefined || !bound) {
    // The fix, exactly: their own CREDENTIALS with the provider entry delivered at egress (names only, never a value).
    const fixed = { ...entries, [name ?? 'PROVIDER_API_KEY']: { secret: PROVIDER_SECRET, egress } };
    const what =
      name === undefined
        ? `delivers no ${PROVIDER_SECRET} to the sandbox`
        : `delivers ${PROVIDER_SECRET} (${name}) other than at egress to "${PROVIDER_EGRESS_HOST}" in "${PROVIDER_EGRESS_HEADER}"`;
    throw new StackError(
      `CREDENTIALS in .dev.vars ${what}, which the local stack's model calls need: put CREDENTIALS='${JSON.stringify(fixed)}' in .dev.vars`,
    );
  }
  return { name, key };
}

interface Up {
  sandbox: string;
  /** Fingerprint of the model provider's key. */
  providerKey: string;
}

async function start(ports: LocalStackPorts, gateway: GatewayKind, running: Running, say: (line: string) => void): Promise<Up> {
  if (gateway === 'openclaw') {
    const problem = installProblem(ROOT);
    if (problem) throw new StackError(`the real gateway is not installed (${problem}): run \`npm run gateway:install\` first`);
  }
  await assertFree(ports);
  const devVarsPath = `${ROOT}${DEV_VARS_FILE}`;
  if (ensureDevVars(devVarsPath, `${ROOT}keys.example`))
    say('wrote .dev.vars from keys.example with fresh random secrets (ADMIN_TOKEN is in it)');
  let vars = readDevVars(devVarsPath);
  if (migrateCredentials(devVarsPath, vars)) {
    say(
      `updated CREDENTIALS in .dev.vars to keys.example's: PROVIDER_API_KEY is delivered at egress now (the sandbox holds a sentinel; the Worker puts ${PROVIDER_SECRET} in)`,
    );
    vars = readDevVars(devVarsPath);
  }
  const adminToken = vars.ADMIN_TOKEN ?? '';
  if (adminToken === '')
    throw new StackError(
      '.dev.vars has no ADMIN_TOKEN: the local stack needs it to bootstrap the sandbox (delete .dev.vars to get a fresh one)',
    );
  const sandbox = vars.SANDBOX_ID || 'main';
  const provider = providerKeyEntry(vars);
  // A .dev.vars from before DEV_USER existed (or with it emptied) would leave the chain without a user.
  const devUser = vars.DEV_USER || DEFAULT_DEV_USER;

  const dir = `${ROOT}${STATE_DIR}`;
  mkdirSync(`${dir}/logs`, { recursive: true, mode: 0o700 });
  const issuer = `http://${HOST}:${ports.issuer}`;
  const env = { WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' };

  say(`starting the issuer on ${issuer} (wrangler dev) ...`);
  // Its own devtools port, kept across a rotation's restart (ports.ts, ephemeralPort).
  const inspectorPort = await ephemeralPort();
  const startIssuer = () =>
    startChild(
      'issuer',
      `${ROOT}node_modules/.bin/wrangler`,
      // ISSUER and GATEWAY_UPSTREAM follow the ports, whatever .dev.vars says; the chain needs a DEV_USER.
      [
        ...[
          'dev',
          '--ip',
          HOST,
          '--port',
          String(ports.issuer),
          '--inspector-port',
          String(inspectorPort),
          '--show-interactive-dev-session=false',
        ],
        ...['--var', `ISSUER:${issuer}`, '--var', `GATEWAY_UPSTREAM:http://${HOST}:${ports.proxy}`, '--var', `DEV_USER:${devUser}`],
      ],
      // Appended: a rotation's restart keeps the first start's lines.
      { cwd: ROOT, env, logFile: `${dir}/logs/issuer.log`, append: true },
    );
  writeFileSync(`${dir}/logs/issuer.log`, '', { mode: 0o600 });
  const worker = track(running, startIssuer());

  // The model provider and the egress hop, in this process, while the Worker starts.
  const providerLog = `${dir}/logs/model-provider.log`;
  writeFileSync(providerLog, '', { mode: 0o600 });
  /** Who waits for the provider to accept a completion with a key (a rotation's proof), by fingerprint. */
  const acceptedWaiters: { fp: string; resolve: (at: number) => void }[] = [];
  const model = await startModelProvider({
    host: HOST,
    port: ports.modelProvider,
    keys: [provider.key],
    log: (line) => {
      const at = Date.now();
      appendFileSync(providerLog, `${new Date(at).toISOString()} ${line}\n`);
      for (const w of [...acceptedWaiters]) {
        if (!line.startsWith(`POST /v1/chat/completions key ${w.fp}: accepted`)) continue;
        acceptedWaiters.splice(acceptedWaiters.indexOf(w), 1);
        w.resolve(at);
      }
    },
  });
  running.modelProvider = model;
  const hopLog = `${dir}/logs/egress-hop.log`;
  writeFileSync(hopLog, '', { mode: 0o600 });
  running.egressHop = await startEgressHop({
    host: HOST,
    port: ports.egressHop,
    issuer,
    // The provider's origin as a gateway without the hop would address it: the host CREDENTIALS binds.
    upstream: `http://${PROVIDER_EGRESS_HOST}:${ports.modelProvider}`,
    sandbox,
    log: (line) => appendFileSync(hopLog, `${new Date().toISOString()} ${line}\n`),
  });
  const providerBaseUrl = `${running.egressHop.url}/v1`;

  await waitHealthy('the issuer', `${issuer}${JWKS_PATH}`, worker, ISSUER_START_MS);

  const bootFile = `${dir}/bootstrap.json`;
  await bootstrap(issuer, adminToken, sandbox, bootFile);
  const agentDir = `${dir}/agent`;
  const credentialsFile = `${agentDir}/${CREDENTIALS_FILE}`;

  if (gateway === 'stand-in') {
    running.gateway = await startStandInGateway({
      host: HOST,
      port: ports.gateway,
      credentialsFile,
      tokenName: TOKEN_NAME,
      providerKeyName: provider.name,
      providerBaseUrl,
    });
  }

  // The container programs from their TypeScript sources, as `npm run agent` / `gateway-proxy` run them.
  const fromSource = (script: string) => ['--import', './scripts/register-ts.mjs', script];
  say(`starting the agent for sandbox "${sandbox}" ...`);
  // Every flag explicit: a flag wins over its environment twin, and a shell that exports
  // ISSUER_URL for credctl (perhaps a deployed issuer) must not redirect the local agent.
  const agentArgs = ['--bootstrap-key', bootFile, '--dir', agentDir, '--issuer', issuer, '--host', HOST, '--port', String(ports.agent)];
  let agentEnv: NodeJS.ProcessEnv = env;
  if (gateway === 'openclaw') {
    // The change hook, as the container image runs it: the bundle of container/openclaw-reload.ts
    // (a TypeScript source run through the loader would add ~0.5 s of start to every rotation).
    const hook = await bundleHook(`${dir}/bin`);
    agentArgs.push('--on-change', `${shellQuote(process.execPath)} ${shellQuote(hook)}`);
    agentEnv = { ...env, OPENCLAW_RELOAD_URL: `ws://${HOST}:${ports.gateway}` };
  }
  const agent = track(
    running,
    startChild('agent', process.execPath, [...fromSource('container/refresh.ts'), ...agentArgs], {
      cwd: ROOT,
      env: agentEnv,
      logFile: `${dir}/logs/agent.log`,
    }),
  );
  await waitHealthy('the agent', `http://${HOST}:${ports.agent}/healthz`, agent, COMPONENT_START_MS);

  const proxyArgs = ['--jwks', `${issuer}${JWKS_PATH}`, '--issuer', issuer, '--audience', `gateway:${sandbox}`];
  proxyArgs.push(
    '--upstream',
    `http://${HOST}:${ports.gateway}`,
    '--credentials',
    credentialsFile,
    '--upstream-token',
    TOKEN_NAME,
    '--host',
    HOST,
    '--port',
    String(ports.proxy),
  );
  const proxy = track(
    running,
    startChild('proxy', process.execPath, [...fromSource('container/gateway-proxy.ts'), ...proxyArgs], {
      cwd: ROOT,
      env,
      logFile: `${dir}/logs/proxy.log`,
    }),
  );
  const proxyUp = waitHealthy('the verifying proxy', `http://${HOST}:${ports.proxy}/healthz`, proxy, COMPONENT_START_MS);
  // Awaited below; this only keeps a failure before then from counting as unhandled.
  proxyUp.catch(() => undefined);

  if (gateway === 'openclaw') {
    // After the agent: OpenClaw resolves its SecretRefs from credentials.json at start, and fails
    // to start without the file. The proxy comes up meanwhile. The hook's local password file
    // too: the hook creates it on its first run, which may still be under way; whoever is first
    // writes it, the other reads it.
    const localAuthFile = `${agentDir}/${LOCAL_AUTH_FILE}`;
    ensureLocalPassword(localAuthFile);
    const home = writeOpenClawHome(
      dir,
      openClawConfig({
        port: ports.gateway,
        issuerOrigin: issuer,
        devUser,
        credentialsFile,
        localAuthFile,
        providerKeyName: provider.name,
        // The hop, not the provider: there is no transparent interception locally.
        providerBaseUrl,
        logFile: `${dir}/logs/openclaw.jsonl`,
      }),
    );
    writeCliProfile(dir, issuer.replace(/^http/, 'ws'));
    say(`starting OpenClaw ${OPENCLAW_VERSION} on http://${HOST}:${ports.gateway} (the real gateway; ready in 10 to 30 s) ...`);
    const startedAt = Date.now();
    const openclaw = track(running, startOpenClaw(ROOT, home, ports.gateway, `${dir}/logs/gateway.log`));
    // /readyz, not /healthz: live is not ready (agents, plugins and sidecars still starting).
    await Promise.all([
      proxyUp,
      waitHealthy('the real gateway (OpenClaw)', `http://${HOST}:${ports.gateway}/readyz`, openclaw, OPENCLAW_START_MS),
    ]);
    say(`OpenClaw is ready (${((Date.now() - startedAt) / 1000).toFixed(1)} s)`);
  } else {
    await proxyUp;
  }

  await chainCheck(issuer, gateway);

  // The rotation command's way in (scripts/local-stack/rotation.ts).
  let current = vars;
  let currentWorker = worker;
  const agentUrl = `http://${HOST}:${ports.agent}`;
  /** Resolves with the time the provider accepts a completion with the key of this fingerprint. */
  const providerAccepts = (fp: string) => new Promise<number>((resolve) => acceptedWaiters.push({ fp, resolve }));
  const rotate = async (): Promise<RotationReport> => {
    const events: RotationEvent[] = [];
    const note = (step: string, detail?: string, at = Date.now()) => {
      events.push({ step, at, detail });
      say(`rotate: ${step}${detail ? ` (${detail})` : ''}`);
    };
    const next = readDevVars(devVarsPath);
    const changed = [...new Set([...Object.keys(current), ...Object.keys(next)])].filter((k) => current[k] !== next[k]).sort();
    if (changed.length === 0) return { ok: true, changed, events, error: undefined };
    // Egress when everything that changed is the secret of an egress entry, before and after (so
    // not CREDENTIALS itself): the Worker reads it at each request, nothing in the sandbox changes.
    const before = egressSecrets(current);
    const after = egressSecrets(next);
    const flow: RotationFlow = changed.every((k) => before.has(k) && after.has(k)) ? 'egress' : 'push';
    note(
      '.dev.vars changed',
      `${changed.join(', ')}; ${flow === 'egress' ? 'egress flow: delivered at egress, read by the Worker at each request, so no agent refresh' : 'push flow: the agent refreshes'}`,
    );
    const fail = (error: string): RotationReport => ({ ok: false, changed, flow, events, error });
    const oldKey = current[PROVIDER_SECRET];
    const newKey = next[PROVIDER_SECRET];
    const keyRotates = oldKey !== newKey;
    if (keyRotates) {
      if (!newKey) return fail(`.dev.vars has no ${PROVIDER_SECRET} any more; nothing was restarted`);
      // Step 1: the new key works at the provider before anyone uses it; the old one still does.
      model.accept(newKey);
      note('model provider accepts the new key too', `key ${keyFingerprint(newKey)}`);
    }
    const agentBefore = flow === 'egress' ? await agentCounters(agentUrl) : undefined;
    const hooksBefore = flow === 'push' && gateway === 'openclaw' ? await hookRuns(agentUrl) : undefined;

    // Step 2: the Worker restarts with the new .dev.vars, as a deploy starts a new version.
    running.children = running.children.filter((c) => c !== currentWorker);
    await stopChildren([currentWorker], { issuer: 'SIGINT' });
    note('Worker stopped');
    currentWorker = track(running, startIssuer());
    await waitHealthy('the restarted issuer', `${issuer}${JWKS_PATH}`, currentWorker, ISSUER_RESTART_MS);
    note('Worker serves the new value');
    const servesAt = Date.now();
    current = next;

    if (flow === 'egress') {
      // Step 3: no Worker with the old key runs any more, and no sandbox ever held it: revoke at once.
      if (keyRotates && oldKey) {
        model.revoke(oldKey);
        note('model provider revoked the old key', `key ${keyFingerprint(oldKey)}`);
      }
      // Step 4: the proof, one completion through the whole chain, and its time at the provider.
      const fp = keyFingerprint(next[PROVIDER_SECRET] ?? '');
      const accepted = providerAccepts(fp);
      try {
        await chainCompletion(issuer, gateway);
      } catch (e) {
        return fail(`${(e as Error).message}; the Worker runs with the new value`);
      }
      // The provider logs before it answers: the completion's reply means the line is there.
      const at = await Promise.race([accepted, new Promise<undefined>((r) => setTimeout(r, 1_000))]);
      if (at === undefined) return fail(`the chat completion answered, but the model provider logged no call with key ${fp}`);
      note(
        `first completion with the ${keyRotates ? 'new ' : ''}key accepted`,
        `key ${fp}, ${at - servesAt} ms after the new Worker served`,
        at,
      );
      const agentAfter = await agentCounters(agentUrl);
      const untouched =
        agentAfter.version === agentBefore!.version &&
        agentAfter.refreshes === agentBefore!.refreshes &&
        agentAfter.hooks === agentBefore!.hooks;
      note(
        untouched ? 'agent untouched (no refresh, no change hook)' : 'agent refreshed meanwhile, on its own schedule',
        `credentials version ${agentBefore!.version ?? 'none'}${untouched ? '' : ` -> ${agentAfter.version ?? 'none'}`}`,
      );
      return { ok: true, changed, flow, events };
    }

    // Step 3: the push. The local Worker has no Sandbox binding to push through: nudge the agent.
    const refreshed = await nudgeAgent(agentUrl);
    note('agent refreshed', refreshed);

    // Step 4: with the real gateway, wait for the change hook's secrets.reload.
    if (hooksBefore) {
      const result = await waitHookResult(agentUrl, hooksBefore);
      if (result !== 'ok') {
        return fail(
          `the change hook ${result}: the gateway keeps the old values${keyRotates ? ' and the model provider keeps accepting the old key' : ''} (see ${STATE_DIR}/logs/agent.log)`,
        );
      }
      note('gateway re-resolved its secrets (change hook: secrets.reload)');
    }
    // Step 5: only now is the old key of no use to anyone.
    if (keyRotates && oldKey) {
      model.revoke(oldKey);
      note('model provider revoked the old key', `key ${keyFingerprint(oldKey)}`);
    }
    return { ok: true, changed, flow, events };
  };
  const socket = `${dir}/${CONTROL_SOCKET}`;
  running.control = await startControlServer(socket, rotate);
  return { sandbox, providerKey: keyFingerprint(provider.key) };
}

/** What shows whether the agent did anything: its credentials version, refreshes and hook runs. */
async function agentCounters(agentUrl: string): Promise<{ version?: string; refreshes: number; hooks: number }> {
  const health = (await (await fetch(`${agentUrl}/healthz`)).json()) as { credentials_version?: string | null };
  const text = await (await fetch(`${agentUrl}/metrics`)).text();
  const count = (metric: string) => Number(new RegExp(`^${metric}\\{result="ok"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  return {
    version: health.credentials_version ?? undefined,
    refreshes: count('credential_agent_refreshes_total'),
    hooks: count('credential_agent_hook_runs_total'),
  };
}

/** The agent's hook run counters (credential_agent_hook_runs_total). */
async function hookRuns(agentUrl: string): Promise<{ ok: number; error: number }> {
  const text = await (await fetch(`${agentUrl}/metrics`)).text();
  const count = (result: string) =>
    Number(new RegExp(`^credential_agent_hook_runs_total\\{result="${result}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  return { ok: count('ok'), error: count('error') };
}

/** Waits until the agent counts one more hook run: 'ok', or what went wrong. */
async function waitHookResult(agentUrl: string, before: { ok: number; error: number }): Promise<string> {
  const deadline = Date.now() + HOOK_WAIT_MS;
  while (Date.now() < deadline) {
    const now = await hookRuns(agentUrl);
    if (now.ok > before.ok) return 'ok';
    if (now.error > before.error) return 'failed';
    await new Promise((r) => setTimeout(r, HOOK_POLL_MS));
  }
  return `did not finish within ${HOOK_WAIT_MS / 1000} s`;
}

/** POST /refresh on the agent (what the Worker's push does in production); its answer, in short. */
async function nudgeAgent(agentUrl: string): Promise<string> {
  for (let i = 0; ; i++) {
    const res = await fetch(`${agentUrl}/refresh`, { method: 'POST' });
    const body = (await res.json().catch(() => ({}))) as { credentials_version?: string; error?: string };
    if (res.status === 429 && i < NUDGE_ATTEMPTS) {
      await new Promise((r) => setTimeout(r, NUDGE_RETRY_MS));
      continue;
    }
    if (!res.ok)
      throw new StackError(`the agent's POST /refresh answered HTTP ${res.status} ${body.error ?? ''}: see ${STATE_DIR}/logs/agent.log`);
    return `credentials version ${body.credentials_version ?? 'none'}`;
  }
}

/** The change hook, bundled as the container image has it (scripts/build-container.mjs's options). */
async function bundleHook(outdir: string): Promise<string> {
  await build({ entryPoints: [`${ROOT}container/openclaw-reload.ts`], outdir, ...NODE_BUNDLE, banner: REQUIRE_BANNER });
  return `${outdir}/openclaw-reload.mjs`;
}

/** One word for /bin/sh: the hook command is a shell line (--on-change). */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

async function stop(running: Running): Promise<void> {
  // All at once; SIGINT is how wrangler dev stops cleanly (it stops its workerd), SIGTERM for the rest.
  await new Promise<void>((resolve) => (running.control ? running.control.close(() => resolve()) : resolve()));
  rmSync(`${ROOT}${STATE_DIR}/${CONTROL_SOCKET}`, { force: true });
  const children = running.children;
  running.children = [];
  await stopChildren(children, { issuer: 'SIGINT' });
  await new Promise<void>((resolve) => (running.gateway ? running.gateway.close(() => resolve()).closeAllConnections() : resolve()));
  await running.egressHop?.close();
  await running.modelProvider?.close();
}

async function main(): Promise<number> {
  const say = (line: string) => console.log(line);
  let ports: LocalStackPorts;
  let gateway: GatewayKind;
  try {
    const flags = parseFlags(process.argv.slice(2));
    ports = localStackPorts(flags.basePort);
    gateway = flags.gateway;
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
    const up = await Promise.race([start(ports, gateway, running, say), stoppedBySignal]);
    if (typeof up === 'string') {
      say('\nstopping ...');
      await stopOnce();
      return 0;
    }
    const openclaw =
      gateway === 'openclaw'
        ? {
            version: OPENCLAW_VERSION,
            cli: `${GATEWAY_DIR}/bin/openclaw`,
            cliState: `${STATE_DIR}/${CLI_DIR}`,
            home: `${STATE_DIR}/${HOME_DIR}`,
          }
        : undefined;
    say(
      statusText({
        ports,
        sandbox: up.sandbox,
        stateDir: STATE_DIR,
        host: HOST,
        defaultBase: DEFAULT_BASE_PORT,
        issuerUrlEnv: process.env.ISSUER_URL || undefined,
        openclaw,
        providerKey: up.providerKey,
      }),
    );
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

  // Up: wait for Ctrl-C, or for a component to stop on its own (a Worker a rotation restarts
  // is taken out of the stack before it stops, and does not count).
  const died = new Promise<{ c: Child; how: string }>((resolve) => (running.onDeath = (c, how) => resolve({ c, how })));
  for (const c of running.children)
    if (c.process.exitCode !== null || c.process.signalCode !== null) void c.exited.then((how) => running.onDeath?.(c, how));
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
