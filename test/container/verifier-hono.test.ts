/**
 * The Hono middleware on the verifier, driven with app.request: exact statuses, exact
 * WWW-Authenticate strings, the claims handed to the route, and the whole attack corpus.
 */
import { Hono } from 'hono';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type BearerEnv, verifyBearer } from '../../src/verifier/hono.js';
import { createVerifier } from '../../src/verifier/verify.js';
import {
  AUDIENCE,
  attackCorpus,
  ISSUER,
  type JwksServer,
  makeKey,
  startJwksServer,
  type TestKey,
  token,
} from './gateway-proxy-fixtures.js';

let key: TestKey;
let jwks: JwksServer;
let app: Hono<BearerEnv>;
let reached = 0;

beforeAll(async () => {
  key = await makeKey();
  jwks = await startJwksServer([key.publicJwk]);
  const verifier = createVerifier({ jwksUrl: jwks.url, issuer: ISSUER, audience: AUDIENCE });
  app = new Hono<BearerEnv>();
  app.use('/api/*', verifyBearer({ verifier }));
  app.get('/api/me', (c) => {
    reached++;
    return c.json({ sub: c.get('claims').sub, aud: c.get('claims').aud });
  });
});
afterAll(() => jwks.close());

it('hands the verified claims to the route', async () => {
  const res = await app.request('/api/me', { headers: { Authorization: `Bearer ${await token(key, { claims: { sub: 'carol' } })}` } });
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ sub: 'carol', aud: AUDIENCE });
});

it('refuses every case of the attack corpus with 401 and the exact challenge; the route never runs', async () => {
  const before = reached;
  const corpus = await attackCorpus(key, await makeKey());
  for (const c of corpus) {
    const headers = new Headers();
    for (const v of c.authorization) headers.append('Authorization', v);
    const res = await app.request('/api/me', { headers });
    expect([c.name, res.status, res.headers.get('www-authenticate')]).toEqual([
      c.name,
      401,
      `Bearer error="invalid_token", error_description="${c.code}"`,
    ]);
    expect(await res.json()).toEqual({ error: 'invalid_token', error_description: c.code });
  }
  expect(reached).toBe(before);
});

it('answers 503 with Retry-After when no JWKS can be had (the token may be fine)', async () => {
  const down = new Hono<BearerEnv>();
  down.use(
    '*',
    verifyBearer({ verifier: createVerifier({ jwksUrl: 'http://127.0.0.1:1/jwks.json', issuer: ISSUER, audience: AUDIENCE }) }),
  );
  down.get('/', (c) => c.text('no'));
  const res = await down.request('/', { headers: { Authorization: `Bearer ${await token(key)}` } });
  expect(res.status).toBe(503);
  expect(res.headers.get('retry-after')).toBe('10');
  expect(res.headers.get('www-authenticate')).toBeNull();
  expect(await res.json()).toEqual({ error: 'temporarily_unavailable', error_description: 'jwks_unavailable' });
});

it('checks its options when built', () => {
  expect(() => verifyBearer({} as never)).toThrow(/options.verifier/);
});
