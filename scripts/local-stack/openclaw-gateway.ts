/**
 * The real gateway in the local stack (`npm run dev -- --gateway openclaw`; docs/architecture.md, "OpenClaw as the gateway"): OpenClaw from
 * `.gateway/` (npm run gateway:install) in trusted-proxy mode behind the verifying proxy, on the
 * gateway port, with a throwaway home under .dev-stack/ written fresh on every run.
 *
 * openclaw.json holds no secret value: the model provider's key is a SecretRef into the agent's
 * credentials.json (a `file` secrets provider in `json` mode), so a rotated key reaches the running
 * gateway by `secrets.reload`, with no restart and nothing to rewrite here. Trusted-proxy mode has
 * no gateway token at all (OpenClaw refuses one next to it); the proxy still presents GATEWAY_TOKEN
 * upstream, which this gateway ignores. The agent's change hook (container/openclaw-reload.ts) calls
 * secrets.reload with a local password (`gateway.auth.password`, also a SecretRef, to a file the
 * hook creates next to credentials.json): OpenClaw's path for same-host callers that bypass the
 * proxy, which it refuses on anything that came through the proxy.
 *
 * Every key below was checked against the docs shipped in the package
 * (.gateway/lib/node_modules/openclaw/docs/gateway/trusted-proxy-auth.md, config-gateway.md,
 * secrets/secretref-contract.md, config-tools/custom-providers.md, openai-http-api.md) and by
 * starting 2026.9.6 with it: an unknown key or scope name fails its config validation at start.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MODEL_ID } from './model-provider.js';
import { gatewayPaths } from './openclaw-runtime.js';
import { type Child, startChild } from './processes.js';

/** The provider id in openclaw.json; the agent's model is `<id>/<model id>`. */
const PROVIDER_ID = 'standin';
/** The secrets provider that reads the agent's credentials.json. */
const SECRETS_PROVIDER = 'agentcreds';
/** The secrets provider that reads the change hook's local password file (openclaw-reload.ts). */
const LOCAL_AUTH_PROVIDER = 'localrpc';
/** Where the gateway's home lives inside the stack's state folder. */
export const HOME_DIR = 'openclaw-home';
/** The OpenClaw CLI's own state folder (OPENCLAW_STATE_DIR) for the printed command, same place. */
export const CLI_DIR = 'openclaw-cli';
/**
 * The local stack grants DEV_USER full operator scopes (every scope of
 * docs/gateway/operator-scopes.md), through `identityScopes`: session-only grants for the verified
 * proxy user, so no persistent device record ever holds admin.
 */
export const FULL_OPERATOR_SCOPES = [
  'operator.admin',
  'operator.read',
  'operator.write',
  'operator.approvals',
  'operator.pairing',
  'operator.questions',
  'operator.talk',
  'operator.talk.secrets',
];
/**
 * What an auto-approved browser device may hold: OpenClaw's documented default, written out so it
 * cannot widen with a release. Never operator.admin: that would let any proxied user's new device
 * become a persistent admin (OpenClaw's CRITICAL audit finding); DEV_USER's admin comes from
 * identityScopes for the session instead.
 */
const DEVICE_AUTO_APPROVE_SCOPES = ['operator.read', 'operator.write', 'operator.approvals', 'operator.questions'];
/** The verifying proxy's source address: it connects to the gateway over loopback. */
const PROXY_SOURCE = '127.0.0.1';
/** The header the proxy puts the verified `sub` in (container/lib/proxy/server.ts). */
const USER_HEADER = 'x-forwarded-user';

export interface OpenClawConfigInput {
  port: number;
  /** The Worker's origin, where browsers load the Control UI from (`http://127.0.0.1:8787`). */
  issuerOrigin: string;
  devUser: string;
  /** The agent's credentials.json (absolute): the secrets provider's file. */
  credentialsFile: string;
  /** The change hook's local password file (absolute; container/openclaw-reload.ts creates it). */
  localAuthFile: string;
  /** The credentials.json entry that carries the model provider's key (`PROVIDER_API_KEY`; with egress delivery, a sentinel). */
  providerKeyName: string;
  /**
   * Where the model calls go, `http://host:port/v1`: the local egress hop (egress-hop.ts), which
   * hands them to the Worker's egress handler on their way to the stand-in model provider.
   */
  providerBaseUrl: string;
  /** OpenClaw's own JSONL log, next to the stack's other logs (it defaults to a shared /tmp folder). */
  logFile: string;
}

/** openclaw.json for the local stack: trusted-proxy mode, SecretRefs only. */
export function openClawConfig(c: OpenClawConfigInput) {
  return {
    gateway: {
      // The gateway refuses to start unless mode is local (the other mode is a remote client).
      mode: 'local',
      port: c.port,
      // Reachable from this machine only; the proxy is its only intended client.
      bind: 'loopback',
      trustedProxies: [PROXY_SOURCE],
      auth: {
        mode: 'trusted-proxy',
        // For the change hook's secrets.reload on direct loopback only; never a value, a SecretRef.
        password: { source: 'file', provider: LOCAL_AUTH_PROVIDER, id: '/password' },
        identityScopes: { [c.devUser]: FULL_OPERATOR_SCOPES },
        trustedProxy: {
          userHeader: USER_HEADER,
          // Only DEV_USER exists locally; the proxy already admits only tokens the Worker minted.
          allowUsers: [c.devUser],
          // The proxy is on the same host: OpenClaw refuses a loopback proxy without this consent.
          allowLoopback: true,
          // The Control UI's browser device enrols as the proxied user, with no pairing step.
          deviceAutoApprove: { enabled: true, scopes: DEVICE_AUTO_APPROVE_SCOPES },
        },
      },
      // Browsers load the Control UI from the Worker; OpenClaw refuses other origins' WebSockets.
      controlUi: { allowedOrigins: [c.issuerOrigin] },
      http: { endpoints: { chatCompletions: { enabled: true } } },
    },
    secrets: {
      // OpenClaw refuses a secrets file that is not 0600; the agent writes credentials.json so.
      providers: {
        [SECRETS_PROVIDER]: { source: 'file', path: c.credentialsFile, mode: 'json' },
        [LOCAL_AUTH_PROVIDER]: { source: 'file', path: c.localAuthFile, mode: 'json' },
      },
    },
    models: {
      providers: {
        [PROVIDER_ID]: {
          baseUrl: c.providerBaseUrl,
          api: 'openai-completions',
          apiKey: { source: 'file', provider: SECRETS_PROVIDER, id: `/values/${c.providerKeyName}` },
          models: [
            {
              id: MODEL_ID,
              name: 'Stand-in model (fixed reply)',
              reasoning: false,
              input: ['text'],
              contextWindow: 128_000,
              maxTokens: 4_096,
            },
          ],
        },
      },
    },
    agents: { defaults: { model: { primary: `${PROVIDER_ID}/${MODEL_ID}` } } },
    logging: { file: c.logFile },
  };
}

/**
 * Writes a fresh throwaway home (the previous run's is removed: sessions, devices, pairing state)
 * with `.openclaw/openclaw.json`, owner-only. Returns the home.
 */
export function writeOpenClawHome(stateDir: string, config: ReturnType<typeof openClawConfig>): string {
  const home = join(stateDir, HOME_DIR);
  rmSync(home, { recursive: true, force: true });
  mkdirSync(join(home, '.openclaw'), { recursive: true, mode: 0o700 });
  mkdirSync(join(home, 'tmp'), { mode: 0o700 });
  writeFileSync(join(home, '.openclaw', 'openclaw.json'), `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  return home;
}

/**
 * Starts `.gateway/bin/openclaw gateway` with HOME set to the throwaway home, an environment of its
 * own (nothing of the shell's: an exported OPENCLAW_GATEWAY_TOKEN would make OpenClaw refuse
 * trusted-proxy mode, and no secret of the shell belongs in the gateway's environment), and
 * HOME=<home> as a second marker, so the stop sweep finds every helper it starts.
 */
export function startOpenClaw(root: string, home: string, port: number, logFile: string): Child {
  const env: NodeJS.ProcessEnv = {
    HOME: home,
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    TMPDIR: join(home, 'tmp'),
    LANG: process.env.LANG ?? 'C.UTF-8',
    NO_COLOR: '1',
    FORCE_COLOR: '0',
  };
  if (process.env.TZ) env.TZ = process.env.TZ;
  return startChild('gateway', gatewayPaths(root).openclaw, ['gateway', '--port', String(port)], {
    cwd: home,
    env,
    logFile,
    marks: [`HOME=${home}`],
  });
}

/**
 * The CLI profile the printed command uses: the Worker as the CLI's remote gateway, in trusted-proxy
 * mode, so the CLI opens the WebSocket with no token and the chain vouches for DEV_USER.
 *
 * Why a profile and not `--url`: OpenClaw 2026.9.6's `gateway call` refuses `--url` without
 * `--token` or `--password`, in the client, before it opens a socket ("gateway url override
 * requires explicit credentials"); only a configured target may go without. `--expect-url` then pins
 * the call to the Worker. Its own state folder keeps the CLI off the operator's ~/.openclaw.
 */
export function writeCliProfile(stateDir: string, gatewayWsUrl: string): string {
  const dir = join(stateDir, CLI_DIR);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const profile = { gateway: { mode: 'remote', remote: { url: gatewayWsUrl }, auth: { mode: 'trusted-proxy' } } };
  writeFileSync(join(dir, 'openclaw.json'), `${JSON.stringify(profile, null, 2)}\n`, { mode: 0o600 });
  return dir;
}
