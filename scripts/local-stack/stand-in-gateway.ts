/**
 * The stand-in gateway of the local stack (DESIGN §7): what OpenClaw's gateway does with auth, and
 * nothing else. It accepts a request only with `Authorization: Bearer <GATEWAY_TOKEN>` equal to
 * the value in the agent's credentials.json as it is now (read per request, so a rotated token is
 * honoured at once and the old one refused), and answers with what it saw: the user the verifying
 * proxy vouched for, the path, the credentials version. It never echoes a token.
 */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface StandInOptions {
  host: string;
  port: number;
  credentialsFile: string;
  /** The credential presented upstream (the proxy's --upstream-token). */
  tokenName: string;
}

function currentCredential(file: string, name: string): { value?: string; version?: string } {
  try {
    const doc = JSON.parse(readFileSync(file, 'utf8')) as { version?: string; values?: Record<string, string> };
    return { value: doc.values?.[name], version: doc.version };
  } catch {
    return {};
  }
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function reply(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(`${JSON.stringify(body)}\n`);
}

export function handle(opts: StandInOptions, req: IncomingMessage, res: ServerResponse): void {
  const path = new URL(req.url ?? '/', 'http://stand-in').pathname;
  if (path === '/healthz') return reply(res, 200, { status: 'ok' });
  const cred = currentCredential(opts.credentialsFile, opts.tokenName);
  const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
  if (!cred.value) return reply(res, 503, { error: 'no_gateway_token', detail: `the agent has not written ${opts.tokenName} yet` });
  if (!m || !sameSecret(m[1]!, cred.value)) return reply(res, 401, { error: 'unauthorized', detail: `not the current ${opts.tokenName}` });
  req.resume();
  reply(res, 200, {
    gateway: 'stand-in',
    user: req.headers['x-forwarded-user'] ?? null,
    method: req.method,
    path,
    gateway_token: 'accepted',
    credentials_version: cred.version ?? null,
  });
}

export function startStandInGateway(opts: StandInOptions): Promise<Server> {
  const server = createServer((req, res) => handle(opts, req, res));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve(server));
  });
}
