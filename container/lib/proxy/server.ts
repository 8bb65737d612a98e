/**
 * The verifying reverse proxy (DESIGN §3 "A user request", §4): every request and every WebSocket
 * upgrade needs a valid bearer JWT; accepted ones go to the gateway with `Authorization` replaced
 * by the gateway's own token and `X-Forwarded-User: <sub>`.
 *
 * HTTP is forwarded with undici (a keep-alive pool to the one upstream, streaming both ways with
 * backpressure). WebSocket upgrades are verified first, then handed to the upstream with
 * node:http and piped both ways as raw sockets; the proxy never parses frames. An upgraded
 * connection stays open when its token expires: the token is checked when the connection is made
 * (like a session cookie at login), and every new upgrade needs a valid one.
 *
 * The token is never logged, echoed or forwarded. Answers of the proxy itself: 401 (token), 503
 * (no JWKS yet, or no upstream credential), 502 (upstream unreachable), 400 (unparseable target).
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';
import { bearerToken } from '../../../src/verifier/bearer.js';
import { VerifierError } from '../../../src/verifier/errors.js';
import { rejection } from '../../../src/verifier/hono.js';
import type { Verifier, VerifiedClaims } from '../../../src/verifier/verify.js';
import type { Logger } from '../../agent/log.js';
import type { CredentialSource, CredentialState } from './credentials.js';

/**
 * Node answers 431 to request headers over 16 KiB before any handler runs. The proxy takes up to
 * 2 MiB so an oversized token gets the same RFC 6750 answer (`token_too_large`) as any other bad
 * token, and the operator sees why in the log. The Worker in front never sends more than 128 KiB.
 */
export const MAX_HEADER_BYTES = 2 * 1024 * 1024;
/** Upstream keep-alive connections: more than the Worker's concurrent requests to one sandbox. */
const UPSTREAM_CONNECTIONS = 128;
/** Gateways stream (server-sent events, long polls): no limit between body chunks. */
const UPSTREAM_BODY_TIMEOUT_MS = 0;
/**
 * A response of known length up to this size is held until complete and written with its head in
 * one go: one write instead of two or three per request (syscalls are most of a proxy's cost).
 * Larger or unknown-length responses (streams, server-sent events) are passed on chunk by chunk.
 */
const COALESCE_MAX_BYTES = 64 * 1024;
/** Time for the gateway to start answering. */
const UPSTREAM_HEADERS_TIMEOUT_MS = 300_000;

/** RFC 9110 §7.6.1 hop-by-hop fields, plus what the proxy sets itself. Lower case. */
const DROP_REQUEST = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'proxy-authorization', 'proxy-authenticate', 'host', 'expect',
  'authorization', 'x-forwarded-user', 'x-forwarded-for',
]);
const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);
/** X-Forwarded-User carries `sub` as a header value: printable ASCII only, never CR or LF. */
const HEADER_VALUE = /^[\x20-\x7e]*$/;

export interface ProxyOptions {
  upstream: URL;
  upstreamTokenName: string;
  verifier: Verifier;
  credentials: CredentialSource;
  log: Logger;
}

export interface GatewayProxyServer {
  server: http.Server;
  /** Ends open WebSocket tunnels and upstream connections; stops listening. */
  close(): Promise<void>;
}

type Auth = { ok: true; claims: VerifiedClaims; credential: string } | { ok: false; status: number; headers: Record<string, string>; body: string };

/** Every value of a header in raw headers (Node keeps only the first Authorization in req.headers). */
function rawValues(raw: string[], lowerName: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === lowerName.length && raw[i]!.toLowerCase() === lowerName) out.push(raw[i + 1]!);
  return out;
}

/** Header names listed in Connection are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionListed(raw: string[]): Set<string> | undefined {
  let listed: Set<string> | undefined;
  for (const v of rawValues(raw, 'connection')) {
    for (const name of v.split(',')) {
      const n = name.trim().toLowerCase();
      if (n) (listed ??= new Set()).add(n);
    }
  }
  return listed;
}

function requestPath(url: string | undefined, prefix: string): string | undefined {
  if (url === undefined) return undefined;
  if (url.startsWith('/')) return prefix + url;
  // Absolute form (RFC 9112 §3.2.2): keep the path and query only, never the named host.
  try {
    const u = new URL(url);
    return prefix + u.pathname + u.search;
  } catch {
    return undefined;
  }
}

function json(status: number, body: unknown, extra: Record<string, string> = {}): { status: number; headers: Record<string, string>; body: string } {
  return { status, headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...extra }, body: JSON.stringify(body) };
}

export function createProxyServer(o: ProxyOptions): GatewayProxyServer {
  const { verifier, credentials, log } = o;
  const upstreamOrigin = o.upstream.origin;
  const prefix = o.upstream.pathname.replace(/\/+$/, '');
  const upstreamHost = o.upstream.host;
  const pool = new Pool(upstreamOrigin, {
    connections: UPSTREAM_CONNECTIONS,
    pipelining: 1,
    bodyTimeout: UPSTREAM_BODY_TIMEOUT_MS,
    headersTimeout: UPSTREAM_HEADERS_TIMEOUT_MS,
  });
  const tunnels = new Set<Duplex>();
  let lastCredential = '';

  /** Logs credential state changes once each (never the value). */
  function noteCredential(c: CredentialState): void {
    const key = c.ok ? `ok:${c.version}` : `no:${c.reason}`;
    if (key === lastCredential) return;
    lastCredential = key;
    if (c.ok) log('info', 'upstream_credential_loaded', { name: o.upstreamTokenName, version: c.version ?? undefined });
    else log('warn', 'upstream_credential_unavailable', { name: o.upstreamTokenName, reason: c.reason });
  }

  async function authorize(req: IncomingMessage): Promise<Auth> {
    let claims: VerifiedClaims;
    try {
      claims = await verifier.verify(bearerToken(rawValues(req.rawHeaders, 'authorization')));
      if (!HEADER_VALUE.test(claims.sub)) throw new VerifierError('invalid_claim', 'sub cannot be carried in a header');
    } catch (e) {
      if (!(e instanceof VerifierError)) throw e;
      log('info', 'request_rejected', { code: e.code, method: req.method, upgrade: req.headers.upgrade !== undefined });
      return { ok: false, ...rejection(e) };
    }
    const c = credentials.read();
    noteCredential(c);
    if (!c.ok) return { ok: false, ...json(503, { error: 'upstream_credential_unavailable', error_description: c.reason }, { 'Retry-After': '5' }) };
    return { ok: true, claims, credential: c.value };
  }

  /** The upstream request's headers: incoming ones less hop-by-hop and identity, plus ours. */
  function upstreamHeaders(req: IncomingMessage, auth: { claims: VerifiedClaims; credential: string }, keepUpgrade: boolean): string[] {
    const raw = req.rawHeaders;
    const listed = connectionListed(raw);
    const out: string[] = [];
    let forwardedFor: string | undefined;
    let hasForwardedHost = false;
    let hasForwardedProto = false;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      const lower = name.toLowerCase();
      if (lower === 'x-forwarded-for') forwardedFor = forwardedFor === undefined ? raw[i + 1] : `${forwardedFor}, ${raw[i + 1]}`;
      if (DROP_REQUEST.has(lower) || listed?.has(lower)) {
        if (keepUpgrade && lower === 'upgrade') out.push(name, raw[i + 1]!);
        continue;
      }
      if (lower === 'x-forwarded-host') hasForwardedHost = true;
      else if (lower === 'x-forwarded-proto') hasForwardedProto = true;
      out.push(name, raw[i + 1]!);
    }
    const peer = req.socket.remoteAddress;
    if (peer) out.push('x-forwarded-for', forwardedFor ? `${forwardedFor}, ${peer}` : peer);
    if (!hasForwardedHost && req.headers.host) out.push('x-forwarded-host', req.headers.host);
    if (!hasForwardedProto) out.push('x-forwarded-proto', 'http');
    if (keepUpgrade) out.push('connection', 'Upgrade', 'host', upstreamHost);
    out.push('authorization', `Bearer ${auth.credential}`, 'x-forwarded-user', auth.claims.sub);
    return out;
  }

  function send(res: ServerResponse, r: { status: number; headers: Record<string, string>; body: string }): void {
    res.writeHead(r.status, { ...r.headers, 'Content-Length': String(Buffer.byteLength(r.body)) });
    res.end(r.body);
  }

  function health(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, json(405, { error: 'method_not_allowed' }, { Allow: 'GET, HEAD' }));
      return;
    }
    const s = verifier.status();
    const c = credentials.read();
    noteCredential(c);
    const healthy = s.jwks.usable && c.ok;
    send(
      res,
      json(healthy ? 200 : 503, {
        status: healthy ? 'ok' : 'degraded',
        jwks: { usable: s.jwks.usable, age_seconds: s.jwks.ageSeconds, fresh: s.jwks.fresh, keys: s.jwks.kids.length, last_error: s.jwks.lastError },
        upstream_credential: c.ok
          ? { name: o.upstreamTokenName, present: true, version: c.version }
          : { name: o.upstreamTokenName, present: false, reason: c.reason },
        token_cache_size: s.tokenCacheSize,
      }),
    );
  }

  function forward(req: IncomingMessage, res: ServerResponse, auth: { claims: VerifiedClaims; credential: string }): void {
    const path = requestPath(req.url, prefix);
    if (path === undefined) {
      send(res, json(400, { error: 'invalid_request', error_description: 'unparseable request target' }));
      return;
    }
    const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
    let controller: Dispatcher.DispatchController | undefined;
    let done = false;
    /** Chunks of a small response with a known length, sent with its head in one write. */
    let small: Buffer[] | undefined;
    res.on('close', () => {
      if (!done) controller?.abort(new Error('client closed'));
    });
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
      },
      onResponseStart(c, statusCode, headers, statusMessage) {
        const out: string[] = [];
        for (const name in headers) {
          if (DROP_RESPONSE.has(name)) continue;
          const v = headers[name];
          if (Array.isArray(v)) for (const one of v) out.push(name, one);
          else if (v !== undefined) out.push(name, v);
        }
        res.writeHead(statusCode, statusMessage || http.STATUS_CODES[statusCode] || '', out);
        const length = Number(headers['content-length']);
        if (length > 0 && length <= COALESCE_MAX_BYTES) small = [];
      },
      onResponseData(c, chunk) {
        if (small) {
          small.push(chunk);
          return;
        }
        if (!res.write(chunk)) {
          c.pause();
          res.once('drain', () => c.resume());
        }
      },
      onResponseEnd() {
        done = true;
        if (small) res.end(small.length === 1 ? small[0] : Buffer.concat(small));
        else res.end();
      },
      onResponseError(_c, err) {
        done = true;
        const code = (err as NodeJS.ErrnoException).code ?? err.name;
        if (code !== 'UND_ERR_ABORTED') log('warn', 'upstream_error', { code, method: req.method });
        if (!res.headersSent) send(res, json(502, { error: 'bad_gateway', error_description: 'upstream unreachable' }));
        else res.destroy();
      },
    };
    try {
      pool.dispatch(
        { path, method: req.method as Dispatcher.HttpMethod, headers: upstreamHeaders(req, auth, false), body: hasBody ? req : null },
        handler,
      );
    } catch (e) {
      handler.onResponseError!(controller as Dispatcher.DispatchController, e as Error);
    }
  }

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.url === '/healthz' || req.url?.startsWith('/healthz?')) return health(req, res);
    const auth = await authorize(req);
    if (!auth.ok) {
      // The body is never read: close the connection rather than drain an unauthenticated upload.
      if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) res.shouldKeepAlive = false;
      return send(res, auth);
    }
    forward(req, res, auth);
  }

  function writeRaw(socket: Duplex, r: { status: number; headers: Record<string, string>; body: string }): void {
    let head = `HTTP/1.1 ${r.status} ${http.STATUS_CODES[r.status] ?? ''}\r\n`;
    for (const [k, v] of Object.entries(r.headers)) head += `${k}: ${v}\r\n`;
    head += `Content-Length: ${Buffer.byteLength(r.body)}\r\nConnection: close\r\n\r\n`;
    socket.end(head + r.body);
  }

  function tunnel(a: Duplex, b: Duplex): void {
    tunnels.add(a);
    const closeBoth = () => {
      a.destroy();
      b.destroy();
      tunnels.delete(a);
    };
    a.on('error', closeBoth).on('close', closeBoth);
    b.on('error', closeBoth).on('close', closeBoth);
    a.pipe(b);
    b.pipe(a);
  }

  async function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => socket.destroy());
    const auth = await authorize(req);
    if (!auth.ok) return writeRaw(socket, auth);
    const path = requestPath(req.url, prefix);
    if (path === undefined) return writeRaw(socket, json(400, { error: 'invalid_request', error_description: 'unparseable request target' }));
    const tls = o.upstream.protocol === 'https:';
    const upReq = (tls ? https : http).request({
      hostname: o.upstream.hostname,
      port: o.upstream.port || (tls ? 443 : 80),
      method: req.method,
      path,
      headers: upstreamHeaders(req, auth, true),
      // Upgraded sockets leave any pool; a fresh connection each, closed with the tunnel.
      agent: false,
      setHost: false,
    });
    upReq.on('upgrade', (upRes, upSocket, upHead) => {
      let out = `HTTP/1.1 101 ${upRes.statusMessage || 'Switching Protocols'}\r\n`;
      for (let i = 0; i < upRes.rawHeaders.length; i += 2) out += `${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}\r\n`;
      socket.write(`${out}\r\n`);
      if (upHead.length) socket.write(upHead);
      if (head.length) upSocket.write(head);
      upSocket.setNoDelay(true);
      tunnel(socket, upSocket);
    });
    // Not 101 (the gateway refused the upgrade): pass its answer on, then close.
    upReq.on('response', (upRes) => {
      let out = `HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage ?? ''}\r\n`;
      for (let i = 0; i < upRes.rawHeaders.length; i += 2) {
        const lower = upRes.rawHeaders[i]!.toLowerCase();
        if (DROP_RESPONSE.has(lower) || lower === 'content-length') continue;
        out += `${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}\r\n`;
      }
      socket.write(`${out}Connection: close\r\n\r\n`);
      upRes.pipe(socket);
    });
    upReq.on('error', (err: NodeJS.ErrnoException) => {
      log('warn', 'upstream_error', { code: err.code ?? err.name, method: req.method, upgrade: true });
      if (socket.writable) writeRaw(socket, json(502, { error: 'bad_gateway', error_description: 'upstream unreachable' }));
    });
    socket.on('close', () => upReq.destroy());
    upReq.end();
  }

  const server = http.createServer({ maxHeaderSize: MAX_HEADER_BYTES }, (req, res) => {
    onRequest(req, res).catch((e: Error) => {
      log('error', 'proxy_fault', { error: e.name });
      if (!res.headersSent) send(res, json(500, { error: 'internal_error' }));
      else res.destroy();
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    onUpgrade(req, socket, head).catch((e: Error) => {
      log('error', 'proxy_fault', { error: e.name, upgrade: true });
      socket.destroy();
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // Node's parser refused the request (bad syntax, headers over MAX_HEADER_BYTES): 400/431, no body echoed.
    if (!socket.writable) return socket.destroy();
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  });

  return {
    server,
    async close() {
      for (const s of tunnels) s.destroy();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      await pool.close().catch(() => undefined);
      credentials.close();
    },
  };
}
