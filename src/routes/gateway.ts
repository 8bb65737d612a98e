/**
 * Everything that is not an issuer route goes to the gateway (DESIGN §3 "A user request"), with
 * `Authorization: Bearer <access token>` minted for the verified user: the email of a Cloudflare
 * Access JWT, or DEV_USER on a loopback issuer. HTTP and WebSocket alike. No verified user: 401,
 * never forwarded. The incoming Authorization header, the Access JWT header and cookie, and a
 * legacy `?token=` parameter are not forwarded; no token is ever put in a URL.
 */
import { Hono } from 'hono';
import { verifyAccess } from '../admin-auth.js';
import type { AppEnv } from '../app.js';
import type { Config } from '../config.js';
import { IssuerError } from '../issuer/errors.js';
import type { BootstrapFile } from '../admin-api.js';
import { ensureGateway, PORTS, type SandboxApi } from '../sandbox/gateway.js';
import { issueBootstrapFile } from './sandbox-ops.js';

/** Paths the issuer owns: never forwarded, even when no issuer route matched. */
const ISSUER_PREFIXES = ['/.well-known/', '/oauth/', '/api/admin'];

/** Who is asking: the Access user when Access is configured, else DEV_USER, else nobody (401). */
export async function gatewayUser(req: Request, config: Config): Promise<string> {
  if (config.admin.access) return verifyAccess(req, config.admin.access);
  if (config.gateway.devUser) return config.gateway.devUser;
  throw new IssuerError('unauthorized', 'the gateway needs a verified user (Cloudflare Access)');
}

/**
 * The request to send to the gateway: same method, path, body and headers, minus every incoming
 * credential, plus our bearer token.
 */
export function gatewayRequest(req: Request, base: string, token: string): Request {
  const incoming = new URL(req.url);
  const url = new URL(incoming.pathname, base);
  for (const [k, v] of incoming.searchParams) if (k !== 'token') url.searchParams.append(k, v);
  const headers = new Headers(req.headers);
  headers.delete('Authorization');
  headers.delete('Cf-Access-Jwt-Assertion');
  const cookies = (headers.get('Cookie') ?? '')
    .split(';')
    .map((c) => c.trim())
    .filter((c) => c !== '' && !c.startsWith('CF_Authorization='));
  if (cookies.length) headers.set('Cookie', cookies.join('; '));
  else headers.delete('Cookie');
  headers.set('Authorization', `Bearer ${token}`);
  return new Request(url, { method: req.method, headers, body: req.body, redirect: 'manual' });
}

/**
 * After the gateway is seen running, an isolate does not ask the sandbox again for this long:
 * listing processes on every request would add a container round trip to each.
 */
export const GATEWAY_CHECK_INTERVAL_MS = 30_000;
const checkedUntil = new WeakMap<object, number>();

async function ensureRunning(env: object, sb: SandboxApi, config: Config, bootstrap: () => Promise<BootstrapFile>): Promise<void> {
  if ((checkedUntil.get(env) ?? 0) > Date.now()) return;
  await ensureGateway(sb, config, bootstrap);
  checkedUntil.set(env, Date.now() + GATEWAY_CHECK_INTERVAL_MS);
}

export const gateway = new Hono<AppEnv>().all('*', async (c) => {
  const path = new URL(c.req.url).pathname;
  if (ISSUER_PREFIXES.some((p) => path.startsWith(p))) throw new IssuerError('not_found', 'no such route');
  const { config } = c.var;
  const user = await gatewayUser(c.req.raw, config);
  const signer = await c.var.signingKey.get();
  const token = await c.var.userTokens.get(user, signer.kid);
  const upstream = config.gateway.upstream;
  const sandbox = c.var.sandboxApi?.(config.gateway.sandboxId);
  if (!upstream && !sandbox) throw new IssuerError('gateway_unavailable', 'no gateway target: set GATEWAY_UPSTREAM or run the gateway in the sandbox');
  try {
    if (upstream) {
      // WebSocket upgrades pass through fetch: the runtime answers 101 with the upstream socket.
      return await fetch(gatewayRequest(c.req.raw, upstream, token));
    }
    await ensureRunning(c.env, sandbox!, config, () => issueBootstrapFile(c.var, config.gateway.sandboxId, 'worker'));
    // Into the container, to the verifying proxy; it forwards to the gateway on loopback.
    const req = gatewayRequest(c.req.raw, `http://localhost:${PORTS.proxy}`, token);
    const upgrade = (c.req.header('Upgrade') ?? '').toLowerCase() === 'websocket';
    return await (upgrade ? sandbox!.wsConnect(req, PORTS.proxy) : sandbox!.containerFetch(req, PORTS.proxy));
  } catch (e) {
    if (e instanceof IssuerError) throw e;
    throw new IssuerError('bad_gateway', 'the gateway did not answer');
  }
});
