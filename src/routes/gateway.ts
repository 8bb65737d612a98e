/**
 * Everything that is not an issuer route goes to the gateway (docs/architecture.md, "Gateway traffic and verification"), with
 * `Authorization: Bearer <access token>` minted for the verified user: the email of a Cloudflare
 * Access JWT, or DEV_USER on a loopback issuer. HTTP and WebSocket alike. No verified user: 401,
 * never forwarded. The incoming Authorization header, the Access JWT header and cookie, and a
 * legacy `?token=` parameter are not forwarded; no token is ever put in a URL. The token carries
 * the client's address (`client_ip`, gatewayClientIp), so the verifying proxy can tell the gateway
 * where the user is without believing any header a client wrote.
 */
import { Hono } from 'hono';
import { type BootstrapFile, CONTAINER_PORTS } from '../admin-api.js';
import { verifyAccess } from '../admin-auth.js';
import type { AppEnv } from '../app-env.js';
import type { Config } from '../config.js';
import { CLIENT_IP_HEADER, clientIpOf, isLoopbackIssuer } from '../issuer/client-ip.js';
import { IssuerError } from '../issuer/errors.js';
import { log } from '../log.js';
import { ensureGateway, type SandboxApi } from '../sandbox/gateway.js';
import { issueBootstrapFile } from './sandbox-ops.js';

/** Paths the issuer owns: never forwarded, even when no issuer route matched. */
const ISSUER_PREFIXES = ['/.well-known/', '/oauth/', '/api/admin'];

/** Who is asking: the Access user when Access is configured, else DEV_USER, else nobody (401). */
async function gatewayUser(req: Request, config: Config): Promise<string> {
  if (config.admin.access) return verifyAccess(req, config.admin.access);
  if (config.gateway.devUser) return config.gateway.devUser;
  throw new IssuerError('unauthorized', 'the gateway needs a verified user (Cloudflare Access)');
}

/**
 * The user's client address for the token's `client_ip` (docs/architecture.md, "Client address"): CF-Connecting-IP, which
 * Cloudflare's edge sets and a client cannot forge in production; on a loopback issuer a loopback,
 * missing or invalid one is LOCAL_CLIENT_IP (192.0.2.1). On a public issuer a request without a
 * usable address gets a token without `client_ip` (the gateway then refuses it as unattributable),
 * and the log says why, never with the value.
 */
export function gatewayClientIp(req: Request, config: Config): string | undefined {
  const local = isLoopbackIssuer(config.issuer);
  const { ip, gap } = clientIpOf(req.headers, local);
  if (gap && !local) log('warn', 'client_ip_unavailable', { reason: gap, header: CLIENT_IP_HEADER });
  return ip;
}

/**
 * A path the gateway may be asked for. `new URL('//host/x', base)` and its cousins (`///host`,
 * `/\\host`, `//user@host`) are scheme-relative references: they replace the base's host, so
 * the user's fresh access token would go to a host the path names. Such paths are refused; a
 * gateway has no use for them.
 */
function gatewayPath(req: Request): string {
  const afterOrigin = req.url.slice(req.url.indexOf('/', req.url.indexOf('//') + 2));
  const raw = afterOrigin.split(/[?#]/, 1)[0]!;
  const { pathname } = new URL(req.url);
  if (pathname.startsWith('//') || raw.startsWith('//') || raw.includes('\\')) {
    throw new IssuerError('invalid_request', 'the path must not begin with // or contain a backslash');
  }
  return pathname;
}

/** The Access JWT cookie; never forwarded, whatever its case or framing. */
const ACCESS_COOKIE = 'cf_authorization';

/**
 * The Cookie header without the Access JWT. Two Cookie lines reach us joined by `, ` (Fetch's
 * header combining), which a split on `;` alone reads as one cookie whose value holds the next:
 * RFC 6265 §4.1.1 allows neither `,` nor `;` in a cookie name or value, so both separate pairs.
 * hono/cookie's parser splits on `;` only, so it does not fit here. Pairs without a name are dropped.
 */
function forwardedCookies(header: string | null): string | undefined {
  const kept = (header ?? '')
    .split(/[;,]/)
    .map((c) => c.trim())
    .filter((c) => {
      const eq = c.indexOf('=');
      const name = (eq < 0 ? c : c.slice(0, eq)).trim();
      return eq > 0 && name !== '' && name.toLowerCase() !== ACCESS_COOKIE;
    });
  return kept.length ? kept.join('; ') : undefined;
}

/**
 * The request to send to the gateway: same method, path, body and headers, minus every incoming
 * credential, plus our bearer token. The URL is the base's origin, always: only the path and
 * query come from the request.
 */
export function gatewayRequest(req: Request, base: string, token: string): Request {
  const incoming = new URL(req.url);
  const url = new URL(new URL(base).origin);
  url.pathname = gatewayPath(req);
  for (const [k, v] of incoming.searchParams) if (k !== 'token') url.searchParams.append(k, v);
  const headers = new Headers(req.headers);
  headers.delete('Authorization');
  headers.delete('Cf-Access-Jwt-Assertion');
  // The upstream's own host, never the one the client named.
  headers.delete('Host');
  const cookies = forwardedCookies(headers.get('Cookie'));
  if (cookies) headers.set('Cookie', cookies);
  else headers.delete('Cookie');
  headers.set('Authorization', `Bearer ${token}`);
  return new Request(url, { method: req.method, headers, body: req.body, redirect: 'manual' });
}

/**
 * After the gateway is seen running, an isolate does not ask the sandbox again for this long:
 * listing processes on every request would add a container round trip to each.
 */
const GATEWAY_CHECK_INTERVAL_MS = 30_000;
const checkedUntil = new WeakMap<object, number>();

async function ensureRunning(env: object, sb: SandboxApi, config: Config, bootstrap: () => Promise<BootstrapFile>): Promise<void> {
  if ((checkedUntil.get(env) ?? 0) > Date.now()) return;
  await ensureGateway(sb, config, bootstrap);
  checkedUntil.set(env, Date.now() + GATEWAY_CHECK_INTERVAL_MS);
}

export const gateway = new Hono<AppEnv>().all('*', async (c) => {
  // Before anything else: a path that would leave the gateway's origin is refused, not minted for.
  const path = gatewayPath(c.req.raw);
  if (ISSUER_PREFIXES.some((p) => path.startsWith(p))) throw new IssuerError('not_found', 'no such route');
  const services = c.var.services;
  const { config } = services;
  const user = await gatewayUser(c.req.raw, config);
  const clientIp = gatewayClientIp(c.req.raw, config);
  const signer = await services.signingKey.get();
  const token = await services.userTokens.get(user, clientIp, signer.kid);
  const upstream = config.gateway.upstream;
  const sandbox = services.sandboxApi?.(config.gateway.sandboxId);
  if (!upstream && !sandbox)
    throw new IssuerError('gateway_unavailable', 'no gateway target: set GATEWAY_UPSTREAM or run the gateway in the sandbox');
  try {
    if (upstream) {
      // WebSocket upgrades pass through fetch: the runtime answers 101 with the upstream socket.
      return await fetch(gatewayRequest(c.req.raw, upstream, token));
    }
    await ensureRunning(c.env, sandbox!, config, () => issueBootstrapFile(services, config.gateway.sandboxId, 'worker'));
    // Into the container, to the verifying proxy; it forwards to the gateway on loopback.
    const req = gatewayRequest(c.req.raw, `http://localhost:${CONTAINER_PORTS.proxy}`, token);
    const upgrade = (c.req.header('Upgrade') ?? '').toLowerCase() === 'websocket';
    return await (upgrade ? sandbox!.wsConnect(req, CONTAINER_PORTS.proxy) : sandbox!.containerFetch(req, CONTAINER_PORTS.proxy));
  } catch (e) {
    if (e instanceof IssuerError) throw e;
    throw new IssuerError('bad_gateway', 'the gateway did not answer');
  }
});
