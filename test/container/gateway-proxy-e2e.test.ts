/**
 * End to end with the real Worker (wrangler dev on loopback): agent tokens from the real token
 * endpoint through the verifying proxy, the real admin API rotating and revoking signing keys,
 * and the JWKS going away. The proxy runs in-process with a counting fetch and a clock the test
 * can move forward (the Worker keeps real time; its tokens live 600 s, its JWKS max-age is 60 s).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importJWK, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningProxy } from '../../container/lib/proxy/start.js';
import { TEST_ADMIN_TOKEN } from '../secrets.js';
import { startWorker, type WorkerProcess } from '../node/worker-process.js';
import { captureLog, makeKey, startProxy, startUpstream, token as localToken, writeCredentials, type Upstream } from './gateway-proxy-fixtures.js';

const SANDBOX = 'e2e-gw';
const MAX_AGE_S = 60;
let worker: WorkerProcess;
let upstream: Upstream;
let proxy: RunningProxy;
let dir: string;
let offset = 0;
const jwksFetches = { n: 0 };
const logs = captureLog();

const admin = (path: string, method = 'POST') => fetch(`${worker.url}${path}`, { method, headers: { Authorization: `Bearer ${TEST_ADMIN_TOKEN}` } });

async function agentToken(id: string): Promise<string> {
  const boot = await admin(`/api/admin/sandboxes/${id}/bootstrap`);
  expect(boot.status).toBe(200);
  const b = (await boot.json()) as { client_id: string; issuer: string; token_endpoint: string; key: JWK };
  const now = Math.floor(Date.now() / 1000);
  const assertion = await new SignJWT({ iss: b.client_id, sub: b.client_id, aud: b.issuer, iat: now, exp: now + 60, jti: randomUUID() })
    .setProtectedHeader({ alg: 'EdDSA', kid: b.key.kid! })
    .sign(await importJWK(b.key, 'EdDSA'));
  const res = await fetch(b.token_endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

const kidOf = (jwt: string) => (JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid;

function get(t: string): Promise<Response> {
  return fetch(`${proxy.url}/hello`, { headers: { Authorization: `Bearer ${t}` } });
}

async function challenge(res: Response): Promise<string | null> {
  await res.arrayBuffer();
  return res.headers.get('www-authenticate');
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gateway-proxy-e2e-'));
  // A one-minute JWKS max-age keeps the clock moves below the agent tokens' 600 s lifetime.
  worker = await startWorker({ persistTo: join(dir, 'state'), vars: { JWKS_MAX_AGE: `${MAX_AGE_S}s` } });
  upstream = await startUpstream();
  writeCredentials(dir, { GATEWAY_TOKEN: 'gw-e2e-value' }, 'v1');
  proxy = await startProxy(
    { jwksUrl: `${worker.url}/.well-known/jwks.json`, issuer: worker.url, audience: `gateway:${SANDBOX}`, upstream: upstream.url, credentialsFile: join(dir, 'credentials.json') },
    {
      log: logs.log,
      verifierOverrides: {
        now: () => Date.now() + offset,
        fetch: (input, init) => {
          jwksFetches.n++;
          return fetch(input, init);
        },
      },
    },
  );
  await fetch(`${proxy.url}/healthz`);
}, 90_000);

afterAll(async () => {
  await proxy?.close();
  await upstream?.close();
  await worker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('an agent token from the real issuer goes through, as its sandbox; another sandbox is refused', async () => {
  const t = await agentToken(SANDBOX);
  const res = await get(t);
  expect(res.status).toBe(200);
  expect(await res.json()).toMatchObject({ authorization: 'Bearer gw-e2e-value', user: SANDBOX });
  const other = await get(await agentToken('e2e-other'));
  expect(other.status).toBe(401);
  expect(await challenge(other)).toBe('Bearer error="invalid_token", error_description="bad_audience"');
});

it('rotation: the new kid is accepted after one refetch; 1,000 unknown kids cost at most one fetch', async () => {
  const before = await agentToken(SANDBOX);
  expect((await get(before)).status).toBe(200);
  // Two forced rotations: the key that signs now was not even `next` when the proxy fetched.
  expect((await admin('/api/admin/keys/rotate?force=true')).status).toBe(200);
  expect((await admin('/api/admin/keys/rotate?force=true')).status).toBe(200);
  const after = await agentToken(SANDBOX);
  expect(kidOf(after)).not.toBe(kidOf(before));
  const fetchesBefore = jwksFetches.n;
  const res = await get(after);
  expect(res.status).toBe(200);
  expect(jwksFetches.n).toBe(fetchesBefore + 1);
  expect((await get(await agentToken(SANDBOX))).status).toBe(200);
  expect(jwksFetches.n).toBe(fetchesBefore + 1);

  // Past the cooldown, a flood of made-up kids: one fetch at most, every request refused.
  offset += 31_000;
  const attacker = await makeKey();
  const flood = await Promise.all(Array.from({ length: 1000 }, (_, i) => localToken({ ...attacker, kid: `made-up-${i}` }, { claims: { iss: worker.url, aud: `gateway:${SANDBOX}` }, now: Date.now() + offset })));
  const fetchesBeforeFlood = jwksFetches.n;
  const hitsBefore = upstream.hits;
  const statuses: number[] = [];
  for (let i = 0; i < flood.length; i += 100) {
    const batch = await Promise.all(flood.slice(i, i + 100).map(async (t) => {
      const r = await get(t);
      await r.arrayBuffer();
      return r.status;
    }));
    statuses.push(...batch);
  }
  expect(statuses.filter((s) => s === 401)).toHaveLength(1000);
  expect(jwksFetches.n - fetchesBeforeFlood).toBeLessThanOrEqual(1);
  expect(upstream.hits).toBe(hitsBefore);
});

it('revocation: a revoked kid is refused after its refetch, also for a token already in the cache', async () => {
  const t = await agentToken(SANDBOX);
  const kid = kidOf(t);
  expect((await get(t)).status).toBe(200);
  expect((await admin(`/api/admin/keys/${encodeURIComponent(kid)}/revoke`)).status).toBe(200);
  // The proxy's copy is still within its max-age: the revocation is not seen yet (the price of caching).
  expect((await get(t)).status).toBe(200);
  // Past the max-age the copy is refetched, the kid is gone, and so is the cached token.
  offset += (MAX_AGE_S + 1) * 1000;
  const fetchesBefore = jwksFetches.n;
  const res = await get(t);
  expect(res.status).toBe(401);
  expect(await challenge(res)).toBe('Bearer error="invalid_token", error_description="unknown_kid"');
  expect(jwksFetches.n).toBeGreaterThan(fetchesBefore);
  // The key that replaced it signs, and its tokens go through.
  const fresh = await agentToken(SANDBOX);
  expect(kidOf(fresh)).not.toBe(kid);
  expect((await get(fresh)).status).toBe(200);
});

it('a JWKS outage keeps valid tokens working, first-seen ones included', async () => {
  const seen = await agentToken(SANDBOX);
  const unseen = await agentToken(SANDBOX);
  expect((await get(seen)).status).toBe(200);
  await worker.stop();
  offset += (MAX_AGE_S + 1) * 1000;
  expect((await get(unseen)).status).toBe(200);
  expect((await get(seen)).status).toBe(200);
  const health = (await (await fetch(`${proxy.url}/healthz`)).json()) as { status: string; jwks: { usable: boolean; fresh: boolean; last_error: string | null } };
  expect(health.jwks).toMatchObject({ usable: true, fresh: false });
  expect(health.jwks.last_error).not.toBeNull();
  expect(logs.lines).toContainEqual(expect.objectContaining({ event: 'jwks_fetch_failed', serving_stale: true }));
});
