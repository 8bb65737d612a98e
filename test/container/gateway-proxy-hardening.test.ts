/**
 * Issue 11's findings on the verifying proxy, each reproduced against the real proxy in-process
 * between a real JWKS server and a recording upstream on 127.0.0.1 (keys generated at set-up):
 * 7 agent tokens refused (user tokens only), 8 client identity/address headers never forwarded,
 * 10 only WebSocket upgrades tunnelled, 11 (the in-process part) the header size bound keeps the
 * RFC 6750 answer for big tokens. The memory count of finding 11 is in gateway-proxy-memory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { MAX_HEADER_BYTES } from '../../container/lib/proxy/server.js';
import type { RunningProxy } from '../../container/lib/proxy/start.js';
import {
  CLIENT_IP,
  captureLog,
  ISSUER,
  type JwksServer,
  makeKey,
  rawRequest,
  type SeenRequest,
  startJwksServer,
  startProxy,
  startUpstream,
  type TestKey,
  token,
  type Upstream,
  writeCredentials,
} from './gateway-proxy-fixtures.js';

const GATEWAY_TOKEN = 'gw-hardening-value-0123456789';
/** Longest a refused exchange may take before the proxy closes the connection (noisy machine). */
const CLOSE_WITHIN_MS = 5_000;

let key: TestKey;
let jwks: JwksServer;
let upstream: Upstream;
let proxy: RunningProxy;
let dir: string;
const logs = captureLog();

beforeAll(async () => {
  key = await makeKey();
  jwks = await startJwksServer([key.publicJwk]);
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'gateway-proxy-hardening-'));
  writeCredentials(dir, { GATEWAY_TOKEN }, 'v1');
  proxy = await startProxy(
    { jwksUrl: jwks.url, upstream: upstream.url, credentialsFile: join(dir, 'credentials.json') },
    { log: logs.log },
  );
});

afterAll(async () => {
  await proxy?.close();
  await upstream?.close();
  await jwks?.close();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  upstream.hits = 0;
  upstream.requests.length = 0;
  upstream.upgrades.length = 0;
});

const CHALLENGE = (code: string) => `Bearer error="invalid_token", error_description="${code}"`;
const challengeOf = (head: string) => /^WWW-Authenticate: (.*)$/im.exec(head)?.[1];
const statusOf = (data: string) => Number(data.split(' ', 2)[1]);

/**
 * Writes `text` as is (no header added) and collects everything until the proxy closes the
 * connection: for answers that must end the connection.
 */
function exchangeUntilClose(text: string): Promise<{ status: number; head: string; body: string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(proxy.port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`the proxy did not close the connection within ${CLOSE_WITHIN_MS} ms; got ${JSON.stringify(data.slice(0, 200))}`));
    }, CLOSE_WITHIN_MS);
    sock.on('data', (d: Buffer) => (data += d.toString('latin1')));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(timer);
      const [head = '', body = ''] = data.split('\r\n\r\n', 2);
      resolve({ status: statusOf(head), head, body });
    });
    sock.write(text);
  });
}

/** Writes `text` and resolves with the answer's head as soon as it is complete (101 keeps the socket open). */
function exchangeHead(text: string): Promise<{ status: number; head: string; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(proxy.port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('no answer head'));
    }, CLOSE_WITHIN_MS);
    sock.on('data', (d: Buffer) => {
      data += d.toString('latin1');
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) return;
      clearTimeout(timer);
      resolve({ status: statusOf(data), head: data.slice(0, end), socket: sock });
    });
    sock.on('error', reject);
    sock.write(text);
  });
}

const request = (lines: string[], body = '') => `${lines.join('\r\n')}\r\n\r\n${body}`;
const wsHandshake = (path: string, extra: string[]) => [
  `GET ${path} HTTP/1.1`,
  `Host: 127.0.0.1:${proxy.port}`,
  'Upgrade: websocket',
  'Connection: Upgrade',
  'Sec-WebSocket-Version: 13',
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
  ...extra,
];

describe('finding 7: user access tokens only', () => {
  /** An agent token as src/issuer/tokens.ts mintAgentToken writes it: scope agent, sub the sandbox, cnf. */
  const agentClaims = { sub: 'sbx-1', client_id: 'sbx-1', scope: 'agent', cnf: { jkt: 'thumbprint-of-the-bootstrap-key' } };

  it('finding 7: refuses scope agent tokens with 401 insufficient_scope, on HTTP and on WebSocket upgrades; the upstream is never reached', async () => {
    const t = await token(key, { claims: agentClaims });
    // Twice: the first sighting (verify) and the verified-token cache hit take different paths.
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${proxy.url}/api/x`, { headers: { Authorization: `Bearer ${t}` } });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe(CHALLENGE('insufficient_scope'));
      expect(await res.json()).toEqual({ error: 'invalid_token', error_description: 'insufficient_scope' });
    }

    const ws = await exchangeUntilClose(request(wsHandshake('/ws', [`Authorization: Bearer ${t}`])));
    expect(ws.status).toBe(401);
    expect(challengeOf(ws.head)).toBe(CHALLENGE('insufficient_scope'));
    expect(ws.head + ws.body).not.toContain(t.split('.')[2]);

    expect(upstream.hits).toBe(0);
    expect(logs.lines).toContainEqual(expect.objectContaining({ event: 'request_rejected', code: 'insufficient_scope' }));
    expect(logs.text()).not.toContain(t.split('.')[2]);
  });

  it('finding 7: admits only a scope that names gateway (space-delimited, RFC 9068) and never agent', async () => {
    const cases: [string, Record<string, unknown> | undefined, string[] | undefined, number][] = [
      ['scope gateway (what mintAccessToken writes)', { scope: 'gateway' }, undefined, 200],
      ['gateway among other scopes', { scope: 'openid gateway' }, undefined, 200],
      ['no scope claim', undefined, ['scope'], 401],
      ['empty scope', { scope: '' }, undefined, 401],
      ['another scope', { scope: 'admin' }, undefined, 401],
      ['a prefix of gateway is not gateway', { scope: 'gateway-admin' }, undefined, 401],
      ['gateway and agent together', { scope: 'gateway agent' }, undefined, 401],
      ['scope as a JSON array', { scope: ['gateway'] }, undefined, 401],
      ['scope in upper case', { scope: 'GATEWAY' }, undefined, 401],
    ];
    const got: [string, number][] = [];
    for (const [name, claims, drop] of cases) {
      const res = await fetch(`${proxy.url}/x`, { headers: { Authorization: `Bearer ${await token(key, { claims, drop })}` } });
      await res.arrayBuffer();
      got.push([name, res.status]);
      if (res.status === 401) expect(res.headers.get('www-authenticate'), name).toBe(CHALLENGE('insufficient_scope'));
    }
    expect(got).toEqual(cases.map(([name, , , status]) => [name, status]));
    expect(upstream.hits).toBe(2);
  });
});

describe('finding 8: client identity and address headers', () => {
  /** The reviewer's headers and their relatives: each must be dropped before the gateway. */
  const FORGED: [string, string][] = [
    ['X-Forwarded-User', 'mallory'],
    ['X_Forwarded_User', 'mallory'],
    ['x-forwarded_user', 'mallory'],
    ['X-Forwarded-For', '203.0.113.66'],
    ['X_Forwarded_For', '203.0.113.66'],
    ['X-Forwarded-Host', 'evil.example'],
    ['X-Forwarded-Proto', 'gopher'],
    ['X-Forwarded-Port', '443'],
    ['X-Forwarded-Prefix', '/admin'],
    ['X-Forwarded-Email', 'mallory@evil.example'],
    ['Forwarded', 'for=203.0.113.66;host=evil.example;proto=https'],
    ['X-Real-IP', '203.0.113.66'],
    ['X_Real_IP', '203.0.113.66'],
    ['Remote-User', 'admin'],
    ['Remote_User', 'admin'],
    ['Cf-Access-Authenticated-User-Email', 'admin@evil.example'],
    ['Cf-Access-Jwt-Assertion', 'eyJforged.eyJforged.sig'],
    ['CF_Access_Client_Id', 'forged'],
    ['Cf-Connecting-IP', '203.0.113.66'],
    ['CF_Connecting_IP', '203.0.113.66'],
    ['X-OpenClaw-User', 'admin'],
    ['x-openclaw-scopes', 'operator.admin'],
    ['X_OpenClaw_Role', 'admin'],
    ['Proxy_Authorization', 'Basic Zm9vOmJhcg=='],
    ['Transfer_Encoding', 'chunked'],
  ];
  const KEPT: [string, string][] = [
    ['X-Custom', 'kept'],
    ['X_Custom_Underscore', 'kept too'],
  ];
  const FORGED_VALUES = ['mallory', '203.0.113.66', 'evil.example', 'admin', 'forged', 'operator.admin', 'Zm9vOmJhcg==', 'gopher'];
  const fold = (n: string) => n.toLowerCase().replaceAll('_', '-');

  function expectClean(seen: SeenRequest, user: string): void {
    const names = seen.rawHeaders.filter((_, i) => i % 2 === 0);
    const folded = names.map(fold);
    // What the proxy sets, once each, with its own values.
    expect(seen.headers['x-forwarded-user']).toBe(user);
    expect(folded.filter((n) => n === 'x-forwarded-user')).toHaveLength(1);
    // X-Forwarded-For is the token's client_ip (never the TCP peer); Proto and Host are the
    // issuer's (the Worker's public URL), never the Host the proxy was sent.
    expect(seen.headers['x-forwarded-for']).toBe(CLIENT_IP);
    expect(folded.filter((n) => n === 'x-forwarded-for')).toHaveLength(1);
    expect(seen.headers['x-forwarded-host']).toBe(new URL(ISSUER).host);
    expect(seen.headers['x-forwarded-proto']).toBe('https');
    expect(seen.headers.authorization).toBe(`Bearer ${GATEWAY_TOKEN}`);
    // Nothing of the forged ones, under any spelling.
    for (const [name] of FORGED) {
      const f = fold(name);
      if (['x-forwarded-user', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto'].includes(f)) continue;
      expect(folded, name).not.toContain(f);
    }
    expect(names.filter((n) => n.includes('_'))).toEqual(['X_Custom_Underscore']);
    expect(folded.filter((n) => n.startsWith('x-forwarded-')).sort()).toEqual([
      'x-forwarded-for',
      'x-forwarded-host',
      'x-forwarded-proto',
      'x-forwarded-user',
    ]);
    const values = seen.rawHeaders.filter((_, i) => i % 2 === 1).join('\n');
    for (const v of FORGED_VALUES) expect(values, v).not.toContain(v);
    expect(seen.headers['x-custom']).toBe('kept');
    expect(seen.headers.x_custom_underscore).toBe('kept too');
  }

  it("finding 8: drops every client-sent identity/address header (any case, _ for -) on HTTP; X-Forwarded-For is the token's client_ip only", async () => {
    const t = await token(key, { claims: { sub: 'alice' } });
    const res = await rawRequest(proxy.port, [
      'GET /api/x HTTP/1.1',
      `Host: 127.0.0.1:${proxy.port}`,
      `Authorization: Bearer ${t}`,
      ...[...FORGED, ...KEPT].map(([n, v]) => `${n}: ${v}`),
    ]);
    expect(res.status).toBe(200);
    expect(upstream.requests).toHaveLength(1);
    expectClean(upstream.requests[0]!, 'alice');
  });

  it('finding 8: the same on WebSocket upgrades', async () => {
    const t = await token(key, { claims: { sub: 'bob' } });
    const headers = Object.fromEntries([...FORGED.filter(([n]) => n !== 'Transfer_Encoding'), ...KEPT, ['Authorization', `Bearer ${t}`]]);
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/ws`, { headers });
    const first = await new Promise<string>((resolve, reject) => {
      ws.once('message', (d) => resolve(d.toString()));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, r) => reject(new Error(`status ${r.statusCode}`)));
    });
    expect(JSON.parse(first)).toEqual({ hello: 'bob', authorization: `Bearer ${GATEWAY_TOKEN}` });
    ws.close();
    expect(upstream.upgrades).toHaveLength(1);
    const seen = upstream.upgrades[0]!;
    expect(seen.headers.upgrade).toBe('websocket');
    // Transfer_Encoding aside (a body would refuse the upgrade, finding 10), the same check.
    expectClean(seen, 'bob');
  });
});

describe('finding 10: upgrade policy', () => {
  it('finding 10: an authenticated Upgrade other than websocket (h2c etc.) is refused with 400 before the upstream, and the connection closes', async () => {
    const t = await token(key);
    const auth = `Authorization: Bearer ${t}`;
    const host = `Host: 127.0.0.1:${proxy.port}`;
    const cases: [string, string[], string][] = [
      [
        'h2c',
        ['GET /ws HTTP/1.1', host, 'Upgrade: h2c', 'Connection: Upgrade, HTTP2-Settings', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA', auth],
        'unsupported_upgrade',
      ],
      ['h2c on another path', ['GET / HTTP/1.1', host, 'Upgrade: h2c', 'Connection: Upgrade', auth], 'unsupported_upgrade'],
      [
        'websocket, h2c',
        [
          'GET /ws HTTP/1.1',
          host,
          'Upgrade: websocket, h2c',
          'Connection: Upgrade',
          'Sec-WebSocket-Version: 13',
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
          auth,
        ],
        'unsupported_upgrade',
      ],
      [
        'h2c, websocket',
        [
          'GET /ws HTTP/1.1',
          host,
          'Upgrade: h2c, websocket',
          'Connection: Upgrade',
          'Sec-WebSocket-Version: 13',
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
          auth,
        ],
        'unsupported_upgrade',
      ],
      [
        'two Upgrade headers',
        [
          'GET /ws HTTP/1.1',
          host,
          'Upgrade: websocket',
          'Upgrade: h2c',
          'Connection: Upgrade',
          'Sec-WebSocket-Version: 13',
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
          auth,
        ],
        'unsupported_upgrade',
      ],
      ['TLS/1.0 (RFC 2817)', ['GET / HTTP/1.1', host, 'Upgrade: TLS/1.0', 'Connection: Upgrade', auth], 'unsupported_upgrade'],
      [
        'websocket/13 with a version',
        [
          'GET /ws HTTP/1.1',
          host,
          'Upgrade: websocket/13',
          'Connection: Upgrade',
          'Sec-WebSocket-Version: 13',
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
          auth,
        ],
        'unsupported_upgrade',
      ],
      ['h2c without Connection: upgrade (plain HTTP to Node)', ['GET / HTTP/1.1', host, 'Upgrade: h2c', auth], 'unsupported_upgrade'],
    ];
    for (const [name, lines, code] of cases) {
      const res = await exchangeUntilClose(request(lines));
      expect([name, res.status], res.head).toEqual([name, 400]);
      expect(JSON.parse(res.body), name).toMatchObject({ error: code });
    }
    expect(upstream.hits).toBe(0);
  });

  it('finding 10: a websocket upgrade without its required headers is refused before the upstream', async () => {
    const t = await token(key);
    const auth = `Authorization: Bearer ${t}`;
    const host = `Host: 127.0.0.1:${proxy.port}`;
    const cases: [string, string[], number, string][] = [
      [
        'no Sec-WebSocket-Key',
        ['GET /ws HTTP/1.1', host, 'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Version: 13', auth],
        400,
        'invalid_websocket_handshake',
      ],
      [
        'a key that is not 16 bytes',
        [
          'GET /ws HTTP/1.1',
          host,
          'Upgrade: websocket',
          'Connection: Upgrade',
          'Sec-WebSocket-Version: 13',
          'Sec-WebSocket-Key: c2hvcnQ=',
          auth,
        ],
        400,
        'invalid_websocket_handshake',
      ],
      [
        'two keys',
        [
          'GET /ws HTTP/1.1',
          host,
          'Upgrade: websocket',
          'Connection: Upgrade',
          'Sec-WebSocket-Version: 13',
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
          auth,
        ],
        400,
        'invalid_websocket_handshake',
      ],
      [
        'no Sec-WebSocket-Version',
        ['GET /ws HTTP/1.1', host, 'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', auth],
        426,
        'unsupported_websocket_version',
      ],
      [
        'version 8',
        [
          'GET /ws HTTP/1.1',
          host,
          'Upgrade: websocket',
          'Connection: Upgrade',
          'Sec-WebSocket-Version: 8',
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
          auth,
        ],
        426,
        'unsupported_websocket_version',
      ],
      [
        'POST',
        [
          'POST /ws HTTP/1.1',
          host,
          'Upgrade: websocket',
          'Connection: Upgrade',
          'Sec-WebSocket-Version: 13',
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
          'Content-Length: 0',
          auth,
        ],
        400,
        'invalid_websocket_handshake',
      ],
      [
        'HTTP/1.0',
        [
          'GET /ws HTTP/1.0',
          host,
          'Upgrade: websocket',
          'Connection: Upgrade',
          'Sec-WebSocket-Version: 13',
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
          auth,
        ],
        400,
        'invalid_websocket_handshake',
      ],
    ];
    for (const [name, lines, status, code] of cases) {
      const res = await exchangeUntilClose(request(lines));
      expect([name, res.status], res.head).toEqual([name, status]);
      expect(JSON.parse(res.body), name).toMatchObject({ error: code });
      if (status === 426) expect(res.head).toMatch(/^Sec-WebSocket-Version: 13$/im);
    }
    expect(upstream.hits).toBe(0);
  });

  it('finding 10: upgrade requests with a body (Content-Length > 0 or Transfer-Encoding) are refused before the upstream', async () => {
    const t = await token(key);
    const auth = `Authorization: Bearer ${t}`;
    const cases: [string, string][] = [
      ['Content-Length: 5', request(wsHandshake('/ws', [auth, 'Content-Length: 5']), 'hello')],
      ['Transfer-Encoding: chunked', request(wsHandshake('/ws', [auth, 'Transfer-Encoding: chunked']), '5\r\nhello\r\n0\r\n\r\n')],
      [
        'h2c with a body',
        request(
          ['POST / HTTP/1.1', `Host: 127.0.0.1:${proxy.port}`, 'Upgrade: h2c', 'Connection: Upgrade', 'Content-Length: 5', auth],
          'hello',
        ),
      ],
    ];
    for (const [name, text] of cases) {
      const res = await exchangeUntilClose(text);
      expect([name, res.status], res.head).toEqual([name, 400]);
      expect(JSON.parse(res.body).error, name).toMatch(/^(upgrade_with_body|unsupported_upgrade)$/);
    }
    const cl = await exchangeUntilClose(request(wsHandshake('/ws', [auth, 'Content-Length: 5']), 'hello'));
    expect(JSON.parse(cl.body)).toMatchObject({ error: 'upgrade_with_body' });
    expect(upstream.hits).toBe(0);
  });

  it('finding 10: a refused h2c upgrade is not followed by anything reaching the upstream on that connection', async () => {
    const t = await token(key);
    // The reviewer's sequence: the upgrade, then raw requests with no token and a forged user.
    const follow = request(['GET /after HTTP/1.1', 'Host: x', 'X-Forwarded-User: admin']);
    const res = await exchangeUntilClose(
      request([
        'GET / HTTP/1.1',
        `Host: 127.0.0.1:${proxy.port}`,
        'Upgrade: h2c',
        'Connection: Upgrade, HTTP2-Settings',
        'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA',
        `Authorization: Bearer ${t}`,
      ]) +
        follow +
        follow,
    );
    expect(res.status).toBe(400);
    expect(res.head + res.body).not.toContain('HTTP/1.1 101');
    expect(upstream.hits).toBe(0);
  });

  it('finding 10: a complete websocket handshake is tunnelled, Upgrade matched case-insensitively, with Upgrade: websocket upstream', async () => {
    const t = await token(key, { claims: { sub: 'carol' } });
    const lines = wsHandshake('/ws', [`Authorization: Bearer ${t}`]).map((l) =>
      l === 'Upgrade: websocket' ? 'Upgrade: WebSocket' : l === 'Connection: Upgrade' ? 'Connection: keep-alive, Upgrade' : l,
    );
    const { status, socket } = await exchangeHead(request(lines));
    socket.destroy();
    expect(status).toBe(101);
    expect(upstream.upgrades).toHaveLength(1);
    expect(upstream.upgrades[0]!.rawHeaders.filter((_, i, a) => i % 2 === 1 && a[i - 1]!.toLowerCase() === 'upgrade')).toEqual([
      'websocket',
    ]);
  });
});

describe('finding 11: header size bound (in-process part)', () => {
  it('finding 11: a token over 8 KiB within the header limit still gets RFC 6750 token_too_large; headers over the limit get 431; neither reaches the upstream', async () => {
    const good = await token(key);
    const big = `${good.split('.')[0]}.${'A'.repeat(40 * 1024)}.${good.split('.')[2]}`;
    expect(big.length).toBeLessThan(MAX_HEADER_BYTES - 1024);
    const res = await rawRequest(proxy.port, ['GET / HTTP/1.1', 'Host: x', `Authorization: Bearer ${big}`]);
    expect(res.status).toBe(401);
    expect(challengeOf(res.head)).toBe(CHALLENGE('token_too_large'));

    const huge = await exchangeUntilClose(request(['GET / HTTP/1.1', 'Host: x', `Authorization: Bearer ${'A'.repeat(MAX_HEADER_BYTES)}`]));
    expect(huge.status).toBe(431);
    const many = await exchangeUntilClose(
      request([
        'GET / HTTP/1.1',
        'Host: x',
        `Authorization: Bearer ${good}`,
        ...Array.from({ length: 40 }, (_, i) => `X-Pad-${i}: ${'p'.repeat(2048)}`),
      ]),
    );
    expect(many.status).toBe(431);
    expect(MAX_HEADER_BYTES).toBeLessThanOrEqual(64 * 1024);
    expect(upstream.hits).toBe(0);
  });
});
