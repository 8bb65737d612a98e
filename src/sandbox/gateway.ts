/**
 * Starting the gateway in the sandbox (docs/architecture.md, "Bootstrap and start"): a fresh bootstrap key written into the
 * container as a file (mode 0600, atomically), then `start.sh` with an environment that holds no
 * secret, only URLs, ids, paths and ports. Restart kills it and starts again with a new key, which
 * supersedes the old one at once. Push asks the agent to refresh now.
 *
 * Written against `SandboxApi`, the few methods of the Cloudflare Sandbox SDK this code calls,
 * so it is tested with a typed fake; the SDK object satisfies it structurally.
 */

import { type BootstrapFile, CONTAINER_PORTS, JWKS_PATH } from '../admin-api.js';
import type { Config } from '../config.js';
import { IssuerError } from '../issuer/errors.js';

/** The methods of `@cloudflare/sandbox`'s Sandbox that this module uses. */
export interface SandboxApi {
  exec(command: string): Promise<{ exitCode: number; stdout?: string; stderr?: string }>;
  writeFile(path: string, content: string): Promise<unknown>;
  startProcess(command: string, options: { env: Record<string, string> }): Promise<{ id: string }>;
  listProcesses(): Promise<{ id: string; command: string; status: string }[]>;
  killProcess(id: string): Promise<unknown>;
  containerFetch(request: Request, port: number): Promise<Response>;
  wsConnect(request: Request, port: number): Promise<Response>;
}

/** Where things live in the container image (Dockerfile, container/start.sh). */
export const CONTAINER = {
  dir: '/run/credential-agent',
  bootstrapFile: '/run/credential-agent/bootstrap.json',
  credentialsDir: '/run/credential-agent/out',
  startScript: '/usr/local/bin/start.sh',
  /** Reached through the Sandbox outbound handler, never the public internet. */
  issuerUrl: 'http://issuer.internal',
} as const;

/** The environment of start.sh: ids, URLs, paths and ports; never a secret. */
export function gatewayProcessEnv(config: Config): Record<string, string> {
  return {
    SANDBOX_ID: config.gateway.sandboxId,
    ISSUER_URL: CONTAINER.issuerUrl,
    BOOTSTRAP_KEY_FILE: CONTAINER.bootstrapFile,
    CREDENTIALS_DIR: CONTAINER.credentialsDir,
    CREDENTIALS_FILE: `${CONTAINER.credentialsDir}/credentials.json`,
    AGENT_PORT: String(CONTAINER_PORTS.agent),
    // The agent (push) and the proxy (gateway traffic) are reached through containerFetch from
    // outside the container's loopback; the gateway itself listens on loopback only.
    AGENT_HOST: '0.0.0.0',
    PROXY_PORT: String(CONTAINER_PORTS.proxy),
    PROXY_HOST: '0.0.0.0',
    GATEWAY_PORT: String(CONTAINER_PORTS.gateway),
    JWKS_URL: `${config.issuer}${JWKS_PATH}`,
    EXPECTED_ISSUER: config.issuer,
    EXPECTED_AUDIENCE: `gateway:${config.gateway.sandboxId}`,
    UPSTREAM_URL: `http://127.0.0.1:${CONTAINER_PORTS.gateway}`,
  };
}

async function run(sb: SandboxApi, command: string, what: string): Promise<void> {
  const r = await sb.exec(command);
  // The command's output is not echoed: it names paths only, but stays out of errors regardless.
  if (r.exitCode !== 0) throw new IssuerError('bad_gateway', `the sandbox could not ${what} (exit ${r.exitCode})`);
}

/**
 * Writes the bootstrap file atomically with mode 0600: `writeFile` of a string is not atomic and
 * has no mode option, so a temp file in the same directory, chmod, then rename.
 */
async function writeBootstrapFile(sb: SandboxApi, file: BootstrapFile): Promise<void> {
  const tmp = `${CONTAINER.bootstrapFile}.tmp-${crypto.randomUUID()}`;
  await run(sb, `mkdir -p -m 700 ${CONTAINER.dir} && chmod 700 ${CONTAINER.dir}`, 'create its credentials directory');
  await run(sb, `umask 077 && : > ${tmp}`, 'create the bootstrap file');
  await sb.writeFile(tmp, JSON.stringify(file));
  await run(sb, `chmod 600 ${tmp} && mv -f ${tmp} ${CONTAINER.bootstrapFile}`, 'install the bootstrap file');
}

function isGateway(p: { command: string; status: string }): boolean {
  return p.command.includes(CONTAINER.startScript) && (p.status === 'running' || p.status === 'starting');
}

/** Starts the gateway unless it runs: a fresh bootstrap key, the file, then start.sh. */
export async function ensureGateway(
  sb: SandboxApi,
  config: Config,
  bootstrap: () => Promise<BootstrapFile>,
): Promise<{ started: boolean }> {
  if ((await sb.listProcesses()).some(isGateway)) return { started: false };
  await writeBootstrapFile(sb, await bootstrap());
  await sb.startProcess(CONTAINER.startScript, { env: gatewayProcessEnv(config) });
  return { started: true };
}

/**
 * Runs `op` against the sandbox. The SDK throws plain errors when the container cannot be reached
 * (not running, failed to start, containers off): that is a gateway problem to report (502), not
 * an internal error. The issuer's own refusals pass through.
 */
async function inSandbox<T>(what: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (e) {
    if (e instanceof IssuerError) throw e;
    throw new IssuerError('bad_gateway', `the sandbox did not answer ${what} (is its container running?)`);
  }
}

/** Stops the gateway and starts it with a new bootstrap key; the old key stops working at once. */
export async function restartGateway(
  sb: SandboxApi,
  config: Config,
  bootstrap: () => Promise<BootstrapFile>,
): Promise<{ started: boolean }> {
  return inSandbox('a restart', async () => {
    for (const p of await sb.listProcesses()) if (isGateway(p)) await sb.killProcess(p.id);
    return ensureGateway(sb, config, bootstrap);
  });
}

/** Asks the agent in the sandbox to refresh now (its POST /refresh, through the container). */
export async function pushRefresh(sb: SandboxApi): Promise<void> {
  const res = await inSandbox('a refresh', () =>
    sb.containerFetch(new Request(`http://localhost:${CONTAINER_PORTS.agent}/refresh`, { method: 'POST' }), CONTAINER_PORTS.agent),
  );
  // 429: a refresh ran within the last second, which is what a push wants anyway.
  if (!res.ok && res.status !== 429) throw new IssuerError('bad_gateway', `the agent answered ${res.status} to a refresh`);
}
