/**
 * The local stack's ports (DESIGN §7): issuer 8787, agent 8788, verifying proxy 8789, stand-in
 * gateway 8790; `--base-port N` moves all four to N..N+3. Each is checked before anything starts,
 * so a port in use is one line naming it, not a half-started stack.
 */
import { createServer } from 'node:net';
import { StackError } from './errors.js';

export const DEFAULT_BASE_PORT = 8787;
export const HOST = '127.0.0.1';

export interface StackPorts {
  issuer: number;
  agent: number;
  proxy: number;
  gateway: number;
}

export function portsFrom(base: number): StackPorts {
  return { issuer: base, agent: base + 1, proxy: base + 2, gateway: base + 3 };
}

/** Whether HOST:port can be bound now (EADDRINUSE also covers a listener on 0.0.0.0 or ::). */
export function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: HOST, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

export async function assertFree(ports: StackPorts): Promise<void> {
  for (const [name, port] of Object.entries(ports)) {
    if (!(await isFree(port))) {
      throw new StackError(
        `port ${port} (${name}) is already in use on ${HOST}: stop what holds it (\`lsof -i :${port}\` shows it), ` +
          `or move the stack with \`npm run dev -- --base-port <N>\``,
      );
    }
  }
}
