/**
 * Test fixtures for the verifier and the verifying proxy, all real HTTP on 127.0.0.1: a JWKS
 * server with keys generated at set-up (never committed), a counting upstream with a WebSocket
 * echo, credentials.json written the way the agent writes it, and the proxy in-process.
 */
import { createHash, randomUUID } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, writeSync } from 'node:fs';
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { base64url, calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { WebSocketServer } from 'ws';
import type { Fields, Logger } from '../../container/agent/log.js';
import type { ProxyConfig } from '../../container/lib/proxy/config.js';
import { type RunningProxy, startGatewayProxy } from '../../container/lib/proxy/start.js';
import type { VerifierOptions } from '../../src/verifier/verify.js';

export const ISSUER = 'https://issuer.test';
export const AUDIENCE = 'gateway:sbx-1';

/** The proxy CLI's flags for the fixtures' issuer and audience (container/gateway-proxy.ts, as start.sh passes them). */
export function proxyFlags(o: { jwksUrl: string; upstreamUrl: string; dir: string; port: number }): string[] {
  return [
    '--jwks',
    o.jwksUrl,
    '--issuer',
    ISSUER,
    '--audience',
    AUDIENCE,
    '--upstream',
    o.upstreamUrl,
    '--credentials',
    join(o.dir, 'credentials.json'),
    '--port',
    String(o.port),
  ];
}
/** The client address the fixture's tokens carry by default (claim client_ip; TEST-NET-2, RFC 5737). */
export const CLIENT_IP = '198.51.100.23';

export interface TestKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function makeKey(): Promise<TestKey> {
  const { publicKey, privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  return { kid, privateKey: privateKey as CryptoKey, publicJwk: { ...jwk, kid, alg: 'EdDSA', use: 'sig' } };
}

export interface TokenOpts {
  header?: Record<string, unknown>;
  claims?: Record<string, unknown>;
  drop?: string[];
  /** ms since the epoch; default Date.now() */
  now?: number;
  ttl?: number;
}

/** A user access token as our issuer makes it (client_ip included), with overrides. */
export async function token(key: TestKey, o: TokenOpts = {}): Promise<string> {
  const iat = Math.floor((o.now ?? Date.now()) / 1000);
  const claims: Record<string, unknown> = {
    iss: ISSUER,
    sub: 'user-1',
    aud: AUDIENCE,
    iat,
    exp: iat + (o.ttl ?? 300),
    jti: randomUUID(),
    client_id: 'sbx-1',
    scope: 'gateway',
    client_ip: CLIENT_IP,
    ...o.claims,
  };
  for (const k of o.drop ?? []) delete claims[k];
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'at+jwt', ...o.header } as { alg: string })
    .sign(key.privateKey);
}

function b64(s: string | Uint8Array): string {
  return base64url.encode(s);
}

/** Signs arbitrary header and payload text (for duplicate names, non-objects, odd JSON). */
export async function signRaw(key: TestKey, headerJson: string, payloadJson: string): Promise<string> {
  const input = `${b64(headerJson)}.${b64(payloadJson)}`;
  const sig = new Uint8Array(await crypto.subtle.sign('Ed25519', key.privateKey, new TextEncoder().encode(input)));
  return `${input}.${b64(sig)}`;
}

export interface JwksServer {
  url: string;
  keys: JWK[];
  /** Requests answered (200, 304 or failures alike). */
  hits: number;
  /** 'down': connection reset; number: that status; undefined: serve. */
  fault: 'down' | number | undefined;
  cacheControl: string;
  /** Delay before answering, ms. */
  delayMs: number;
  close(): Promise<void>;
}

export async function startJwksServer(keys: JWK[]): Promise<JwksServer> {
  const state: JwksServer = {
    url: '',
    keys,
    hits: 0,
    fault: undefined,
    cacheControl: 'public, max-age=300, stale-while-revalidate=60, stale-if-error=86400',
    delayMs: 0,
    close: async () => undefined,
  };
  const server = http.createServer((req, res) => {
    state.hits++;
    const answer = () => {
      if (state.fault === 'down') return req.socket.destroy();
      if (typeof state.fault === 'number') {
        res.writeHead(state.fault, { 'content-type': 'text/plain' });
        return res.end('nope');
      }
      const body = JSON.stringify({ keys: state.keys });
      const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
      if (req.headers['if-none-match'] === etag) {
        res.writeHead(304, { etag, 'cache-control': state.cacheControl });
        return res.end();
      }
      res.writeHead(200, { 'content-type': 'application/json', etag, 'cache-control': state.cacheControl });
      res.end(body);
    };
    if (state.delayMs > 0) setTimeout(answer, state.delayMs);
    else answer();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
  state.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return state;
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

export interface Upstream {
  url: string;
  port: number;
  hits: number;
  wsConnections: number;
  requests: SeenRequest[];
  /** Upgrade requests as they arrived (method, URL, headers; no body). */
  upgrades: SeenRequest[];
  close(): Promise<void>;
}

/**
 * Counts every request; answers JSON naming what it received (minus nothing: the tests check
 * what the proxy forwarded). `/ws` upgrades echo each message back, prefixed with the user seen.
 */
export async function startUpstream(): Promise<Upstream> {
  const state: Upstream = { url: '', port: 0, hits: 0, wsConnections: 0, requests: [], upgrades: [], close: async () => undefined };
  const server = http.createServer((req, res) => {
    state.hits++;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      const seen = { method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body };
      if (state.requests.length < 10_000) state.requests.push(seen);
      if (req.url === '/status/418') {
        res.writeHead(418, { 'content-type': 'text/plain', 'x-upstream': 'yes' });
        return res.end('teapot');
      }
      const out = JSON.stringify({
        method: seen.method,
        url: seen.url,
        authorization: req.headers.authorization,
        user: req.headers['x-forwarded-user'],
        body,
      });
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'yes', 'set-cookie': ['a=1', 'b=2'] });
      res.end(out);
    });
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    state.hits++;
    if (state.upgrades.length < 10_000)
      state.upgrades.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body: '' });
    if (req.url !== '/ws') {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nno socket');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      state.wsConnections++;
      const user = String(req.headers['x-forwarded-user']);
      const auth = String(req.headers.authorization);
      ws.send(JSON.stringify({ hello: user, authorization: auth }));
      ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `${user}:${data.toString()}`, { binary: isBinary }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.port = (server.address() as AddressInfo).port;
  state.url = `http://127.0.0.1:${state.port}`;
  state.close = () =>
    new Promise<void>((r) => {
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      server.close(() => r());
    });
  return state;
}

let tmpCounter = 0;

/** credentials.json as the agent writes it: temp file in the same directory, fsync, rename, 0600. */
export function writeCredentials(dir: string, values: Record<string, string>, version: string): void {
  const tmp = join(dir, `.credentials.json.${process.pid}.${tmpCounter++}.tmp`);
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, `${JSON.stringify({ version, values }, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, 'credentials.json'));
}

export interface LogLine extends Fields {
  level: string;
  event: string;
}

export function captureLog(): { log: Logger; lines: LogLine[]; text: () => string } {
  const lines: LogLine[] = [];
  const log: Logger = (level, event, fields = {}) => {
    lines.push({ level, event, ...fields } as LogLine);
  };
  return { log, lines, text: () => lines.map((l) => JSON.stringify(l)).join('\n') };
}

export async function startProxy(
  o: { jwksUrl: string; upstream: string; credentialsFile: string; audience?: string; issuer?: string; clockSkew?: number },
  extra: { log?: Logger; verifierOverrides?: Partial<VerifierOptions> } = {},
): Promise<RunningProxy> {
  const config: ProxyConfig = {
    jwksUrl: o.jwksUrl,
    issuer: o.issuer ?? ISSUER,
    audience: o.audience ?? AUDIENCE,
    upstream: new URL(o.upstream),
    credentialsFile: o.credentialsFile,
    upstreamTokenName: 'GATEWAY_TOKEN',
    host: '127.0.0.1',
    port: 0,
    clockSkew: o.clockSkew ?? 30,
  };
  return startGatewayProxy(config, { log: extra.log ?? (() => undefined), verifierOverrides: extra.verifierOverrides });
}

/** Raw HTTP/1.1 request over a socket, for what fetch cannot send (two Authorization headers). */
export async function rawRequest(port: number, lines: string[]): Promise<{ status: number; head: string; body: string }> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let data = '';
    sock.on('data', (d: Buffer) => (data += d.toString('latin1')));
    sock.on('error', reject);
    sock.on('end', () => {
      const [head = '', body = ''] = data.split('\r\n\r\n', 2);
      resolve({ status: Number(head.split(' ')[1]), head, body });
    });
    sock.write(`${lines.join('\r\n')}\r\nConnection: close\r\n\r\n`);
  });
}

export interface AttackCase {
  name: string;
  /** Authorization header values as sent: none, one, or several. */
  authorization: string[];
  /** The verifier's code in error_description. */
  code: string;
}

/**
 * Bad tokens and bad Authorization headers, each with the code it must be refused with. `key` is
 * in the JWKS; `attacker` is not.
 */
export async function attackCorpus(key: TestKey, attacker: TestKey): Promise<AttackCase[]> {
  const { createHmac } = await import('node:crypto');
  const now = Math.floor(Date.now() / 1000);
  const good = await token(key);
  const [gh, gp, gs] = good.split('.') as [string, string, string];
  const other = await token(key);
  const baseHeader = { alg: 'EdDSA', kid: key.kid, typ: 'at+jwt' };
  const claims = { iss: ISSUER, sub: 'user-1', aud: AUDIENCE, iat: now, exp: now + 300, jti: randomUUID() };
  const enc = (o: unknown) => b64(JSON.stringify(o));
  const fakeSig = b64(new Uint8Array(64).fill(7));
  const hs256 = (secret: Uint8Array | string) => {
    const input = `${enc({ alg: 'HS256', kid: key.kid, typ: 'at+jwt' })}.${enc(claims)}`;
    return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
  };
  const publicBytes = base64url.decode(key.publicJwk.x!);
  const bearer = (t: string) => [`Bearer ${t}`];
  const c = (name: string, t: string, code: string): AttackCase => ({ name, authorization: bearer(t), code });
  // The last signature character carries 4 unused bits: flip one of them (same bytes, other spelling).
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const lastIdx = alphabet.indexOf(gs.at(-1)!);
  const nonCanonical = `${gh}.${gp}.${gs.slice(0, -1)}${alphabet[lastIdx ^ 1]}`;
  // Signed by the real key, so only the header rule can refuse it (jose would not sign some of these).
  const header = (h: Record<string, unknown>) => signRaw(key, JSON.stringify({ ...baseHeader, ...h }), JSON.stringify(claims));

  return [
    c('alg none, empty signature', `${enc({ alg: 'none', typ: 'at+jwt' })}.${enc(claims)}.`, 'malformed_token'),
    c('alg none with signature bytes', `${enc({ alg: 'none', kid: key.kid, typ: 'at+jwt' })}.${enc(claims)}.${fakeSig}`, 'unsupported_alg'),
    c('HS256 keyed with the public key bytes', hs256(publicBytes), 'unsupported_alg'),
    c('HS256 keyed with the public JWK text', hs256(JSON.stringify(key.publicJwk)), 'unsupported_alg'),
    c('RS256 header', `${enc({ alg: 'RS256', kid: key.kid, typ: 'at+jwt' })}.${enc(claims)}.${fakeSig}`, 'unsupported_alg'),
    c('ES256 header', `${enc({ alg: 'ES256', kid: key.kid, typ: 'at+jwt' })}.${enc(claims)}.${fakeSig}`, 'unsupported_alg'),
    c('alg in lower case', `${enc({ ...baseHeader, alg: 'eddsa' })}.${enc(claims)}.${fakeSig}`, 'unsupported_alg'),
    c(
      'embedded jwk header (attacker key, signed by it)',
      await token(attacker, { header: { kid: key.kid, jwk: attacker.publicJwk } }),
      'forbidden_header',
    ),
    c('jku header', await header({ jku: 'https://attacker.test/jwks.json' }), 'forbidden_header'),
    c('x5u header', await header({ x5u: 'https://attacker.test/cert.pem' }), 'forbidden_header'),
    c('x5c header', await header({ x5c: ['MIIBIjANBgkq'] }), 'forbidden_header'),
    c('x5t header', await header({ x5t: 'abc' }), 'forbidden_header'),
    c('crit header', await header({ crit: ['exp'] }), 'forbidden_header'),
    c('b64: false', `${enc({ ...baseHeader, b64: false, crit: ['b64'] })}.${gp}.${fakeSig}`, 'forbidden_header'),
    c('zip header', await header({ zip: 'DEF' }), 'forbidden_header'),
    c('no kid', `${enc({ alg: 'EdDSA', typ: 'at+jwt' })}.${gp}.${gs}`, 'missing_kid'),
    c('unknown kid', await token(attacker), 'unknown_kid'),
    c('known kid, valid signature from another key', await token(attacker, { header: { kid: key.kid } }), 'bad_signature'),
    c('expired', await token(key, { now: Date.now() - 3600_000, ttl: 300 }), 'expired'),
    c('nbf ahead', await token(key, { claims: { nbf: now + 3600 } }), 'not_yet_valid'),
    c('iat ahead', await token(key, { claims: { iat: now + 3600, exp: now + 3900 } }), 'iat_in_future'),
    c('missing exp', await token(key, { drop: ['exp'] }), 'exp_missing'),
    c(
      'exp 1e999',
      await signRaw(key, JSON.stringify(baseHeader), JSON.stringify(claims).replace(/"exp":\d+/, '"exp":1e999')),
      'exp_missing',
    ),
    c('missing sub', await token(key, { drop: ['sub'] }), 'sub_missing'),
    c('missing jti', await token(key, { drop: ['jti'] }), 'jti_missing'),
    c('wrong iss', await token(key, { claims: { iss: 'https://attacker.test' } }), 'bad_issuer'),
    c('wrong aud', await token(key, { claims: { aud: 'https://attacker.test' } }), 'bad_audience'),
    c('audience array holding ours', await token(key, { claims: { aud: [AUDIENCE, 'gateway:sbx-2'] } }), 'bad_audience'),
    c("another sandbox's audience", await token(key, { claims: { aud: 'gateway:sbx-2' } }), 'bad_audience'),
    c('wrong typ', await header({ typ: 'JWT' }), 'invalid_typ'),
    c('no typ', await signRaw(key, JSON.stringify({ alg: 'EdDSA', kid: key.kid }), JSON.stringify(claims)), 'invalid_typ'),
    c('signature of another token', `${gh}.${gp}.${other.split('.')[2]}`, 'bad_signature'),
    c('claims swapped under a valid signature', `${gh}.${enc({ ...claims, sub: 'admin' })}.${gs}`, 'bad_signature'),
    c('truncated signature', good.slice(0, -10), 'bad_signature'),
    c('truncated to two segments', `${gh}.${gp}`, 'malformed_token'),
    c('extra segments', `${good}.${gs}`, 'malformed_token'),
    c('five segments (JWE shape)', `${gh}.${gp}.${gs}.${gs}.${gs}`, 'malformed_token'),
    c('non-base64url characters (+ and /)', `${gh}.${gp.slice(0, 8)}+/${gp.slice(10)}.${gs}`, 'malformed_token'),
    c('base64 padding', `${gh}.${gp}==.${gs}`, 'malformed_token'),
    c('non-canonical base64url (unused bits set)', nonCanonical, 'malformed_token'),
    c('characters outside token68', `${gh}.${gp}!.${gs}`, 'malformed_token'),
    c('claims set that is a JSON array', await signRaw(key, JSON.stringify(baseHeader), JSON.stringify([claims])), 'malformed_token'),
    c('claims set that is a JSON string', await signRaw(key, JSON.stringify(baseHeader), '"hello"'), 'malformed_token'),
    c('header that is JSON null', `${b64('null')}.${gp}.${gs}`, 'malformed_token'),
    c('claims set not UTF-8', `${enc(baseHeader)}.${b64(new Uint8Array([0x7b, 0xff, 0x7d]))}.${fakeSig}`, 'malformed_token'),
    c(
      'duplicate claim names (aud twice)',
      await signRaw(key, JSON.stringify(baseHeader), JSON.stringify(claims).replace('{', '{"aud":"gateway:sbx-2",')),
      'duplicate_member',
    ),
    c(
      'duplicate claim names spelled with escapes',
      await signRaw(key, JSON.stringify(baseHeader), JSON.stringify(claims).replace('{', '{"\\u0061ud":"gateway:sbx-2",')),
      'duplicate_member',
    ),
    c(
      'duplicate header names (alg twice)',
      await signRaw(key, `{"alg":"none",${JSON.stringify(baseHeader).slice(1)}`, JSON.stringify(claims)),
      'duplicate_member',
    ),
    c('1 MiB header', `${b64(JSON.stringify({ ...baseHeader, pad: 'p'.repeat(1 << 20) }))}.${gp}.${gs}`, 'token_too_large'),
    c('token just over 8 KiB', await token(key, { claims: { pad: 'p'.repeat(8 * 1024) } }), 'token_too_large'),
    { name: 'empty bearer', authorization: ['Bearer '], code: 'missing_token' },
    { name: 'no Authorization header', authorization: [], code: 'missing_token' },
    { name: 'Basic scheme', authorization: ['Basic dXNlcjpwYXNzd29yZA=='], code: 'invalid_scheme' },
    { name: 'Token scheme', authorization: [`Token ${good}`], code: 'invalid_scheme' },
    { name: 'no scheme, bare token', authorization: [good], code: 'invalid_scheme' },
    { name: 'two Authorization headers', authorization: [`Bearer ${good}`, `Bearer ${good}`], code: 'multiple_authorization' },
    { name: 'two credentials in one header', authorization: [`Bearer ${good}, Bearer ${good}`], code: 'multiple_authorization' },
    { name: 'space inside the token', authorization: [`Bearer ${gh}. ${gp}.${gs}`], code: 'malformed_token' },
  ];
}
