/**
 * The only module that imports @cloudflare/sandbox at run time: the Sandbox Durable Object class
 * and its ContainerProxy (re-exported by the Worker entry), the outbound handler that maps
 * `issuer.internal` to the token endpoint, and the adapter from the SDK to SandboxApi.
 */
import { getSandbox, Sandbox } from '@cloudflare/sandbox';
import { createApp } from '../app.js';
import type { Env } from '../config.js';
import type { SandboxApi } from './gateway.js';

export { ContainerProxy, Sandbox } from '@cloudflare/sandbox';

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

Sandbox.outboundByHost = {
  'issuer.internal': (request: Request, env: unknown, ctx: { containerId: string }) =>
    outboundApp.fetch(request, env as Env, { containerId: ctx.containerId, waitUntil: () => undefined, passThroughOnException: () => undefined } as unknown as ExecutionContext),
};

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
