/**
 * The stand-in gateway of the local stack (docs/architecture.md, "Local stack"): what OpenClaw's gateway does with auth, and
 * a model call, and nothing else. It accepts a request only with `Authorization: Bearer
 * <GATEWAY_TOKEN>` equal to the value in the agent's credentials.json as it is now (read per
 * request, so a rotated token is honoured at once and the old one refused). Then:
 *
 *   POST /v1/chat/completions  goes to the model provider as a gateway's model call does: the body
 *                              as sent, to `<providerBaseUrl>/chat/completions` (the local egress
 *                              hop), with `Authorization: Bearer <providerKeyName's value>` from
 *                              credentials.json, read per request. With egress delivery that value
 *                              is a sentinel, and the Worker's egress handler puts the real key in;
 *                              the provider's status and body come back as they are.
 *   anything else              answers with what it saw: the user the verifying proxy vouched for,
 *                              the path, the credentials version.
 *
 * It never echoes a token, a sentinel or a key.
 */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { CredentialsFile } from '../../src/admin-api.js';
import { listen } from './listen.js';

export interface StandInOptions {
  host: string;
  port: number;
  credentialsFile: string;
  /** The credential presented upstream (the proxy's --upstream-token). */
  tokenName: string;
  /** The credentials.json entry that carries the model provider's key (`PROVIDER_API_KEY`). */
  providerKeyName?: string;
  /** Where model calls go: the local egress hop's `http://host:port/v1`. */
  providerBaseUrl?: string;
}

/** The agent's credentials.json, or nothing while it is missing or half-read. */
function readCredentials(file: string): Partial<CredentialsFile> {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Partial<CredentialsFile>;
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

/** A model call: the body streamed to the provider (through the hop) with the provider key of credentials.json. */
function modelCall(opts: StandInOptions, key: string, req: IncomingMessage, res: ServerResponse): void {
  const headers: OutgoingHttpHeaders = {
    'content-type': req.headers['content-type'] ?? 'application/json',
    accept: req.headers.accept ?? 'application/json',
    authorization: `Bearer ${key}`,
  };
  if (req.headers['content-length'] !== undefined) headers['content-length'] = req.headers['content-length'];
  const out = httpRequest(`${opts.providerBaseUrl!.replace(/\/+$/, '')}/chat/completions`, { method: 'POST', headers }, (answer) => {
    const back: OutgoingHttpHeaders = { 'cache-control': 'no-store' };
    if (answer.headers['content-type']) back['content-type'] = answer.headers['content-type'];
    res.writeHead(answer.statusCode ?? 502, back);
    answer.pipe(res);
    answer.on('error', () => res.destroy());
  });
  out.on('error', () => {
    if (res.headersSent) return void res.destroy();
    reply(res, 502, { error: 'provider_unreachable', detail: `no answer from the model provider at ${opts.providerBaseUrl}` });
  });
  res.on('close', () => {
    if (!res.writableFinished) out.destroy();
  });
  req.pipe(out);
}

function handle(opts: StandInOptions, req: IncomingMessage, res: ServerResponse) {
  const path = new URL(req.url ?? '/', 'http://stand-in').pathname;
  if (path === '/healthz') return reply(res, 200, { status: 'ok' });
  const doc = readCredentials(opts.credentialsFile);
  const token = doc.values?.[opts.tokenName];
  const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
  if (!token) return reply(res, 503, { error: 'no_gateway_token', detail: `the agent has not written ${opts.tokenName} yet` });
  if (!m || !sameSecret(m[1]!, token)) return reply(res, 401, { error: 'unauthorized', detail: `not the current ${opts.tokenName}` });

  if (path === '/v1/chat/completions' && opts.providerKeyName && opts.providerBaseUrl) {
    if (req.method !== 'POST') {
      req.resume();
      return reply(res, 405, { error: 'method_not_allowed', detail: 'POST only' });
    }
    const key = doc.values?.[opts.providerKeyName];
    if (!key) {
      req.resume();
      return reply(res, 503, { error: 'no_provider_key', detail: `the agent has not written ${opts.providerKeyName} yet` });
    }
    return modelCall(opts, key, req, res);
  }

  req.resume();
  reply(res, 200, {
    gateway: 'stand-in',
    user: req.headers['x-forwarded-user'] ?? null,
    method: req.method,
    path,
    gateway_token: 'accepted',
    credentials_version: doc.version ?? null,
  });
}

export async function startStandInGateway(opts: StandInOptions): Promise<Server> {
  const server = createServer((req, res) => handle(opts, req, res));
  await listen(server, opts.port, opts.host);
  return server;
}
