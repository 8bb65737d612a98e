/**
 * The verifier runs in workerd too (WebCrypto and fetch only): it checks tokens minted by the
 * Worker's own token endpoint against the Worker's own JWKS route (the network edge is an
 * injected fetch into the app), and the Hono middleware refuses bad tokens with exact challenges.
 */
import { Hono } from 'hono';
import { base64url } from 'jose';
import { expect, it } from 'vitest';
import { VerifierError } from '../../src/verifier/errors.js';
import { type BearerEnv, verifyBearer } from '../../src/verifier/hono.js';
import { createVerifier } from '../../src/verifier/verify.js';
import { BASE, call } from './helpers.js';
import { assertion, bootstrap, rawJws, requestToken } from './token-helpers.js';

/** fetch for the verifier: requests to the Worker's origin go into the app; counts them. */
function appFetch(counter: { n: number }): typeof fetch {
  return (async (input: RequestInfo | URL, init?: RequestInit) => {
    counter.n++;
    const url = new URL(input instanceof Request ? input.url : String(input));
    return call(url.pathname + url.search, { headers: init?.headers });
  }) as typeof fetch;
}

async function agentToken(id: string): Promise<string> {
  const b = await bootstrap(id);
  const res = await requestToken(await assertion(b));
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'accepted';
  } catch (e) {
    if (e instanceof VerifierError) return e.code;
    throw e;
  }
}

it("verifies the Worker's own tokens against its JWKS, once fetched; refuses another sandbox's", async () => {
  const fetches = { n: 0 };
  const mine = createVerifier({
    jwksUrl: `${BASE}/.well-known/jwks.json`,
    issuer: BASE,
    audience: 'gateway:wd-a',
    fetch: appFetch(fetches),
  });
  const t = await agentToken('wd-a');
  const claims = await mine.verify(t);
  expect(claims).toMatchObject({ iss: BASE, sub: 'wd-a', aud: 'gateway:wd-a', client_id: 'wd-a', scope: 'agent' });
  expect(await codeOf(mine.verify(await agentToken('wd-a')))).toBe('accepted');
  expect(fetches.n).toBe(1);
  expect(await codeOf(mine.verify(await agentToken('wd-b')))).toBe('bad_audience');
});

it('honours the max-age the Worker sends: no refetch while fresh, a 304 revalidation after', async () => {
  const fetches = { n: 0 };
  let clock = Date.now();
  const v = createVerifier({
    jwksUrl: `${BASE}/.well-known/jwks.json`,
    issuer: BASE,
    audience: 'gateway:wd-c',
    fetch: appFetch(fetches),
    now: () => clock,
    tokenCache: { maxEntries: 0 },
  });
  const t = await agentToken('wd-c');
  await v.verify(t);
  clock += 299_000;
  await v.verify(t);
  expect(fetches.n).toBe(1);
  clock += 1_000;
  await v.verify(t);
  expect(fetches.n).toBe(2);
  expect(v.status().jwks).toMatchObject({ fresh: true, usable: true });
});

it('the Hono middleware refuses bad tokens in workerd with the exact RFC 6750 challenge', async () => {
  const verifier = createVerifier({
    jwksUrl: `${BASE}/.well-known/jwks.json`,
    issuer: BASE,
    audience: 'gateway:wd-d',
    fetch: appFetch({ n: 0 }),
  });
  const app = new Hono<BearerEnv>();
  app.use('*', verifyBearer({ verifier }));
  app.get('/', (c) => c.text(`hello ${c.get('claims').sub}`));

  const good = await agentToken('wd-d');
  const ok = await app.request('/', { headers: { Authorization: `bearer ${good}` } });
  expect(ok.status).toBe(200);
  expect(await ok.text()).toBe('hello wd-d');

  const [h, p, s] = good.split('.') as [string, string, string];
  const header = JSON.parse(new TextDecoder().decode(base64url.decode(h))) as Record<string, unknown>;
  const claims = JSON.parse(new TextDecoder().decode(base64url.decode(p))) as Record<string, unknown>;
  const cases: [string, string | null, string][] = [
    ['no header', null, 'missing_token'],
    ['alg none', `Bearer ${rawJws({ ...header, alg: 'none' }, claims)}`, 'malformed_token'],
    ['HS256', `Bearer ${rawJws({ ...header, alg: 'HS256' }, claims, s)}`, 'unsupported_alg'],
    ['jku', `Bearer ${rawJws({ ...header, jku: 'https://x.test/jwks' }, claims, s)}`, 'forbidden_header'],
    ['tampered claims', `Bearer ${rawJws(header, { ...claims, sub: 'admin' }, s)}`, 'bad_signature'],
    ['exp moved into the past (signature no longer matches)', `Bearer ${rawJws(header, { ...claims, exp: 1000 }, s)}`, 'bad_signature'],
    ['Basic', 'Basic YTpi', 'invalid_scheme'],
    ['two credentials', `Bearer ${good}, Bearer ${good}`, 'multiple_authorization'],
  ];
  for (const [name, auth, code] of cases) {
    const res = await app.request('/', { headers: auth === null ? {} : { Authorization: auth } });
    expect([name, res.status, res.headers.get('www-authenticate')]).toEqual([
      name,
      401,
      `Bearer error="invalid_token", error_description="${code}"`,
    ]);
  }
});
