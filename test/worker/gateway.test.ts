import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { gatewayRequest } from '../../src/routes/gateway.js';
import { parseConfig } from '../../src/config.js';
import { ConfigError } from '../../src/issuer/errors.js';
import { BASE, call, freshStorage } from './helpers.js';

const UPSTREAM = 'http://127.0.0.1:8789';
const LOCAL = { GATEWAY_UPSTREAM: UPSTREAM, DEV_USER: 'dev@example.com' };

beforeEach(freshStorage);
afterEach(() => vi.restoreAllMocks());

/** The network edge: records what the Worker sends to the gateway. */
function recordUpstream() {
  const seen: Request[] = [];
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init);
    seen.push(req);
    return new Response('from upstream', { status: 200 });
  });
  return seen;
}

describe('gateway path', () => {
  it('without a verified user: 401, never forwarded', async () => {
    const seen = recordUpstream();
    const res = await call('/chat?x=1', { headers: { Authorization: 'Bearer something' } }, { GATEWAY_UPSTREAM: UPSTREAM });
    expect(res.status).toBe(401);
    expect(seen).toHaveLength(0);
  });

  it('forwards with a bearer access token for the user, and strips incoming credentials and ?token=', async () => {
    const seen = recordUpstream();
    const res = await call('/api/chat?token=legacy-gateway-token&q=2', {
      method: 'POST',
      headers: { Authorization: 'Bearer client-sent', 'Cf-Access-Jwt-Assertion': 'x.y.z', Cookie: 'a=1; CF_Authorization=secret-cookie; b=2', 'Content-Type': 'text/plain' },
      body: 'hello',
    }, LOCAL);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('from upstream');
    expect(seen).toHaveLength(1);
    const req = seen[0]!;
    expect(req.url).toBe(`${UPSTREAM}/api/chat?q=2`);
    expect(req.method).toBe('POST');
    expect(await req.text()).toBe('hello');
    expect(req.headers.get('Cookie')).toBe('a=1; b=2');
    expect(req.headers.get('Cf-Access-Jwt-Assertion')).toBeNull();
    const token = /^Bearer (.+)$/.exec(req.headers.get('Authorization') ?? '')![1]!;
    const jwks = createLocalJWKSet((await (await call('/.well-known/jwks.json')).json()) as { keys: [] });
    const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer: BASE, audience: 'gateway:main', typ: 'at+jwt', algorithms: ['EdDSA'] });
    expect(protectedHeader.alg).toBe('EdDSA');
    expect(payload).toMatchObject({ sub: 'dev@example.com', scope: 'gateway' });
    expect(payload.exp! - payload.iat!).toBe(300);
    expect(req.url).not.toContain(token);
  });

  it('reuses a user token until half its life, per user', async () => {
    const seen = recordUpstream();
    const { createApp } = await import('../../src/app.js');
    const { env } = await import('cloudflare:test');
    const app = createApp();
    const e = { ...env, ...LOCAL };
    const { createExecutionContext } = await import('cloudflare:test');
    await app.fetch(new Request(`${BASE}/a`), e, createExecutionContext());
    await app.fetch(new Request(`${BASE}/b`), e, createExecutionContext());
    const other = { ...env, ...LOCAL, DEV_USER: 'other@example.com' };
    await app.fetch(new Request(`${BASE}/c`), other, createExecutionContext());
    const tokens = seen.map((r) => r.headers.get('Authorization'));
    expect(tokens[0]).toBe(tokens[1]);
    expect(decodeJwt(tokens[2]!.slice(7)).sub).toBe('other@example.com');
  });

  it('never forwards issuer paths', async () => {
    const seen = recordUpstream();
    for (const path of ['/oauth/other', '/.well-known/other', '/api/admin']) {
      const res = await call(path, {}, LOCAL);
      expect(res.status, path).toBe(path === '/api/admin' ? 401 : 404);
    }
    expect(seen).toHaveLength(0);
  });

  it('with no gateway target configured: 503 with a reason', async () => {
    const res = await call('/x', {}, { DEV_USER: 'dev@example.com' });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: string }).error).toBe('gateway_unavailable');
  });

  it('an unreachable gateway is a 502 with a reason, not a 500', async () => {
    vi.spyOn(globalThis, 'fetch').mockRejectedValue(new TypeError('connect ECONNREFUSED'));
    const res = await call('/x', {}, LOCAL);
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: string }).error).toBe('bad_gateway');
  });

  it('DEV_USER is refused on a non-loopback issuer', () => {
    expect(() => parseConfig({ ISSUER: 'https://issuer.example.com', DEV_USER: 'x@y' })).toThrow(ConfigError);
    expect(parseConfig({ ISSUER: 'http://localhost:8787', DEV_USER: 'x@y' }).gateway.devUser).toBe('x@y');
  });

  it('gatewayRequest drops only our credentials', () => {
    const r = gatewayRequest(new Request('https://w.example/p?token=t&a=1', { headers: { Cookie: 'CF_Authorization=z', 'X-Other': 'keep' } }), 'http://up:1', 'jwt');
    expect(r.url).toBe('http://up:1/p?a=1');
    expect(r.headers.get('Cookie')).toBeNull();
    expect(r.headers.get('X-Other')).toBe('keep');
    expect(r.headers.get('Authorization')).toBe('Bearer jwt');
  });
});

/** The reviewer's inputs for finding 1: scheme-relative paths that would replace the upstream's host. */
export const HOST_CHANGING_PATHS = ['//127.0.0.1:9/steal', '///127.0.0.1:9/steal', '/\\127.0.0.1:9/steal', '//user@127.0.0.1:9/steal', '//api/admin/keys', '/x/..//127.0.0.1:9/steal'];

describe('security finding 1: a path beginning with // never leaves the upstream origin', () => {
  for (const path of HOST_CHANGING_PATHS) {
    it(`finding 1 (GATEWAY_UPSTREAM): ${JSON.stringify(path)} is refused with 400 and nothing is fetched`, async () => {
      const seen = recordUpstream();
      const res = await call(path, { headers: { Cookie: 'sid=1' } }, LOCAL);
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ error: 'invalid_request', error_description: 'the path must not begin with // or contain a backslash' });
      expect(seen).toHaveLength(0);
    });
  }

  it('finding 1: gatewayRequest keeps the base origin and drops the client Host, whatever the path', () => {
    for (const path of ['/a//b', '/%2F%2Fhost/x', '/a/..%2F/x']) {
      const r = gatewayRequest(new Request(`https://w.example${path}`, { headers: { Host: 'evil.example' } }), 'http://up:1', 'jwt');
      expect(new URL(r.url).origin, path).toBe('http://up:1');
      expect(r.headers.get('Host'), path).toBeNull();
    }
    expect(() => gatewayRequest(new Request('https://w.example//evil.example/x'), 'http://up:1', 'jwt')).toThrow(/must not begin with/);
  });
});

describe('security finding 9: split Cookie headers never carry the Access JWT through', () => {
  it('finding 9: two Cookie lines joined by ", " lose CF_Authorization, in any case', async () => {
    const seen = recordUpstream();
    const headers = new Headers();
    headers.append('Cookie', 'sid=1');
    headers.append('Cookie', 'CF_Authorization=access.jwt.value; theme=dark');
    headers.append('Cookie', 'cf_authorization=lower.case');
    const res = await call('/chat', { headers }, LOCAL);
    expect(res.status).toBe(200);
    const cookie = seen[0]!.headers.get('Cookie');
    expect(cookie).toBe('sid=1; theme=dark');
    expect(cookie).not.toMatch(/access\.jwt|lower\.case/);
  });
});
