/**
 * Issue 13 item 4 (docs/architecture.md, "Proxy headers to the gateway"): the identity the gateway is told cannot be forged by anyone between
 * the user and the gateway. The real proxy in-process between a real JWKS server and a recording
 * upstream on 127.0.0.1: X-Forwarded-For is the token's `client_ip` and nothing else, whatever a
 * client sent (X-Forwarded-For, Forwarded, X-Real-IP, x-openclaw-*), for HTTP and WebSocket
 * upgrades; X-Forwarded-User is `sub`; X-Forwarded-Proto and -Host are the issuer's (the Worker's
 * public URL). A token without `client_ip` is admitted with no X-Forwarded-For; one whose
 * `client_ip` is no IP literal is refused.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
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

const GATEWAY_TOKEN = 'gw-attribution-value-0123456789';
/** The local stack's issuer: a proxy pinned to it tells the gateway http and 127.0.0.1:8787. */
const LOCAL_ISSUER = 'http://127.0.0.1:8787';

let key: TestKey;
let jwks: JwksServer;
let upstream: Upstream;
let proxy: RunningProxy;
let local: RunningProxy;
let dir: string;
const logs = captureLog();

beforeAll(async () => {
  key = await makeKey();
  jwks = await startJwksServer([key.publicJwk]);
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'gateway-proxy-attribution-'));
  writeCredentials(dir, { GATEWAY_TOKEN }, 'v1');
  const credentialsFile = join(dir, 'credentials.json');
  proxy = await startProxy({ jwksUrl: jwks.url, upstream: upstream.url, credentialsFile }, { log: logs.log });
  local = await startProxy({ jwksUrl: jwks.url, upstream: upstream.url, credentialsFile, issuer: LOCAL_ISSUER });
});

afterAll(async () => {
  await proxy?.close();
  await local?.close();
  await upstream?.close();
  await jwks?.close();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  upstream.hits = 0;
  upstream.requests.length = 0;
  upstream.upgrades.length = 0;
});

/** What a client (or anything between it and the proxy) could write to speak for the proxy. */
const FORGED: [string, string][] = [
  ['X-Forwarded-For', '203.0.113.66'],
  ['X-Forwarded-For', '127.0.0.1'],
  ['x_forwarded_for', '203.0.113.67'],
  ['Forwarded', 'for=203.0.113.68;proto=https;host=evil.example'],
  ['X-Real-IP', '203.0.113.69'],
  ['X-Forwarded-User', 'mallory'],
  ['X-Forwarded-Host', 'evil.example'],
  ['X-Forwarded-Proto', 'gopher'],
  ['x-openclaw-scopes', 'operator.admin'],
  ['X-OpenClaw-User', 'mallory'],
  ['CF-Connecting-IP', '203.0.113.70'],
];
const FORGED_VALUES = ['203.0.113.', 'evil.example', 'mallory', 'gopher', 'operator.admin'];

/** Every value of one header as the upstream received it, in order. */
function valuesOf(seen: SeenRequest, name: string): string[] {
  return seen.rawHeaders.filter((_, i, a) => i % 2 === 1 && a[i - 1]!.toLowerCase() === name);
}

/** The four identity headers, once each, as the proxy built them; nothing a client forged. */
function expectAttributed(seen: SeenRequest, o: { user: string; clientIp: string | undefined; proto: string; host: string }): void {
  expect(valuesOf(seen, 'x-forwarded-for')).toEqual(o.clientIp === undefined ? [] : [o.clientIp]);
  expect(valuesOf(seen, 'x-forwarded-user')).toEqual([o.user]);
  expect(valuesOf(seen, 'x-forwarded-proto')).toEqual([o.proto]);
  expect(valuesOf(seen, 'x-forwarded-host')).toEqual([o.host]);
  const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase().replaceAll('_', '-'));
  for (const n of ['forwarded', 'x-real-ip', 'x-openclaw-scopes', 'x-openclaw-user', 'cf-connecting-ip']) expect(names, n).not.toContain(n);
  const values = seen.rawHeaders.filter((_, i) => i % 2 === 1).join('\n');
  for (const v of FORGED_VALUES) expect(values, v).not.toContain(v);
}

async function httpThrough(p: RunningProxy, t: string, path = '/api/x'): Promise<{ status: number; body: string }> {
  return rawRequest(p.port, [
    `GET ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${p.port}`,
    `Authorization: Bearer ${t}`,
    ...FORGED.map(([n, v]) => `${n}: ${v}`),
  ]);
}

/** Opens a WebSocket through the proxy with the forged headers; resolves with the upstream's hello. */
async function wsThrough(p: RunningProxy, t: string): Promise<{ hello: string; authorization: string }> {
  const headers: Record<string, string> = { Authorization: `Bearer ${t}` };
  // ws takes one value per name: the first of each forged name, which is the one a gateway reads.
  for (const [n, v] of FORGED) headers[n] ??= v;
  const ws = new WebSocket(`ws://127.0.0.1:${p.port}/ws`, { headers });
  try {
    const first = await new Promise<string>((resolve, reject) => {
      ws.once('message', (d) => resolve(d.toString()));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, r) => reject(new Error(`status ${r.statusCode}`)));
    });
    return JSON.parse(first) as { hello: string; authorization: string };
  } finally {
    ws.close();
  }
}

/** Status of an upgrade the proxy refuses (or 101). */
async function wsStatus(p: RunningProxy, t: string): Promise<number> {
  const ws = new WebSocket(`ws://127.0.0.1:${p.port}/ws`, { headers: { Authorization: `Bearer ${t}`, 'X-Forwarded-For': '203.0.113.66' } });
  return new Promise<number>((resolve) => {
    ws.once('unexpected-response', (_req, r) => resolve(r.statusCode ?? 0));
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('error', () => resolve(0));
  });
}

const PUBLIC = { proto: 'https', host: new URL(ISSUER).host };

describe('issue 13 item 4: X-Forwarded-For is the verified client_ip, whatever the client sent', () => {
  it('HTTP: X-Forwarded-For equals the token client_ip (IPv4 and IPv6), never the TCP peer or a forged value; X-Forwarded-User is sub', async () => {
    for (const clientIp of [CLIENT_IP, '2001:db8::7']) {
      const t = await token(key, { claims: { sub: 'alice', client_ip: clientIp } });
      const res = await httpThrough(proxy, t);
      expect(res.status, clientIp).toBe(200);
      expectAttributed(upstream.requests.at(-1)!, { user: 'alice', clientIp, ...PUBLIC });
    }
    expect(upstream.requests).toHaveLength(2);
  });

  it('WebSocket upgrade: the same headers, rebuilt the same way', async () => {
    for (const clientIp of [CLIENT_IP, '2001:db8::7']) {
      const t = await token(key, { claims: { sub: 'bob', client_ip: clientIp } });
      expect(await wsThrough(proxy, t)).toEqual({ hello: 'bob', authorization: `Bearer ${GATEWAY_TOKEN}` });
      expectAttributed(upstream.upgrades.at(-1)!, { user: 'bob', clientIp, ...PUBLIC });
    }
    expect(upstream.upgrades).toHaveLength(2);
  });

  it('a client_ip in another valid spelling (upper case, uncompressed, IPv4-mapped) is forwarded in canonical form', async () => {
    const cases: [string, string][] = [
      ['2001:DB8:0:0:0:0:0:7', '2001:db8::7'],
      ['::ffff:198.51.100.24', '198.51.100.24'],
    ];
    for (const [sent, forwarded] of cases) {
      expect((await httpThrough(proxy, await token(key, { claims: { client_ip: sent } }))).status).toBe(200);
      expect(valuesOf(upstream.requests.at(-1)!, 'x-forwarded-for'), sent).toEqual([forwarded]);
    }
  });

  it("X-Forwarded-Proto and -Host are the issuer's own: https and its host in production, http and 127.0.0.1:8787 on the local stack", async () => {
    const t = await token(key, { claims: { iss: LOCAL_ISSUER, sub: 'dev@example.com', client_ip: '192.0.2.1' } });
    expect((await httpThrough(local, t)).status).toBe(200);
    expectAttributed(upstream.requests.at(-1)!, { user: 'dev@example.com', clientIp: '192.0.2.1', proto: 'http', host: '127.0.0.1:8787' });
    expect((await wsThrough(local, t)).hello).toBe('dev@example.com');
    expectAttributed(upstream.upgrades.at(-1)!, { user: 'dev@example.com', clientIp: '192.0.2.1', proto: 'http', host: '127.0.0.1:8787' });
  });
});

describe('issue 13 item 4: tokens without a usable client_ip', () => {
  it('a token without client_ip (a Worker from before the claim) is still verified and forwarded, with no X-Forwarded-For at all, on HTTP and WebSocket; the log says so once', async () => {
    const t = await token(key, { claims: { sub: 'carol' }, drop: ['client_ip'] });
    expect((await httpThrough(proxy, t)).status).toBe(200);
    expectAttributed(upstream.requests.at(-1)!, { user: 'carol', clientIp: undefined, ...PUBLIC });
    expect(await wsThrough(proxy, t)).toEqual({ hello: 'carol', authorization: `Bearer ${GATEWAY_TOKEN}` });
    expectAttributed(upstream.upgrades.at(-1)!, { user: 'carol', clientIp: undefined, ...PUBLIC });
    expect((await httpThrough(proxy, t)).status).toBe(200);
    expect(logs.lines.filter((l) => l.event === 'client_ip_missing')).toHaveLength(1);
  });

  it('a client_ip that is no IP literal is refused (401 invalid_claim) on HTTP and WebSocket; the upstream is never reached', async () => {
    const junk: unknown[] = [
      'junk',
      '',
      '203.0.113.7, 198.51.100.1',
      '203.0.113.7:443',
      '[2001:db8::7]',
      'fe80::1%eth0',
      'localhost',
      3232235777,
      null,
      ['198.51.100.23'],
      { ip: '198.51.100.23' },
    ];
    for (const value of junk) {
      const t = await token(key, { claims: { client_ip: value } });
      const res = await fetch(`${proxy.url}/api/x`, { headers: { Authorization: `Bearer ${t}`, 'X-Forwarded-For': '203.0.113.66' } });
      expect([JSON.stringify(value), res.status]).toEqual([JSON.stringify(value), 401]);
      expect(res.headers.get('www-authenticate')).toBe('Bearer error="invalid_token", error_description="invalid_claim"');
      expect(await res.json()).toEqual({ error: 'invalid_token', error_description: 'invalid_claim' });
      expect(await wsStatus(proxy, t), JSON.stringify(value)).toBe(401);
    }
    expect(upstream.hits).toBe(0);
  });
});
