/**
 * The only module that imports @cloudflare/sandbox at run time: the Sandbox Durable Object class
 * and its ContainerProxy (re-exported by the Worker entry), the outbound handlers (`issuer.internal`
 * to the token endpoint, and each egress host of CREDENTIALS to the egress handler), and the
 * adapter from the SDK to SandboxApi.
 *
 * How egress hosts are declared: `outboundByHost` is a static of the class, read when the
 * Sandbox Durable Object sets up interception, before any request. CREDENTIALS is a var, and a
 * var (or secret) changes only with a new deployment, which starts new isolates and evaluates
 * this module again; so the hosts are read here, at module scope, from the `env` that
 * `cloudflare:workers` exports. That keeps the SDK's per-host mode: only bound hosts are routed
 * through the Worker and, with `interceptHttps`, only their TLS is intercepted. (The runtime
 * setters, `setOutboundByHost`, would move every request of the container to intercept-all.)
 */

import { env as deploymentEnv } from 'cloudflare:workers';
import { getSandbox, Sandbox as SdkSandbox } from '@cloudflare/sandbox';
import { createApp } from '../app.js';
import { type Env, parseConfig } from '../config.js';
import { egressHosts } from '../issuer/credentials.js';
import { handleEgress } from './egress.js';
import { egressDeps, sandboxContainerId } from './egress-deps.js';
import type { SandboxApi } from './gateway.js';

export { ContainerProxy } from '@cloudflare/sandbox';

/**
 * The SDK's Sandbox with HTTPS interception on: provider APIs are HTTPS, and the egress handler
 * must see their headers. The container trusts the platform's CA (the SDK's image installs it).
 * Named `Sandbox`, as wrangler.toml's class_name and the SDK's handler registry expect.
 */
export class Sandbox extends SdkSandbox {
  override interceptHttps = true;
}

function sandboxNamespace(env: Env): DurableObjectNamespace {
  // Only reached when the binding exists: the outbound handler runs inside the Sandbox class.
  return env.Sandbox as unknown as DurableObjectNamespace;
}

/**
 * Token requests from a container, through the platform's outbound interception: only the token
 * endpoint, and only for the container's own sandbox (ctx.containerId is the Sandbox Durable
 * Object id, which code in the container cannot forge).
 */
const outboundApp = createApp({ outbound: { containerIdOf: (env, id) => sandboxNamespace(env).idFromName(id).toString() } });

type OutboundHandler = (request: Request, env: unknown, ctx: { containerId: string }) => Promise<Response> | Response;

/** The token endpoint, for the container's own sandbox only. */
const tokenHandler: OutboundHandler = (request, env, ctx) =>
  outboundApp.fetch(
    request,
    env as Env,
    { containerId: ctx.containerId, waitUntil: () => undefined, passThroughOnException: () => undefined } as unknown as ExecutionContext,
  );

/** A bound host's request: the egress handler with the platform's container id and the global fetch. */
const egressHandler: OutboundHandler = (request, env, ctx) =>
  handleEgress(
    request,
    ctx.containerId,
    egressDeps(env as Env, { containerIdOf: (id) => sandboxContainerId(env as Env, id), fetch: (r) => fetch(r) }),
  );

/**
 * The outbound handlers for a deployment's env: `issuer.internal`, and each host an egress entry
 * of CREDENTIALS is bound to. A CREDENTIALS that does not parse binds no host; the Worker's
 * requests report that configuration error.
 */
export function outboundRoutes(env: Partial<Record<string, unknown>>): Record<string, OutboundHandler> {
  const routes: Record<string, OutboundHandler> = { 'issuer.internal': tokenHandler };
  let hosts: string[] = [];
  try {
    hosts = egressHosts(parseConfig(env).credentials);
  } catch {
    hosts = [];
  }
  for (const host of hosts) if (host !== 'issuer.internal') routes[host] = egressHandler;
  return routes;
}

Sandbox.outboundByHost = outboundRoutes(deploymentEnv as unknown as Record<string, unknown>);

/** The SDK's sandbox for an id, seen through the methods src/sandbox/gateway.ts uses; none without the binding. */
export function sandboxApi(env: Env, sandboxId: string): SandboxApi | undefined {
  if (!env.Sandbox) return undefined;
  const sb = getSandbox(sandboxNamespace(env) as never, sandboxId);
  return {
    exec: async (command) => {
      const r = await sb.exec(command);
      return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
    },
    writeFile: (path, content) => sb.writeFile(path, content),
    startProcess: async (command, options) => ({ id: (await sb.startProcess(command, { env: options.env })).id }),
    listProcesses: async () => (await sb.listProcesses()).map((p) => ({ id: p.id, command: p.command, status: String(p.status) })),
    killProcess: (id) => sb.killProcess(id),
    containerFetch: (request, port) => sb.containerFetch(request, port),
    wsConnect: (request, port) => sb.wsConnect(request, port),
  };
}
