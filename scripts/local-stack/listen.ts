/**
 * Starts a local-stack server listening: resolves once it listens, rejects with the bind error
 * (a port in use, say), and leaves no stray error listener behind either way.
 */
import type { Server } from 'node:http';

export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
