import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { beforeEach, describe, expect, it } from 'vitest';
import { authenticateAdmin } from '../../src/admin-auth.js';
import { parseConfig } from '../../src/config.js';
import { IssuerError } from '../../src/issuer/errors.js';
import { TEST_GATEWAY_TOKEN } from '../secrets.js';
import { adminHeaders, BASE, call, freshStorage, TEST_ADMIN_TOKEN } from './helpers.js';
import { bootstrap } from './token-helpers.js';

beforeEach(freshStorage);

type Listing = { keys: { kid: string; state: string; created_at: string; activated_at?: string }[]; schedule: Record<string, unknown> };

async function listing(): Promise<Listing> {
  const res = await call('/api/admin/keys', { headers: adminHeaders() });
  expect(res.status).toBe(200);
  return (await res.json()) as Listing;
}

describe('admin authentication', () => {
  it('with neither ADMIN_TOKEN nor Access configured, refuses everyone with 403', async () => {
    for (const headers of [{}, adminHeaders()]) {
      const res = await call('/api/admin/keys', { headers }, { ADMIN_TOKEN: undefined });
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: string }).error).toBe('forbidden');
    }
  });

  it('no token or a wrong token: 401 with a reason and a Bearer challenge', async () => {
    for (const headers of [
      {},
      adminHeaders('wrong-token'),
      adminHeaders(`${TEST_ADMIN_TOKEN}x`),
      { Authorization: `Basic ${btoa('a:b')}` },
    ]) {
      const res = await call('/api/admin/keys', { headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('WWW-Authenticate')).toBe('Bearer realm="admin"');
      const body = (await res.json()) as { error: string; error_description: string };
      expect(body.error).toBe('unauthorized');
      expect(body.error_description.length).toBeGreaterThan(5);
      expect(JSON.stringify(body)).not.toContain(TEST_ADMIN_TOKEN);
    }
  });

  it('is checked before routing: unknown admin paths are 401 without a token', async () => {
    expect((await call('/api/admin/nothing-here')).status).toBe(401);
    expect((await call('/api/admin/nothing-here', { headers: adminHeaders() })).status).toBe(404);
  });

  it('the right token, with any case of the scheme, is accepted', async () => {
    const res = await call('/api/admin/keys', { headers: { Authorization: `bearer ${TEST_ADMIN_TOKEN}` } });
    expect(res.status).toBe(200);
  });
});

describe('Cloudflare Access', () => {
  const team = 'team.cloudflareaccess.com';
  const aud = 'aud-tag-0123456789';
  const cfg = parseConfig({
    ISSUER: BASE,
    CF_ACCESS_TEAM_DOMAIN: team,
    CF_ACCESS_AUD: aud,
    ADMIN_TOKEN: TEST_ADMIN_TOKEN,
    ADMIN_USERS: 'Ops@Example.com, svc.access',
  });

  async function setup() {
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'access-1', alg: 'RS256' };
    const keySet = createLocalJWKSet({ keys: [jwk] });
    const mint = (claims: Record<string, unknown>, opts: { iss?: string; aud?: string; exp?: string } = {}) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: 'access-1' })
        .setIssuer(opts.iss ?? `https://${team}`)
        .setAudience(opts.aud ?? aud)
        .setIssuedAt()
        .setExpirationTime(opts.exp ?? '5m')
        .sign(privateKey);
    return { keySet, mint };
  }

  const req = (headers: Record<string, string>) => new Request(`${BASE}/api/admin/keys`, { headers });

  it('accepts a valid Access JWT from the header or the cookie, and names the user', async () => {
    const { keySet, mint } = await setup();
    const jwt = await mint({ email: 'ops@example.com' });
    const who = await authenticateAdmin(req({ 'Cf-Access-Jwt-Assertion': jwt }), cfg, () => keySet);
    expect(who).toEqual({ method: 'access', subject: 'ops@example.com' });
    const viaCookie = await authenticateAdmin(req({ Cookie: `a=b; CF_Authorization=${jwt}` }), cfg, () => keySet);
    expect(viaCookie.subject).toBe('ops@example.com');
  });

  it('refuses a wrong audience, a wrong team, an expired JWT, and ADMIN_TOKEN once Access is on', async () => {
    const { keySet, mint } = await setup();
    const bad = [
      await mint({ email: 'x@example.com' }, { aud: 'other' }),
      await mint({ email: 'x@example.com' }, { iss: 'https://evil.cloudflareaccess.com' }),
      await mint({ email: 'x@example.com' }, { exp: '-5m' }),
    ];
    for (const jwt of bad) {
      const e = await authenticateAdmin(req({ 'Cf-Access-Jwt-Assertion': jwt }), cfg, () => keySet).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(IssuerError);
      expect((e as IssuerError).code).toBe('unauthorized');
    }
    const e = await authenticateAdmin(req({ Authorization: `Bearer ${TEST_ADMIN_TOKEN}` }), cfg, () => keySet).catch((x: unknown) => x);
    expect((e as IssuerError).code).toBe('unauthorized');
  });

  const refusal = async (p: Promise<unknown>) => {
    const e = await p.catch((x: unknown) => x);
    expect(e).toBeInstanceOf(IssuerError);
    return { code: (e as IssuerError).code, message: (e as IssuerError).message };
  };

  it('finding 3: with Access configured and no allow-list, no Access identity is an admin', async () => {
    const { keySet, mint } = await setup();
    const open = parseConfig({ ISSUER: BASE, CF_ACCESS_TEAM_DOMAIN: team, CF_ACCESS_AUD: aud });
    const jwt = await mint({ email: 'bot-user@example.com' });
    expect(await refusal(authenticateAdmin(req({ 'Cf-Access-Jwt-Assertion': jwt }), open, () => keySet))).toEqual({
      code: 'forbidden',
      message:
        'no Cloudflare Access identity is an admin: name them in ADMIN_USERS, or set ADMIN_ACCESS_AUD to a separate Access application for /api/admin',
    });
  });

  it('finding 3: ADMIN_USERS is the allow-list: a listed email or service token passes, any other Access user is 403', async () => {
    const { keySet, mint } = await setup();
    expect(
      (await authenticateAdmin(req({ 'Cf-Access-Jwt-Assertion': await mint({ email: 'OPS@example.com' }) }), cfg, () => keySet)).subject,
    ).toBe('OPS@example.com');
    expect(
      (await authenticateAdmin(req({ 'Cf-Access-Jwt-Assertion': await mint({ common_name: 'svc.access' }) }), cfg, () => keySet)).subject,
    ).toBe('svc.access');
    expect(
      await refusal(
        authenticateAdmin(req({ 'Cf-Access-Jwt-Assertion': await mint({ email: 'bot-user@example.com' }) }), cfg, () => keySet),
      ),
    ).toEqual({
      code: 'forbidden',
      message: 'bot-user@example.com is not an admin (ADMIN_USERS does not name it)',
    });
  });

  it("finding 3: ADMIN_ACCESS_AUD: every identity of the admin application is an admin, the gateway application's are not", async () => {
    const { keySet, mint } = await setup();
    const separate = parseConfig({ ISSUER: BASE, CF_ACCESS_TEAM_DOMAIN: team, CF_ACCESS_AUD: aud, ADMIN_ACCESS_AUD: 'admin-aud-tag' });
    expect(
      (
        await authenticateAdmin(
          req({ 'Cf-Access-Jwt-Assertion': await mint({ email: 'anyone@example.com' }, { aud: 'admin-aud-tag' }) }),
          separate,
          () => keySet,
        )
      ).subject,
    ).toBe('anyone@example.com');
    expect(
      (
        await refusal(
          authenticateAdmin(req({ 'Cf-Access-Jwt-Assertion': await mint({ email: 'anyone@example.com' }) }), separate, () => keySet),
        )
      ).code,
    ).toBe('forbidden');
    expect(
      (
        await refusal(
          authenticateAdmin(
            req({ 'Cf-Access-Jwt-Assertion': await mint({ email: 'anyone@example.com' }, { aud: 'third-app' }) }),
            separate,
            () => keySet,
          ),
        )
      ).code,
    ).toBe('unauthorized');
  });

  it('finding 3: the allow-list options are validated at config load', () => {
    expect(() => parseConfig({ ISSUER: BASE, ADMIN_USERS: 'a@example.com' })).toThrow(/ADMIN_USERS: names Cloudflare Access identities/);
    expect(() => parseConfig({ ISSUER: BASE, ADMIN_ACCESS_AUD: 'x' })).toThrow(/ADMIN_ACCESS_AUD: is an Access application audience/);
    expect(() => parseConfig({ ISSUER: BASE, CF_ACCESS_TEAM_DOMAIN: team, CF_ACCESS_AUD: aud, ADMIN_ACCESS_AUD: aud })).toThrow(
      /must be another Access application/,
    );
    expect(() => parseConfig({ ISSUER: BASE, CF_ACCESS_TEAM_DOMAIN: team, CF_ACCESS_AUD: aud, ADMIN_USERS: 'a b@example.com' })).toThrow(
      /ADMIN_USERS: must be a comma-separated list/,
    );
  });
});

describe('finding 3: state-changing admin requests refuse cross-site forgery', () => {
  const post = (path: string, headers: Record<string, string>, method = 'POST') => call(path, { method, headers });
  const forbidden = async (res: Response) => {
    expect(res.status).toBe(403);
    return ((await res.json()) as { error_description: string }).error_description;
  };

  it('a simple request (a form post) is refused before authentication, whatever it carries', async () => {
    for (const type of [undefined, 'application/x-www-form-urlencoded', 'text/plain', 'multipart/form-data; boundary=x']) {
      const headers: Record<string, string> = { Cookie: 'CF_Authorization=whatever', Origin: BASE };
      if (type) headers['Content-Type'] = type;
      expect(await forbidden(await post('/api/admin/keys/rotate?force=true', headers)), type).toBe(
        'a state-changing admin request must be sent with Content-Type: application/json',
      );
    }
    expect(await forbidden(await post('/api/admin/sandboxes/main', { Cookie: 'CF_Authorization=x', Origin: BASE }, 'DELETE'))).toMatch(
      /Content-Type: application\/json/,
    );
  });

  it("with cookies, JSON is not enough: the Origin must be the issuer's own", async () => {
    for (const origin of [undefined, 'https://evil.example', 'null', 'http://127.0.0.1:9999']) {
      const headers: Record<string, string> = {
        'Content-Type': 'application/json',
        Cookie: 'CF_Authorization=x',
        Authorization: `Bearer ${TEST_ADMIN_TOKEN}`,
      };
      if (origin) headers.Origin = origin;
      expect(await forbidden(await post('/api/admin/keys/rotate?force=true', headers)), origin).toMatch(
        /must come from the issuer's own origin/,
      );
    }
    const crossSite = await post('/api/admin/keys/rotate?force=true', {
      'Content-Type': 'application/json',
      Cookie: 'x=1',
      Origin: BASE,
      'Sec-Fetch-Site': 'cross-site',
      Authorization: `Bearer ${TEST_ADMIN_TOKEN}`,
    });
    expect(crossSite.status).toBe(403);
  });

  it('non-simple requests pass: JSON, or a bearer token without cookies; same-origin with cookies; GET is untouched', async () => {
    expect(
      (await post('/api/admin/keys/rotate?force=true', { 'Content-Type': 'application/json', Authorization: `Bearer ${TEST_ADMIN_TOKEN}` }))
        .status,
    ).toBe(200);
    expect((await post('/api/admin/keys/rotate?force=true', { Authorization: `Bearer ${TEST_ADMIN_TOKEN}` })).status).toBe(200);
    expect(
      (
        await post('/api/admin/keys/rotate?force=true', {
          'Content-Type': 'application/json; charset=utf-8',
          Cookie: 'theme=dark',
          Origin: BASE,
          'Sec-Fetch-Site': 'same-origin',
          Authorization: `Bearer ${TEST_ADMIN_TOKEN}`,
        })
      ).status,
    ).toBe(200);
    expect((await call('/api/admin/keys', { headers: { Cookie: 'x=1', Authorization: `Bearer ${TEST_ADMIN_TOKEN}` } })).status).toBe(200);
  });
});

describe('GET /api/admin/keys', () => {
  it('lists every key with its state and times, and the schedule', async () => {
    const body = await listing();
    expect(body.keys.map((k) => k.state)).toEqual(['active', 'next']);
    expect(body.keys[0]!.activated_at).toBeDefined();
    expect(body.schedule).toMatchObject({ rotation_period_seconds: 86400 });
    expect(Date.parse(body.schedule.next_rotation_at as string)).toBeGreaterThan(Date.now());
    expect(JSON.stringify(body)).not.toMatch(/"d"|privateKey|ciphertext/);
  });
});

describe('POST /api/admin/keys/rotate', () => {
  it('refuses with 409 while the next key is new, and rotates with force=true', async () => {
    const before = await listing();
    const refused = await call('/api/admin/keys/rotate', { method: 'POST', headers: adminHeaders() });
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { error: string }).error).toBe('rotation_too_soon');

    const forced = await call('/api/admin/keys/rotate?force=true', { method: 'POST', headers: adminHeaders() });
    expect(forced.status).toBe(200);
    const after = (await forced.json()) as Listing;
    const kid = (l: Listing, s: string) => l.keys.find((k) => k.state === s)?.kid;
    expect(kid(after, 'active')).toBe(kid(before, 'next'));
    expect(kid(after, 'retiring')).toBe(kid(before, 'active'));

    // The same through a JSON body.
    const viaBody = await call('/api/admin/keys/rotate', {
      method: 'POST',
      headers: { ...adminHeaders(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ force: true }),
    });
    expect(viaBody.status).toBe(200);
  });

  it('a malformed query or body is 400 with a reason, never a 500', async () => {
    const cases: [string, RequestInit][] = [
      ['/api/admin/keys/rotate?force=yes', {}],
      ['/api/admin/keys/rotate', { body: '{not json' }],
      ['/api/admin/keys/rotate', { body: '[true]' }],
      ['/api/admin/keys/rotate', { body: '{"force":"true"}' }],
      ['/api/admin/keys/rotate', { body: '{"forse":true}' }],
    ];
    for (const [path, init] of cases) {
      const res = await call(path, { method: 'POST', headers: adminHeaders(), ...init });
      expect(res.status, path + String(init.body)).toBe(400);
      const body = (await res.json()) as { error: string; error_description: string };
      expect(body.error).toBe('invalid_request');
      expect(body.error_description.length).toBeGreaterThan(5);
    }
    const big = await call('/api/admin/keys/rotate', { method: 'POST', headers: adminHeaders(), body: 'x'.repeat(5000) });
    expect(big.status).toBe(413);
  });
});

describe('POST /api/admin/keys/:kid/revoke', () => {
  it('revoking the active key removes it from the JWKS and promotes the next', async () => {
    const before = await listing();
    const active = before.keys.find((k) => k.state === 'active')!.kid;
    const next = before.keys.find((k) => k.state === 'next')!.kid;
    const res = await call(`/api/admin/keys/${active}/revoke`, { method: 'POST', headers: adminHeaders() });
    expect(res.status).toBe(200);
    const after = (await res.json()) as Listing;
    expect(after.keys.find((k) => k.kid === active)!.state).toBe('removed');
    expect(after.keys.find((k) => k.state === 'active')!.kid).toBe(next);
    const jwks = (await (await call('/.well-known/jwks.json')).json()) as { keys: { kid: string }[] };
    expect(jwks.keys.map((k) => k.kid)).not.toContain(active);
    expect(jwks.keys.map((k) => k.kid)).toContain(next);
  });

  it('an unknown kid is 404; a malformed kid is 400; a removed kid is 404', async () => {
    const unknown = await call(`/api/admin/keys/${'A'.repeat(43)}/revoke`, { method: 'POST', headers: adminHeaders() });
    expect(unknown.status).toBe(404);
    for (const bad of ['short', 'A'.repeat(44), `${'A'.repeat(42)}%2F`, `${'A'.repeat(42)}!`]) {
      const res = await call(`/api/admin/keys/${bad}/revoke`, { method: 'POST', headers: adminHeaders() });
      expect(res.status, bad).toBe(400);
      expect(((await res.json()) as { error: string }).error).toBe('invalid_kid');
    }
    const active = (await listing()).keys.find((k) => k.state === 'active')!.kid;
    expect((await call(`/api/admin/keys/${active}/revoke`, { method: 'POST', headers: adminHeaders() })).status).toBe(200);
    expect((await call(`/api/admin/keys/${active}/revoke`, { method: 'POST', headers: adminHeaders() })).status).toBe(404);
  });

  it('wrong method on a known path is not a 500', async () => {
    const res = await call('/api/admin/keys/rotate', { method: 'GET', headers: adminHeaders() });
    expect(res.status).toBeLessThan(500);
    expect(res.status).toBeGreaterThanOrEqual(400);
  });
});

describe('failure G through the admin API', () => {
  it('failure G: forced rotations past the retiring cap answer 409 too_many_retiring_keys with the reason; revoke still works', async () => {
    const { MAX_RETIRING_KEYS } = await import('../../src/issuer/jwks-bounds.js');
    const rotateForced = () => call('/api/admin/keys/rotate?force=true', { method: 'POST', headers: adminHeaders() });
    for (let i = 0; i < MAX_RETIRING_KEYS; i++) expect((await rotateForced()).status).toBe(200);
    const refused = await rotateForced();
    expect(refused.status).toBe(409);
    const body = (await refused.json()) as { error: string; error_description: string };
    expect(body.error).toBe('too_many_retiring_keys');
    expect(body.error_description).toMatch(
      /^8 retired keys are still published \(at most 8, so verifiers keep them all\); the oldest leaves the JWKS at .+Z\. To stop a key signing now, revoke it$/,
    );
    const jwks = (await (await call('/.well-known/jwks.json')).json()) as { keys: unknown[] };
    expect(jwks.keys).toHaveLength(MAX_RETIRING_KEYS + 2);
    const keys = (await (await call('/api/admin/keys', { headers: adminHeaders() })).json()) as { keys: { kid: string; state: string }[] };
    const active = keys.keys.find((k) => k.state === 'active')!.kid;
    expect((await call(`/api/admin/keys/${active}/revoke`, { method: 'POST', headers: adminHeaders() })).status).toBe(200);
  });
});

describe('sandbox status: how each CREDENTIALS entry is delivered', () => {
  const PLAIN_SECRET = 'plain-secret-value-for-the-test-0123456789';
  const PROVIDER_SECRET = 'provider-secret-value-for-the-test-0123456789';
  // The test env's CREDENTIALS (wrangler.toml) has one derived entry; this one has each kind.
  const egressEnv = {
    CREDENTIALS: JSON.stringify({
      GATEWAY_TOKEN: { secret: 'MOLTBOT_GATEWAY_TOKEN', derive: true },
      PLAIN_KEY: { secret: 'PLAIN_SECRET' },
      PROVIDER_API_KEY: {
        secret: 'PROVIDER_SECRET',
        egress: { hosts: ['api.example.com', 'eu.api.example.com'], header: 'authorization' },
      },
    }),
    PLAIN_SECRET,
    PROVIDER_SECRET,
  };
  const deliveries = [
    { name: 'GATEWAY_TOKEN', delivery: 'derived' },
    { name: 'PLAIN_KEY', delivery: 'value' },
    { name: 'PROVIDER_API_KEY', delivery: 'egress', hosts: ['api.example.com', 'eu.api.example.com'], header: 'authorization' },
  ];
  const never = (text: string) => {
    for (const s of [PLAIN_SECRET, PROVIDER_SECRET, TEST_GATEWAY_TOKEN]) expect(text).not.toContain(s);
    expect(text).not.toMatch(/eyJ/); // no JWS (a sentinel) or JWE of any kind
  };

  it('GET /sandboxes/:id, each entry of GET /sandboxes and the DELETE answer name each entry and its delivery, never a value', async () => {
    await bootstrap('deliv-a', egressEnv);
    await bootstrap('deliv-b', egressEnv);

    const one = await call('/api/admin/sandboxes/deliv-a', { headers: adminHeaders() }, egressEnv);
    expect(one.status).toBe(200);
    const oneText = await one.text();
    never(oneText);
    expect(JSON.parse(oneText)).toMatchObject({ sandbox: 'deliv-a', exists: true, credentials: deliveries });

    const list = await call('/api/admin/sandboxes', { headers: adminHeaders() }, egressEnv);
    expect(list.status).toBe(200);
    const listText = await list.text();
    never(listText);
    const sandboxes = (JSON.parse(listText) as { sandboxes: { sandbox: string; credentials?: unknown }[] }).sandboxes;
    expect(sandboxes.map((s) => s.sandbox).sort()).toEqual(['deliv-a', 'deliv-b']);
    for (const s of sandboxes) expect(s.credentials, s.sandbox).toEqual(deliveries);

    const revoked = await call('/api/admin/sandboxes/deliv-b', { method: 'DELETE', headers: adminHeaders() }, egressEnv);
    expect(revoked.status).toBe(200);
    const revokedText = await revoked.text();
    never(revokedText);
    expect(JSON.parse(revokedText)).toMatchObject({ sandbox: 'deliv-b', revoked: true, credentials: deliveries });

    // The deployment's config, not the sandbox's state: the test env's own CREDENTIALS shows as such.
    const plain = (await (await call('/api/admin/sandboxes/deliv-a', { headers: adminHeaders() })).json()) as { credentials?: unknown };
    expect(plain.credentials).toEqual([{ name: 'GATEWAY_TOKEN', delivery: 'derived' }]);
  });
});
