/**
 * The verifying proxy in-process, between a real JWKS server and a counting upstream on
 * 127.0.0.1: what goes upstream (Authorization replaced, X-Forwarded-User overwritten, hop-by-hop
 * fields dropped, bodies streamed), /healthz, credentials.json rotation under traffic, WebSocket
 * tunnels, and the failure answers (401, 502, 503) with nothing leaked.
 */
import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { RunningProxy } from '../../container/lib/proxy/start.js';
import {
  AUDIENCE,
  CLIENT_IP,
  captureLog,
  type JwksServer,
  makeKey,
  rawRequest,
  startJwksServer,
  startProxy,
  startUpstream,
  type TestKey,
  token,
  type Upstream,
  writeCredentials,
} from './gateway-proxy-fixtures.js';

const GATEWAY_TOKEN_V1 = 'gw-token-v1-0123456789abcdef';

let key: TestKey;
let jwks: JwksServer;
let upstream: Upstream;
let dir: string;
let credentialsFile: string;
let proxy: RunningProxy;
let logs: ReturnType<typeof captureLog>;

beforeAll(async () => {
  key = await makeKey();
});

beforeEach(async () => {
  jwks = await startJwksServer([key.publicJwk]);
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'gateway-proxy-'));
  credentialsFile = join(dir, 'credentials.json');
  writeCredentials(dir, { GATEWAY_TOKEN: GATEWAY_TOKEN_V1, OTHER: 'x' }, 'v1');
  logs = captureLog();
  proxy = await startProxy({ jwksUrl: jwks.url, upstream: upstream.url, credentialsFile }, { log: logs.log });
});

afterEach(async () => {
  await proxy.close();
  await upstream.close();
  await jwks.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('forwarding', () => {
  it('replaces Authorization, overwrites X-Forwarded-User, drops hop-by-hop fields, keeps the rest', async () => {
    const t = await token(key, { claims: { sub: 'alice' } });
    const res = await fetch(`${proxy.url}/api/x?q=1`, {
      headers: {
        Authorization: `Bearer ${t}`,
        'X-Forwarded-User': 'mallory',
        'X-Custom': 'kept',
        'Proxy-Authorization': 'Basic Zm9vOmJhcg==',
      },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-upstream')).toBe('yes');
    expect(res.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
    expect(await res.json()).toEqual({
      method: 'GET',
      url: '/api/x?q=1',
      authorization: `Bearer ${GATEWAY_TOKEN_V1}`,
      user: 'alice',
      body: '',
    });
    const seen = upstream.requests.at(-1)!;
    expect(seen.headers['x-custom']).toBe('kept');
    expect(seen.headers['proxy-authorization']).toBeUndefined();
    // The token's client_ip, never the TCP peer (127.0.0.1 here).
    expect(seen.headers['x-forwarded-for']).toBe(CLIENT_IP);
    expect(seen.headers.host).toBe(`127.0.0.1:${upstream.port}`);
    expect(seen.rawHeaders.filter((h) => h.toLowerCase() === 'authorization')).toHaveLength(1);
    expect(seen.rawHeaders.filter((h) => h.toLowerCase() === 'x-forwarded-user')).toHaveLength(1);
    expect(JSON.stringify(seen.rawHeaders)).not.toContain(t);
  });

  it('drops the fields the Connection header names (fetch cannot send those: raw request)', async () => {
    const res = await rawRequest(proxy.port, [
      'GET /hop HTTP/1.1',
      'Host: x',
      `Authorization: Bearer ${await token(key)}`,
      'Connection: X-Secret-Hop',
      'X-Secret-Hop: dropped',
      'X-Other: kept',
    ]);
    expect(res.status).toBe(200);
    const seen = upstream.requests.at(-1)!;
    expect(seen.url).toBe('/hop');
    expect(seen.headers['x-secret-hop']).toBeUndefined();
    expect(seen.headers['x-other']).toBe('kept');
  });

  it('streams request and response bodies, and passes upstream statuses through', async () => {
    const t = await token(key);
    const body = 'x'.repeat(200_000);
    const res = await fetch(`${proxy.url}/upload`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${t}`, 'Content-Type': 'text/plain' },
      body,
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { body: string }).body).toBe(body);
    const teapot = await fetch(`${proxy.url}/status/418`, { headers: { Authorization: `Bearer ${t}` } });
    expect(teapot.status).toBe(418);
    expect(await teapot.text()).toBe('teapot');
  });

  it('a token seen before (a verified-token cache hit, answered without a promise) is forwarded exactly as the first time', async () => {
    const t = await token(key, { claims: { sub: 'alice' } });
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${proxy.url}/api/again`, { headers: { Authorization: `Bearer ${t}`, 'X-Forwarded-User': 'mallory' } });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    expect(upstream.requests).toHaveLength(3);
    const identity = (h: (typeof upstream.requests)[number]['headers']) => [h.authorization, h['x-forwarded-user'], h['x-forwarded-for']];
    for (const seen of upstream.requests) expect(identity(seen.headers)).toEqual([`Bearer ${GATEWAY_TOKEN_V1}`, 'alice', CLIENT_IP]);
  });

  it("passes the upstream's final answer on whole after an informational 103 (Early Hints), which is not passed on", async () => {
    const early = http.createServer((_req, res) => {
      res.writeEarlyHints({ link: '</app.css>; rel=preload; as=style' });
      res.writeHead(200, { 'content-type': 'text/plain', 'x-final': 'yes' });
      res.end('final answer');
    });
    await new Promise<void>((r) => early.listen(0, '127.0.0.1', r));
    const p = await startProxy(
      { jwksUrl: jwks.url, upstream: `http://127.0.0.1:${(early.address() as AddressInfo).port}`, credentialsFile },
      { log: logs.log },
    );
    try {
      const t = await token(key);
      // Twice: the first sighting of the token (verify) and a cache hit take different paths.
      for (let i = 0; i < 2; i++) {
        const res = await fetch(`${p.url}/page`, { headers: { Authorization: `Bearer ${t}` } });
        expect(res.status).toBe(200);
        expect(res.headers.get('x-final')).toBe('yes');
        expect(await res.text()).toBe('final answer');
      }
      expect(logs.lines.filter((l) => l.event === 'upstream_error')).toEqual([]);
    } finally {
      await p.close();
      early.closeAllConnections();
      await new Promise((r) => early.close(r));
    }
  });

  it('accepts the scheme name in any case (RFC 7235): bearer <token>', async () => {
    const res = await fetch(`${proxy.url}/`, { headers: { Authorization: `bearer ${await token(key)}` } });
    expect(res.status).toBe(200);
  });

  it('answers 502 when the upstream is down, naming no token', async () => {
    await upstream.close();
    const t = await token(key);
    const res = await fetch(`${proxy.url}/`, { headers: { Authorization: `Bearer ${t}` } });
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({ error: 'bad_gateway', error_description: 'upstream unreachable' });
    expect(logs.lines).toContainEqual(expect.objectContaining({ event: 'upstream_error' }));
    expect(logs.text()).not.toContain(t);
  });
});

describe('/healthz', () => {
  it('is answered by the proxy, never forwarded: JWKS age and whether the upstream credential is present', async () => {
    await fetch(`${proxy.url}/`, { headers: { Authorization: `Bearer ${await token(key)}` } });
    const hits = upstream.hits;
    const res = await fetch(`${proxy.url}/healthz`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, Record<string, unknown>>;
    expect(body.jwks).toMatchObject({ usable: true, fresh: true, keys: 1, last_error: null });
    expect(typeof body.jwks!.age_seconds).toBe('number');
    expect(body.upstream_credential).toEqual({ name: 'GATEWAY_TOKEN', present: true, version: 'v1' });
    expect(JSON.stringify(body)).not.toContain(GATEWAY_TOKEN_V1);
    expect(upstream.hits).toBe(hits);
  });

  it('turns 503 when the credential is missing or the JWKS was never fetched', async () => {
    unlinkSync(credentialsFile);
    const res = await fetch(`${proxy.url}/healthz`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { upstream_credential: unknown }).upstream_credential).toEqual({
      name: 'GATEWAY_TOKEN',
      present: false,
      reason: 'missing_file',
    });

    await jwks.close();
    const jwksDown = await startProxy({ jwksUrl: jwks.url, upstream: upstream.url, credentialsFile });
    try {
      writeCredentials(dir, { GATEWAY_TOKEN: GATEWAY_TOKEN_V1 }, 'v1');
      const h = await fetch(`${jwksDown.url}/healthz`);
      expect(h.status).toBe(503);
      expect(((await h.json()) as { jwks: unknown }).jwks).toMatchObject({ usable: false, age_seconds: null });
    } finally {
      await jwksDown.close();
    }
  });
});

describe('upstream credential from credentials.json', () => {
  it('a missing credential is 503 for verified requests, and the upstream is not called', async () => {
    writeCredentials(dir, { OTHER: 'x' }, 'v2');
    const hits = upstream.hits;
    const res = await fetch(`${proxy.url}/`, { headers: { Authorization: `Bearer ${await token(key)}` } });
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ error: 'upstream_credential_unavailable', error_description: 'missing_value' });
    expect(upstream.hits).toBe(hits);
  });

  it('rotation under traffic: every request after the change carries the new value, none fails', async () => {
    const t = await token(key);
    const versions = 20;
    let failures = 0;
    const seenAfter: string[] = [];
    for (let v = 2; v <= versions + 1; v++) {
      // Traffic in flight while the file is replaced.
      const inFlight = Array.from({ length: 10 }, () =>
        fetch(`${proxy.url}/`, { headers: { Authorization: `Bearer ${t}` } }).then((r) => {
          if (r.status !== 200) failures++;
          return r.text();
        }),
      );
      const value = `gw-token-v${v}-${'k'.repeat(v % 3)}`;
      writeCredentials(dir, { GATEWAY_TOKEN: value }, `v${v}`);
      await Promise.all(inFlight);
      // Issued after the rename returned: must carry the new value, whatever the watcher has seen.
      const res = await fetch(`${proxy.url}/`, { headers: { Authorization: `Bearer ${t}` } });
      if (res.status !== 200) failures++;
      seenAfter.push(((await res.json()) as { authorization: string }).authorization);
      expect(seenAfter.at(-1)).toBe(`Bearer ${value}`);
    }
    expect(failures).toBe(0);
    expect(seenAfter).toHaveLength(versions);
    expect(logs.text()).not.toMatch(/gw-token-v/);
  });
});

describe('WebSocket', () => {
  function open(url: string, headers: Record<string, string>): Promise<{ ws: WebSocket; first: string }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers });
      ws.once('message', (d) => resolve({ ws, first: d.toString() }));
      ws.once('unexpected-response', (_req, res) =>
        reject(Object.assign(new Error(`status ${res.statusCode}`), { status: res.statusCode, headers: res.headers })),
      );
      ws.once('error', reject);
    });
  }
  const next = (ws: WebSocket) => new Promise<string>((r) => ws.once('message', (d) => r(d.toString())));

  it('carries messages both ways through the proxy, with the upstream credential and user', async () => {
    const { ws, first } = await open(`${proxy.url.replace('http', 'ws')}/ws`, {
      Authorization: `Bearer ${await token(key, { claims: { sub: 'bob' } })}`,
    });
    expect(JSON.parse(first)).toEqual({ hello: 'bob', authorization: `Bearer ${GATEWAY_TOKEN_V1}` });
    for (let i = 0; i < 20; i++) {
      const reply = next(ws);
      ws.send(`m${i}`);
      expect(await reply).toBe(`bob:m${i}`);
    }
    const big = 'y'.repeat(300_000);
    const reply = next(ws);
    ws.send(big);
    expect(await reply).toBe(`bob:${big}`);
    ws.close();
  });

  it('refuses an upgrade without a valid token with 401 and the RFC 6750 challenge; the upstream is not reached', async () => {
    const hits = upstream.hits;
    const cases: Record<string, string>[] = [
      {},
      { Authorization: 'Bearer nope' },
      { Authorization: `Bearer ${await token(key, { claims: { aud: 'gateway:other' } })}` },
    ];
    for (const headers of cases) {
      const err = (await open(`${proxy.url.replace('http', 'ws')}/ws`, headers).catch((e) => e)) as {
        status: number;
        headers: Record<string, string>;
      };
      expect(err.status).toBe(401);
      expect(err.headers['www-authenticate']).toMatch(/^Bearer error="invalid_token", error_description="[a-z_]+"$/);
    }
    expect(upstream.hits).toBe(hits);
  });

  it("passes the gateway's own refusal of an upgrade through", async () => {
    const err = (await open(`${proxy.url.replace('http', 'ws')}/not-a-socket`, { Authorization: `Bearer ${await token(key)}` }).catch(
      (e) => e,
    )) as { status: number };
    expect(err.status).toBe(404);
  });

  it('a connection outlives its token; a new upgrade with the expired token is refused', async () => {
    let clock = Date.now();
    await proxy.close();
    proxy = await startProxy({ jwksUrl: jwks.url, upstream: upstream.url, credentialsFile }, { verifierOverrides: { now: () => clock } });
    const t = await token(key, { now: clock, ttl: 60 });
    const { ws } = await open(`${proxy.url.replace('http', 'ws')}/ws`, { Authorization: `Bearer ${t}` });
    clock += (60 + 30) * 1000;
    const reply = next(ws);
    ws.send('still here');
    expect(await reply).toBe('user-1:still here');
    const err = (await open(`${proxy.url.replace('http', 'ws')}/ws`, { Authorization: `Bearer ${t}` }).catch((e) => e)) as {
      status: number;
      headers: Record<string, string>;
    };
    expect(err.status).toBe(401);
    expect(err.headers['www-authenticate']).toBe('Bearer error="invalid_token", error_description="expired"');
    ws.close();
  });
});

describe('two Authorization headers', () => {
  it('are refused even when both carry the same valid token', async () => {
    const t = await token(key);
    const hits = upstream.hits;
    const res = await rawRequest(proxy.port, ['GET / HTTP/1.1', 'Host: x', `Authorization: Bearer ${t}`, `Authorization: Bearer ${t}`]);
    expect(res.status).toBe(401);
    expect(res.head).toContain('WWW-Authenticate: Bearer error="invalid_token", error_description="multiple_authorization"');
    expect(upstream.hits).toBe(hits);
    expect(res.body).not.toContain(t);
  });
});

describe('audience', () => {
  it('a token for another sandbox is refused by this one', async () => {
    const res = await fetch(`${proxy.url}/`, {
      headers: { Authorization: `Bearer ${await token(key, { claims: { aud: 'gateway:sbx-2' } })}` },
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer error="invalid_token", error_description="bad_audience"');
    expect(AUDIENCE).toBe('gateway:sbx-1');
  });
});
