/**
 * The verifying reverse proxy (docs/architecture.md, "Gateway traffic and verification", "Proxy headers to the gateway"): every request and every
 * WebSocket upgrade needs a valid bearer JWT; accepted ones go to the gateway with `Authorization`
 * replaced by the gateway's own token and the identity headers rebuilt from verified facts only
 * (forwardedHeaders): `X-Forwarded-User: <sub>`, `X-Forwarded-For: <client_ip>`, and
 * `X-Forwarded-Proto`/`-Host` of the Worker's public URL (the pinned issuer). This is what lets
 * OpenClaw's trusted-proxy mode believe them: no client, and nothing between the Worker and here,
 * can change a signed claim.
 *
 * HTTP is forwarded with undici (a keep-alive pool to the one upstream, streaming both ways with
 * backpressure). WebSocket upgrades are verified first, then handed to the upstream with
 * node:http and piped both ways as raw sockets; the proxy never parses frames. An upgraded
 * connection stays open when its token expires: the token is checked when the connection is made
 * (like a session cookie at login), and every new upgrade needs a valid one.
 *
 * Issue 11's hardening: only user access tokens (`scope` naming `gateway`) are admitted; client
 * identity and address fields (CLIENT_IDENTITY_HEADERS) are never forwarded, under any spelling;
 * only WebSocket upgrades are tunnelled (upgradeRefusal); request heads are bounded in size and
 * time (MAX_HEADER_BYTES, HEADERS_TIMEOUT_MS) so clients without a token cannot pile up memory.
 *
 * The token is never logged, echoed or forwarded. Answers of the proxy itself: 401 (token or
 * scope), 503 (no JWKS yet, or no upstream credential), 502 (upstream unreachable), 400
 * (unparseable target, an upgrade other than a WebSocket handshake), 426 (WebSocket version not
 * 13), and from Node's parser 431 (head over MAX_HEADER_BYTES), 408 (head not complete in time).
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { Pool } from 'undici';
import { ipLiteral } from '../../../src/issuer/client-ip.js';
import { bearerToken } from '../../../src/verifier/bearer.js';
import { VerifierError } from '../../../src/verifier/errors.js';
import { rejection } from '../../../src/verifier/hono.js';
import type { VerifiedClaims, Verifier } from '../../../src/verifier/verify.js';
import type { Logger } from '../../agent/log.js';
import type { CredentialSource, CredentialState } from './credentials.js';

/**
 * Request heads are bounded (Node answers 431 beyond this, before any handler runs). Node buffers
 * a head until it is complete, for every connection, authenticated or not: at the old 2 MiB, 40
 * unauthenticated sockets took the proxy from 85 to 492 MiB (issue 11, finding 11). No token is
 * over 8 KiB (TOKEN_MAX_BYTES in src/issuer/tokens.ts), and the rest of a head the Worker sends
 * (cookies, Cloudflare's own fields) is a few KiB, so 64 KiB leaves room for all of it several
 * times over while 1,000 half-sent heads stay within 64 MiB. A token over 8 KiB but under this
 * still gets the RFC 6750 answer (`token_too_large`) and the operator sees why in the log.
 */
export const MAX_HEADER_BYTES = 64 * 1024;
/**
 * Time for a client to send a complete request head. The Worker sends its head in one go; only a
 * slow-loris client needs longer, and every open head holds a socket and up to MAX_HEADER_BYTES.
 */
export const HEADERS_TIMEOUT_MS = 10_000;
/**
 * Time for a whole request, head and body. Not short: an accepted upload streams to the gateway
 * and may take minutes. Unauthenticated bodies are never read (the connection is closed), so
 * this does not bound what a client without a token can make the proxy hold.
 */
const REQUEST_TIMEOUT_MS = 300_000;
/**
 * How often Node checks the two timeouts above. Its default (30 s) would let a trickled head
 * live 40 s instead of 10; a pass over the open connections each second costs next to nothing.
 */
const TIMEOUT_CHECK_INTERVAL_MS = 1_000;
/**
 * How long a connection refused by Node's parser (431, 408, 400) stays open after its answer, so
 * a client still sending its head reads the answer instead of a reset. The proxy stops reading
 * it meanwhile, and destroys it when the time is up.
 */
const CLIENT_ERROR_LINGER_MS = 2_000;
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

/**
 * RFC 9110 §7.6.1 hop-by-hop fields (and h2c's HTTP2-Settings), plus what the proxy sets itself.
 * Lower case, `-` only: incoming names are folded (see `fold`) before they are looked up.
 */
const DROP_REQUEST = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'http2-settings',
  'proxy-authorization',
  'proxy-authenticate',
  'host',
  'expect',
  'authorization',
]);
/**
 * Identity and address fields a client could send to speak for the proxy: never forwarded (issue
 * 11, finding 8). The gateway behind the proxy trusts it for who a request is from and where it
 * came from, and servers read these as exactly that: X-Forwarded-* (incl. -User, -For, -Host,
 * -Proto), Forwarded (RFC 7239), X-Real-IP and its kin, Remote-User, Cloudflare Access's
 * Cf-Access-* and Cf-Connecting-IP, and OpenClaw's own x-openclaw-*. Matched by name, or by
 * prefix for the families. Names are folded first (lower case, `_` as `-`): CGI-style servers,
 * WSGI and nginx with underscores_in_headers read `X_Forwarded_User` as `X-Forwarded-User`.
 * The proxy then sets X-Forwarded-User, X-Forwarded-For, X-Forwarded-Host and X-Forwarded-Proto
 * itself (forwardedHeaders), from the token and its own configuration.
 */
const CLIENT_IDENTITY_HEADERS = {
  names: new Set([
    'forwarded',
    'x-forwarded',
    'x-real-ip',
    'x-client-ip',
    'true-client-ip',
    'x-cluster-client-ip',
    'cf-connecting-ip',
    'cf-connecting-ipv6',
    'remote-user',
    'x-remote-user',
    'remote-addr',
    'x-remote-addr',
  ]),
  prefixes: ['x-forwarded-', 'cf-access-', 'x-openclaw-'],
} as const;
const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);
/** X-Forwarded-User carries `sub` as a header value: printable ASCII only, never CR or LF. */
const HEADER_VALUE = /^[\x20-\x7e]*$/;
/**
 * The scope of user access tokens, as mintAccessToken (src/issuer/tokens.ts) writes it. The proxy
 * admits those only (issue 11, finding 7): the agent's own token (`scope: agent`, same audience)
 * is for the issuer's token endpoint, and code in the container reaches the gateway on loopback.
 */
const ADMITTED_SCOPE = 'gateway';
/** Scopes that refuse a token even beside ADMITTED_SCOPE: an agent token is never a user. */
const REFUSED_SCOPES = new Set(['agent']);
/** error_description of a verified token without the admitted scope: stable, clients match it. */
const SCOPE_REFUSED = 'insufficient_scope';
/** RFC 6455 §4.1: Sec-WebSocket-Key is 16 bytes in base64 (24 characters, canonical padding). */
const WEBSOCKET_KEY = /^[A-Za-z0-9+/]{21}[AQgw]==$/;
/** RFC 6455 §4.4: the one version there is; anything else gets 426 naming it. */
const WEBSOCKET_VERSION = '13';

export interface ProxyOptions {
  upstream: URL;
  /**
   * The Worker's public URL: the pinned issuer (`iss`), since the gateway path is served on the
   * issuer's own origin. Its scheme and host are the X-Forwarded-Proto and -Host the gateway sees.
   */
  publicOrigin: URL;
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

type Auth =
  | { ok: true; claims: VerifiedClaims; credential: string }
  | { ok: false; status: number; headers: Record<string, string>; body: string };

/** Every value of a header in raw headers (Node keeps only the first Authorization in req.headers). */
function rawValues(raw: string[], lowerName: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2)
    if (raw[i]!.length === lowerName.length && raw[i]!.toLowerCase() === lowerName) out.push(raw[i + 1]!);
  return out;
}

/** A header name as the drop lists spell it: lower case, `_` as `-` (see CLIENT_IDENTITY_HEADERS). */
function fold(name: string): string {
  const lower = name.toLowerCase();
  return lower.includes('_') ? lower.replaceAll('_', '-') : lower;
}

function isClientIdentity(folded: string): boolean {
  if (CLIENT_IDENTITY_HEADERS.names.has(folded)) return true;
  for (const p of CLIENT_IDENTITY_HEADERS.prefixes) if (folded.startsWith(p)) return true;
  return false;
}

/** Header names listed in Connection (folded) are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionListed(raw: string[]): Set<string> | undefined {
  let listed: Set<string> | undefined;
  for (const v of rawValues(raw, 'connection')) {
    for (const name of v.split(',')) {
      const n = fold(name.trim());
      if (n) (listed ??= new Set()).add(n);
    }
  }
  return listed;
}

/** `scope` is a space-delimited list (RFC 9068 §2.2.3): it must name ADMITTED_SCOPE and no refused one. */
function scopeAdmitted(scope: unknown): boolean {
  if (typeof scope !== 'string') return false;
  const scopes = scope.split(' ');
  return scopes.includes(ADMITTED_SCOPE) && !scopes.some((s) => REFUSED_SCOPES.has(s));
}

type Answer = { status: number; headers: Record<string, string>; body: string };

/**
 * Why a request that asks to upgrade is not a WebSocket handshake the proxy will tunnel, or
 * undefined when it is one (issue 11, finding 10). Only `Upgrade: websocket` with what RFC 6455
 * §4.1 requires: GET over HTTP/1.1, `Connection: upgrade`, one 16-byte Sec-WebSocket-Key, version
 * 13, and no body. Any other protocol (h2c, TLS, ...) would turn the tunnel into a channel the
 * proxy never sees requests on, so one token could carry unverified requests with forged headers.
 */
function upgradeRefusal(req: IncomingMessage): { reason: string; answer: Answer } | undefined {
  const refuse = (status: number, reason: string, description: string, extra?: Record<string, string>) => ({
    reason,
    answer: json(status, { error: reason, error_description: description }, extra),
  });
  const raw = req.rawHeaders;
  const upgrades = rawValues(raw, 'upgrade');
  if (upgrades.length !== 1 || upgrades[0]!.trim().toLowerCase() !== 'websocket') {
    return refuse(400, 'unsupported_upgrade', 'only Upgrade: websocket is tunnelled');
  }
  if (rawValues(raw, 'transfer-encoding').length > 0 || rawValues(raw, 'content-length').some((v) => v.trim() !== '0')) {
    return refuse(400, 'upgrade_with_body', 'an upgrade request has no body');
  }
  const keys = rawValues(raw, 'sec-websocket-key');
  if (
    req.method !== 'GET' ||
    req.httpVersion !== '1.1' ||
    !connectionListed(raw)?.has('upgrade') ||
    keys.length !== 1 ||
    !WEBSOCKET_KEY.test(keys[0]!.trim())
  ) {
    return refuse(400, 'invalid_websocket_handshake', 'GET, HTTP/1.1, Connection: upgrade and one Sec-WebSocket-Key are required');
  }
  const versions = rawValues(raw, 'sec-websocket-version');
  if (versions.length !== 1 || versions[0]!.trim() !== WEBSOCKET_VERSION) {
    return refuse(426, 'unsupported_websocket_version', `Sec-WebSocket-Version ${WEBSOCKET_VERSION} is required`, {
      'Sec-WebSocket-Version': WEBSOCKET_VERSION,
    });
  }
  return undefined;
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

function json(status: number, body: unknown, extra: Record<string, string> = {}): Answer {
  return { status, headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...extra }, body: JSON.stringify(body) };
}

function send(res: ServerResponse, r: Answer): void {
  res.writeHead(r.status, { ...r.headers, 'Content-Length': String(Buffer.byteLength(r.body)) });
  res.end(r.body);
}

/** The client went away before the answer was complete: the upstream request is aborted with it. */
const CLIENT_CLOSED = 'client closed';

/**
 * One forwarded request's upstream answer, streamed to the client with backpressure. It speaks
 * the handler interface undici's HTTP/1.1 client itself calls (onConnect, onHeaders with the raw
 * header list, onData, onComplete, onError). A handler of undici's newer interface (onRequestStart,
 * onResponseStart...) gets an adapter and a controller object per request, and the response head
 * parsed into an object that the proxy would only turn back into a list: about 2% of the
 * proxy's CPU under the no-op load (UnwrapHandler and parseHeaders in the profile; bench/README.md,
 * "Verifier and proxy"). One instance per request, its methods on the prototype: no closures per
 * request but the client-close one. undici 7's types mark these names deprecated, yet its client
 * calls exactly these and wraps a handler of the new names to do so; undici is pinned, and a
 * version without them would need the new interface back (onRequestStart, onResponseStart...).
 */
class Forwarding implements Dispatcher.DispatchHandler {
  private abort: ((err?: Error) => void) | undefined;
  private done = false;
  /** Chunks of a small response with a known length, sent with its head in one write. */
  private small: Buffer[] | undefined;
  /** undici's, to read on after the client drained what it was sent. */
  private resume: (() => void) | undefined;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly log: Logger,
  ) {
    res.on('close', () => {
      if (!this.done) this.abort?.(new Error(CLIENT_CLOSED));
    });
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    // 1xx (103 Early Hints, a stray 100): informational, and Node's ServerResponse has one head
    // per response; the final answer follows on the same request.
    if (statusCode < 200) return true;
    const out: string[] = [];
    let length = -1;
    for (let i = 0; i < rawHeaders.length; i += 2) {
      // latin1: byte for byte, as undici's own header parsing and Node's header writing do.
      const name = rawHeaders[i]!.toString('latin1');
      const lower = name.toLowerCase();
      if (DROP_RESPONSE.has(lower)) continue;
      const value = rawHeaders[i + 1]!.toString('latin1');
      // Two Content-Length fields: no known length, streamed as it comes.
      if (lower === 'content-length') length = length === -1 ? Number(value) : Number.NaN;
      out.push(name, value);
    }
    this.res.writeHead(statusCode, statusText || http.STATUS_CODES[statusCode] || '', out);
    if (length > 0 && length <= COALESCE_MAX_BYTES) this.small = [];
    this.resume = resume;
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.small) {
      this.small.push(chunk);
      return true;
    }
    if (this.res.write(chunk)) return true;
    this.res.once('drain', this.resume!);
    return false;
  }

  onComplete(): void {
    this.done = true;
    const small = this.small;
    if (small === undefined || small.length === 0) this.res.end();
    else this.res.end(small.length === 1 ? small[0] : Buffer.concat(small));
  }

  onError(err: Error): void {
    this.done = true;
    const code = (err as NodeJS.ErrnoException).code ?? err.name;
    if (code !== 'UND_ERR_ABORTED') this.log('warn', 'upstream_error', { code, method: this.req.method });
    if (!this.res.headersSent) send(this.res, json(502, { error: 'bad_gateway', error_description: 'upstream unreachable' }));
    else this.res.destroy();
  }
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

  /** A refused token: the RFC 6750 answer (or 503 without keys), logged with its code, never the token. */
  function refused(req: IncomingMessage, e: unknown): Auth {
    if (!(e instanceof VerifierError)) throw e;
    log('info', 'request_rejected', { code: e.code, method: req.method, upgrade: req.headers.upgrade !== undefined });
    return { ok: false, ...rejection(e) };
  }

  /**
   * The proxy's own rules on a verified token, the same for every request that carries it: once
   * per claims object (the verifier hands out one frozen object per cached token), not per request.
   * Weak: an entry goes when the verifier's cache lets go of the claims.
   */
  const admissions = new WeakMap<VerifiedClaims, VerifierError | 'scope' | 'ok'>();
  function admission(claims: VerifiedClaims): VerifierError | 'scope' | 'ok' {
    let a = admissions.get(claims);
    if (a !== undefined) return a;
    if (!HEADER_VALUE.test(claims.sub)) a = new VerifierError('invalid_claim', 'sub cannot be carried in a header');
    // A signed client_ip that is no IP literal is an issuer fault, not a client to guess at: the
    // token is refused (the same RFC 6750 answer as any bad claim), never forwarded without it.
    else if (claims.client_ip !== undefined && ipLiteral(claims.client_ip) === undefined)
      a = new VerifierError('invalid_claim', 'client_ip is not an IP literal');
    // After verify, not in it: the verifier (src/verifier) checks what every token must have; which
    // kind of token this gateway admits is the proxy's rule. Same RFC 6750 answer as a bad token.
    else if (!scopeAdmitted(claims.scope)) a = 'scope';
    else a = 'ok';
    admissions.set(claims, a);
    return a;
  }

  function admit(req: IncomingMessage, claims: VerifiedClaims): Auth {
    const a = admission(claims);
    if (a instanceof VerifierError) return refused(req, a);
    if (a === 'scope') {
      log('info', 'request_rejected', { code: SCOPE_REFUSED, method: req.method, upgrade: req.headers.upgrade !== undefined });
      return {
        ok: false,
        ...json(
          401,
          { error: 'invalid_token', error_description: SCOPE_REFUSED },
          { 'WWW-Authenticate': `Bearer error="invalid_token", error_description="${SCOPE_REFUSED}"` },
        ),
      };
    }
    const c = credentials.read();
    noteCredential(c);
    if (!c.ok)
      return { ok: false, ...json(503, { error: 'upstream_credential_unavailable', error_description: c.reason }, { 'Retry-After': '5' }) };
    return { ok: true, claims, credential: c.value };
  }

  /**
   * The token's verdict. Without a promise when the verifier has the token cached under a fresh
   * JWKS (every request of a user after the first): the request is then forwarded in the same
   * turn as it was parsed, with no microtask hops in between. Otherwise verify() decides.
   */
  function authorize(req: IncomingMessage): Auth | Promise<Auth> {
    let token: string;
    try {
      token = bearerToken(rawValues(req.rawHeaders, 'authorization'));
    } catch (e) {
      return refused(req, e);
    }
    const hit = verifier.peek(token);
    if (hit !== undefined) return admit(req, hit);
    return verifier.verify(token).then(
      (claims) => admit(req, claims),
      (e: unknown) => refused(req, e),
    );
  }

  /** X-Forwarded-Proto and -Host: one value each for the proxy's life (see ProxyOptions.publicOrigin). */
  const forwardedProto = o.publicOrigin.protocol.slice(0, -1);
  const forwardedHost = o.publicOrigin.host;
  let unattributed = false;

  /** forwardedHeaders per claims object, built on its first forwarded request (as admissions). */
  const forwarded = new WeakMap<VerifiedClaims, readonly string[]>();

  /**
   * The identity headers the gateway trusts (docs/architecture.md, "Proxy headers to the gateway"), from verified facts only: never the TCP
   * peer (always the Worker or loopback here, which OpenClaw refuses with
   * `proxy_attribution_required`) and never anything a client sent (dropped in upstreamHeaders).
   * A token without `client_ip` (a Worker from before the claim, or one that saw no address)
   * gets no X-Forwarded-For at all: the gateway decides, and OpenClaw in trusted-proxy mode
   * refuses it as unattributable rather than be told an address nobody saw.
   */
  function forwardedHeaders(req: IncomingMessage, claims: VerifiedClaims): readonly string[] {
    const known = forwarded.get(claims);
    if (known !== undefined) return known;
    const out: string[] = [];
    const clientIp = ipLiteral(claims.client_ip);
    if (clientIp !== undefined) out.push('x-forwarded-for', clientIp);
    else if (!unattributed) {
      // Once per process: every such request is the same story, and the log says it once.
      unattributed = true;
      log('warn', 'client_ip_missing', { method: req.method, upgrade: req.headers.upgrade !== undefined });
    }
    out.push('x-forwarded-proto', forwardedProto, 'x-forwarded-host', forwardedHost, 'x-forwarded-user', claims.sub);
    forwarded.set(claims, out);
    return out;
  }
  /**
   * The upstream request's headers: incoming ones less hop-by-hop and client identity/address
   * fields (under any spelling), plus ours. `websocket` adds the upgrade fields, with the one
   * protocol the proxy tunnels rather than whatever the client wrote.
   */
  function upstreamHeaders(req: IncomingMessage, auth: { claims: VerifiedClaims; credential: string }, websocket: boolean): string[] {
    const raw = req.rawHeaders;
    const listed = connectionListed(raw);
    const out: string[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      const folded = fold(name);
      if (DROP_REQUEST.has(folded) || listed?.has(folded) || isClientIdentity(folded)) continue;
      out.push(name, raw[i + 1]!);
    }
    if (websocket) out.push('connection', 'Upgrade', 'upgrade', 'websocket', 'host', upstreamHost);
    out.push('authorization', `Bearer ${auth.credential}`);
    for (const v of forwardedHeaders(req, auth.claims)) out.push(v);
    return out;
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
        jwks: {
          usable: s.jwks.usable,
          age_seconds: s.jwks.ageSeconds,
          fresh: s.jwks.fresh,
          keys: s.jwks.kids.length,
          last_error: s.jwks.lastError,
        },
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
    const hasBody =
      req.headers['transfer-encoding'] !== undefined ||
      (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
    const handler = new Forwarding(req, res, log);
    try {
      pool.dispatch(
        { path, method: req.method as Dispatcher.HttpMethod, headers: upstreamHeaders(req, auth, false), body: hasBody ? req : null },
        handler,
      );
    } catch (e) {
      handler.onError(e as Error);
    }
  }

  /** Requests, without a promise when authorize() needs none (see there). */
  function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> | undefined {
    if (req.url === '/healthz' || req.url?.startsWith('/healthz?')) {
      health(req, res);
      return;
    }
    // Node hands an Upgrade without `Connection: upgrade` to this handler. It is no WebSocket
    // handshake (that needs both), so it is refused like any other, never forwarded without it.
    if (req.headers.upgrade !== undefined) {
      res.shouldKeepAlive = false;
      const refusal = upgradeRefusal(req) ?? {
        reason: 'invalid_websocket_handshake',
        answer: json(400, { error: 'invalid_websocket_handshake', error_description: 'Connection: upgrade is required' }),
      };
      log('info', 'upgrade_refused', { reason: refusal.reason, method: req.method });
      send(res, refusal.answer);
      return;
    }
    const auth = authorize(req);
    if (auth instanceof Promise) return auth.then((a) => answer(req, res, a));
    return answer(req, res, auth);
  }

  function answer(req: IncomingMessage, res: ServerResponse, auth: Auth): undefined {
    if (!auth.ok) {
      // The body is never read: close the connection rather than drain an unauthenticated upload.
      if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) res.shouldKeepAlive = false;
      send(res, auth);
      return;
    }
    forward(req, res, auth);
  }

  /** A fault of the proxy's own (never a refusal): 500, or the connection ends if the head is out. */
  function fault(res: ServerResponse, e: Error): void {
    log('error', 'proxy_fault', { error: e.name });
    if (!res.headersSent) send(res, json(500, { error: 'internal_error' }));
    else res.destroy();
  }

  function writeRaw(socket: Duplex, r: Answer): void {
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
    // Before the token and before anything reaches the gateway: the protocol is the proxy's rule.
    const refusal = upgradeRefusal(req);
    if (refusal) {
      log('info', 'upgrade_refused', { reason: refusal.reason, method: req.method });
      return writeRaw(socket, refusal.answer);
    }
    const auth = await authorize(req);
    if (!auth.ok) return writeRaw(socket, auth);
    const path = requestPath(req.url, prefix);
    if (path === undefined)
      return writeRaw(socket, json(400, { error: 'invalid_request', error_description: 'unparseable request target' }));
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

  const server = http.createServer(
    {
      maxHeaderSize: MAX_HEADER_BYTES,
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
    },
    (req, res) => {
      try {
        onRequest(req, res)?.catch((e: Error) => fault(res, e));
      } catch (e) {
        fault(res, e as Error);
      }
    },
  );
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    onUpgrade(req, socket, head).catch((e: Error) => {
      log('error', 'proxy_fault', { error: e.name, upgrade: true });
      socket.destroy();
    });
  });
  /** Connections the handler below has answered; Node calls it again for data it had already read. */
  const answered = new WeakSet<Duplex>();
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // Node refused the request: bad syntax (400), a head over MAX_HEADER_BYTES (431), or not sent
    // within HEADERS_TIMEOUT_MS (408). No body is echoed; the connection is closed.
    if (answered.has(socket)) return; // more of the refused head: the parser drops it unkept
    if (!socket.writable) return socket.destroy();
    answered.add(socket);
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    // Closing at once, with the client's bytes still arriving, would reset the connection and the
    // client could lose the answer; a bounded linger lets it read why, at the cost of one socket.
    // Reading stops: the rest of a refused head is left in the kernel, never copied in here.
    socket.pause();
    const linger = setTimeout(() => socket.destroy(), CLIENT_ERROR_LINGER_MS).unref();
    socket.once('close', () => clearTimeout(linger));
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
