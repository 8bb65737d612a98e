/**
 * The local stack's egress route (README, "Egress delivery", locally). There is no container
 * runtime here, so the local egress hop (scripts/local-stack/egress-hop.ts) plays the platform's
 * part: it hands each request the gateway sends to its model provider to this route, naming the
 * URL the request was for (`x-egress-url`) and the sandbox whose container sent it
 * (`x-egress-sandbox`), and this route runs the same egress handler the Sandbox outbound
 * interception runs in production, with that sandbox's container id.
 *
 * Those two headers decide who the request is, which no client may do: the route exists only on
 * a loopback issuer (the rule of DEV_USER), where every process is the operator's own. A
 * production issuer answers 404 here, as for any unknown path.
 */
import { Hono } from 'hono';
import { SANDBOX_ID } from '../admin-api.js';
import type { AppEnv } from '../app-env.js';
import { isLoopbackIssuer } from '../issuer/client-ip.js';
import { egressHosts } from '../issuer/credentials.js';
import { IssuerError } from '../issuer/errors.js';
import { handleEgress } from '../sandbox/egress.js';
import { egressDeps, sandboxContainerId } from '../sandbox/egress-deps.js';

export const LOCAL_EGRESS_PATH = '/.local/egress';

/** Locally `localhost` means the IPv4 loopback the stand-in provider listens on (workerd may try ::1 first). */
function localFetch(request: Request): Promise<Response> {
  const url = new URL(request.url);
  if (url.hostname === 'localhost') url.hostname = '127.0.0.1';
  return fetch(new Request(url, request));
}

export const localEgress = new Hono<AppEnv>().all('/', async (c) => {
  const { config } = c.var.services;
  if (!isLoopbackIssuer(config.issuer)) throw new IssuerError('not_found', 'no such route');
  const target = c.req.header('x-egress-url') ?? '';
  const sandbox = c.req.header('x-egress-sandbox') ?? '';
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    throw new IssuerError('invalid_request', 'x-egress-url must be the absolute URL the request was for');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new IssuerError('invalid_request', 'x-egress-url must be an http(s) URL');
  if (!SANDBOX_ID.test(sandbox)) throw new IssuerError('invalid_request', 'x-egress-sandbox must name a sandbox');
  // The platform intercepts bound hosts only: anything else never reaches the handler.
  if (!egressHosts(config.credentials).includes(url.hostname))
    throw new IssuerError('invalid_request', 'x-egress-url is not on a host an egress entry of CREDENTIALS is bound to');
  const headers = new Headers(c.req.raw.headers);
  for (const name of [...headers.keys()])
    if (name === 'host' || name.startsWith('x-egress-') || name.startsWith('cf-')) headers.delete(name);
  const body = c.req.method === 'GET' || c.req.method === 'HEAD' ? null : c.req.raw.body;
  const request = new Request(url, { method: c.req.method, headers, body, redirect: 'manual' });
  const deps = egressDeps(c.env, { containerIdOf: (id) => sandboxContainerId(c.env, id), fetch: localFetch });
  return handleEgress(request, sandboxContainerId(c.env, sandbox), deps);
});
