import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../../src/config.js';
import { clientIpOf, ipLiteral, isLoopbackIssuer, LOCAL_CLIENT_IP } from '../../src/issuer/client-ip.js';
import { ConfigError } from '../../src/issuer/errors.js';
import { mintAccessToken } from '../../src/issuer/tokens.js';
import { createUserTokenCache, USER_TOKEN_CACHE_MAX } from '../../src/issuer/user-tokens.js';
import { gatewayClientIp, gatewayRequest } from '../../src/routes/gateway.js';
import { BASE, call, captureLogs, freshStorage } from './helpers.js';

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
    const res = await call(
      '/api/chat?token=legacy-gateway-token&q=2',
      {
        method: 'POST',
        headers: {
          Authorization: 'Bearer client-sent',
          'Cf-Access-Jwt-Assertion': 'x.y.z',
          Cookie: 'a=1; CF_Authorization=secret-cookie; b=2',
          'Content-Type': 'text/plain',
        },
        body: 'hello',
      },
      LOCAL,
    );
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
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer: BASE,
      audience: 'gateway:main',
      typ: 'at+jwt',
      algorithms: ['EdDSA'],
    });
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
    const r = gatewayRequest(
      new Request('https://w.example/p?token=t&a=1', { headers: { Cookie: 'CF_Authorization=z', 'X-Other': 'keep' } }),
      'http://up:1',
      'jwt',
    );
    expect(r.url).toBe('http://up:1/p?a=1');
    expect(r.headers.get('Cookie')).toBeNull();
    expect(r.headers.get('X-Other')).toBe('keep');
    expect(r.headers.get('Authorization')).toBe('Bearer jwt');
  });
});

/** The reviewer's inputs for finding 1: scheme-relative paths that would replace the upstream's host. */
const HOST_CHANGING_PATHS = [
  '//127.0.0.1:9/steal',
  '///127.0.0.1:9/steal',
  '/\\127.0.0.1:9/steal',
  '//user@127.0.0.1:9/steal',
  '//api/admin/keys',
  '/x/..//127.0.0.1:9/steal',
];

describe('security finding 1: a path beginning with // never leaves the upstream origin', () => {
  for (const path of HOST_CHANGING_PATHS) {
    it(`finding 1 (GATEWAY_UPSTREAM): ${JSON.stringify(path)} is refused with 400 and nothing is fetched`, async () => {
      const seen = recordUpstream();
      const res = await call(path, { headers: { Cookie: 'sid=1' } }, LOCAL);
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({
        error: 'invalid_request',
        error_description: 'the path must not begin with // or contain a backslash',
      });
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

/** The client_ip claim of the access token a recorded gateway request carries. */
function clientIpOfToken(req: Request): unknown {
  const token = /^Bearer (.+)$/.exec(req.headers.get('Authorization') ?? '')![1]!;
  return decodeJwt(token).client_ip;
}

describe("issue 13 item 4: the user's client address is a claim of the access token (client_ip)", () => {
  it('client_ip is CF-Connecting-IP (IPv4, and IPv6 in canonical form); forged X-Forwarded-For, X-Real-IP and Forwarded change nothing', async () => {
    const seen = recordUpstream();
    const forged = {
      'X-Forwarded-For': '198.51.100.66',
      'X-Real-IP': '198.51.100.67',
      Forwarded: 'for=198.51.100.68',
      'True-Client-IP': '198.51.100.69',
    };
    await call('/a', { headers: { 'CF-Connecting-IP': '203.0.113.7', ...forged } }, LOCAL);
    await call('/b', { headers: { 'CF-Connecting-IP': '2001:DB8:0:0::1', ...forged } }, LOCAL);
    await call('/c', { headers: { 'CF-Connecting-IP': '::ffff:203.0.113.8' } }, LOCAL);
    expect(seen.map(clientIpOfToken)).toEqual(['203.0.113.7', '2001:db8::1', '203.0.113.8']);
  });

  it(`a loopback, unspecified or missing address is ${LOCAL_CLIENT_IP} (TEST-NET-1) on a loopback issuer`, async () => {
    const seen = recordUpstream();
    const cases: (string | undefined)[] = [undefined, '127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1', '0.0.0.0', '::'];
    for (const ip of cases) await call('/x', { headers: ip === undefined ? {} : { 'CF-Connecting-IP': ip } }, LOCAL);
    expect(seen.map(clientIpOfToken)).toEqual(cases.map(() => '192.0.2.1'));
  });

  it('a CF-Connecting-IP that is no IP literal is not used: the token says 192.0.2.1 locally', async () => {
    const seen = recordUpstream();
    const junk = [
      'not-an-ip',
      '203.0.113.7, 198.51.100.1',
      '203.0.113.7:443',
      '[2001:db8::1]',
      '010.0.0.1',
      '1.2.3',
      '256.1.1.1',
      '0x7f.0.0.1',
      'fe80::1%eth0',
      'example.com',
      '2001:db8::1::2',
      `${'1'.repeat(40)}:1`,
    ];
    for (const ip of junk) await call('/x', { headers: { 'CF-Connecting-IP': ip } }, LOCAL);
    expect(seen.map(clientIpOfToken)).toEqual(junk.map(() => '192.0.2.1'));
  });

  it('the token cache never reuses a token across addresses: one token per (user, address), reused for the same pair', async () => {
    const seen = recordUpstream();
    const { createApp } = await import('../../src/app.js');
    const { env, createExecutionContext } = await import('cloudflare:test');
    const app = createApp();
    const e = { ...env, ...LOCAL };
    const from = (ip: string) => app.fetch(new Request(`${BASE}/a`, { headers: { 'CF-Connecting-IP': ip } }), e, createExecutionContext());
    await from('203.0.113.1');
    await from('203.0.113.2');
    await from('203.0.113.1');
    await app.fetch(new Request(`${BASE}/a`), e, createExecutionContext()); // loopback: 192.0.2.1
    const tokens = seen.map((r) => r.headers.get('Authorization'));
    expect(seen.map(clientIpOfToken)).toEqual(['203.0.113.1', '203.0.113.2', '203.0.113.1', '192.0.2.1']);
    expect(tokens[0]).toBe(tokens[2]);
    expect(new Set(tokens).size).toBe(3);
  });

  it(`the cache stays bounded (${USER_TOKEN_CACHE_MAX} pairs) however many addresses one user comes from, and keys cannot collide`, async () => {
    let minted = 0;
    const cache = createUserTokenCache(async (user, ip) => ({ token: `t${minted++}:${user}:${ip}`, exp: 0, kid: 'k' }), 300);
    for (let i = 0; i < USER_TOKEN_CACHE_MAX * 3; i++) {
      await cache.get('u', `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 'k');
      expect(cache.size).toBeLessThanOrEqual(USER_TOKEN_CACHE_MAX);
    }
    // A user name that holds an address is not that user at that address.
    const a = await cache.get('a\n203.0.113.1', undefined, 'k');
    const b = await cache.get('a', '203.0.113.1', 'k');
    expect(a).not.toBe(b);
    expect(await cache.get('a', undefined, 'k')).not.toBe(a);
  });

  it('on a public issuer a missing, loopback or junk address gives no client_ip (never 192.0.2.1), and the log says why without the value', async () => {
    const config = parseConfig({ ISSUER: 'https://issuer.example.com' });
    const cases: [Record<string, string>, string | undefined, string | undefined][] = [
      [{ 'CF-Connecting-IP': '198.51.100.9' }, '198.51.100.9', undefined],
      [{}, undefined, 'missing'],
      [{ 'X-Forwarded-For': '198.51.100.10', 'X-Real-IP': '198.51.100.11' }, undefined, 'missing'],
      [{ 'CF-Connecting-IP': '127.0.0.1' }, undefined, 'loopback'],
      [{ 'CF-Connecting-IP': 'junk-value-marker' }, undefined, 'invalid'],
    ];
    const { result, lines } = await captureLogs(async () =>
      cases.map(([headers]) => gatewayClientIp(new Request('https://issuer.example.com/x', { headers }), config)),
    );
    expect(result).toEqual(cases.map(([, ip]) => ip));
    const reasons = lines
      .map((l) => JSON.parse(l) as { event: string; reason: string })
      .filter((l) => l.event === 'client_ip_unavailable')
      .map((l) => l.reason);
    expect(reasons).toEqual(cases.map(([, , gap]) => gap).filter(Boolean));
    expect(lines.join('\n')).not.toContain('junk-value-marker');
    expect(clientIpOf(new Headers({ 'CF-Connecting-IP': '::1' }), false)).toEqual({ gap: 'loopback' });
  });

  it('a token minted without an address has no client_ip claim at all (not empty, not null)', async () => {
    const { privateKey } = (await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])) as CryptoKeyPair;
    const base = {
      signer: { kid: 'k', key: privateKey },
      issuer: BASE,
      sandboxId: 'main',
      subject: 'u',
      ttl: 300,
      now: Date.now(),
      jti: 'j',
    };
    expect('client_ip' in decodeJwt((await mintAccessToken(base)).token)).toBe(false);
    expect(decodeJwt((await mintAccessToken({ ...base, clientIp: '203.0.113.5' })).token).client_ip).toBe('203.0.113.5');
  });

  it('ipLiteral: IPv4 dotted decimal and IPv6 literals only, canonical; the loopback issuer rule is the one DEV_USER has', () => {
    expect(['1.2.3.4', '255.255.255.255', 'FE80::1', '::ffff:1.2.3.4', '2001:db8:0:0:0:0:0:1'].map(ipLiteral)).toEqual([
      '1.2.3.4',
      '255.255.255.255',
      'fe80::1',
      '1.2.3.4',
      '2001:db8::1',
    ]);
    for (const bad of [undefined, null, 3, '', ' 1.2.3.4', '1.2.3.4 ', '01.2.3.4', '1.2.3.4.5', ':::', 'a:b', '[::1]', '::1/128'])
      expect(ipLiteral(bad), String(bad)).toBeUndefined();
    for (const [url, local] of [
      ['http://127.0.0.1:8787', true],
      ['http://localhost:8787', true],
      ['http://[::1]:8787', true],
      ['https://issuer.example.com', false],
      ['http://127.0.0.1.example.com', false],
      ['http://192.0.2.1:8787', false],
    ] as const) {
      expect(isLoopbackIssuer(url), url).toBe(local);
    }
  });
});
