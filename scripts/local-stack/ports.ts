/**
 * The local stack's ports (docs/architecture.md, "Local stack") are the contract's
 * (src/admin-api.ts localStackPorts): issuer 8787, agent 8788, verifying proxy 8789, gateway 8790
 * (the stand-in, or the real OpenClaw), stand-in model provider 8791 and the local egress hop 8792
 * (both with either gateway: the gateway's model traffic goes hop -> the Worker's egress handler ->
 * provider); `--base-port N` moves them all to N..N+5. Here each port is checked before anything
 * starts, so a port in use is one line naming it, not a half-started stack.
 */
import { createServer } from 'node:net';
import { LOCAL_HOST as HOST, type LocalStackPorts } from '../../src/admin-api.js';
import { StackError } from './errors.js';

export type PortName = keyof LocalStackPorts;

/** Whether HOST:port can be bound now (EADDRINUSE also covers a listener on 0.0.0.0 or ::). */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: HOST, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/**
 * A port the system has free now (bound to 0, then released). For wrangler dev's devtools
 * inspector: left alone it takes 9229 when that looks free, and two wrangler dev started at
 * once (two stacks, or tests side by side) both take it and the second dies with EADDRINUSE.
 */
export function ephemeralPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen({ port: 0, host: HOST }, () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** How a port is named in the port-in-use message. */
const PORT_LABEL: Record<PortName, string> = {
  issuer: 'issuer',
  agent: 'agent',
  proxy: 'proxy',
  gateway: 'gateway',
  modelProvider: 'model provider',
  egressHop: 'egress hop',
};

/** Checks the ports named in `used` (every port unless given), in the stack's order. */
export async function assertFree(ports: LocalStackPorts, used: PortName[] = Object.keys(ports) as PortName[]): Promise<void> {
  for (const name of used) {
    const port = ports[name];
    if (!(await isFree(port))) {
      throw new StackError(
        `port ${port} (${PORT_LABEL[name]}) is already in use on ${HOST}: stop what holds it (\`lsof -i :${port}\` shows it), ` +
          `or move the stack with \`npm run dev -- --base-port <N>\``,
      );
    }
  }
}
