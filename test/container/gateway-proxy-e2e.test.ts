/**
 * End to end with the real Worker (wrangler dev on loopback): user access tokens minted by the
 * real gateway path, the agent's tokens from the real token endpoint (refused: finding 7 of issue
 * 11), the real admin API rotating and revoking signing keys, and the JWKS going away, all through
 * the verifying proxy. The Worker's gateway path sends to a recording listener, which is how the
 * test gets the user's token (as the proxy would). The proxy runs in-process with a counting
 * fetch and a clock the test can move forward (the Worker keeps real time; its tokens live 600 s,
 * its JWKS max-age is 60 s).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compactDecrypt, decodeJwt, exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningProxy } from '../../container/lib/proxy/start.js';
import { startWorker, type WorkerProcess } from '../node/worker-process.js';
import { TEST_ADMIN_TOKEN } from '../secrets.js';
import {
  captureLog,
  token as localToken,
  makeKey,
  startProxy,
  startUpstream,
  type Upstream,
  writeCredentials,
} from './gateway-proxy-fixtures.js';

const SANDBOX = 'e2e-gw';
const USER = 'e2e-user@example.com';
const MAX_AGE_S = 60;
/** As long as the agent tokens this test used to take: the proxy's clock moves ~150 s ahead. */
const ACCESS_TOKEN_TTL = '600s';
let worker: WorkerProcess;
let upstream: Upstream;
/** Where the Worker's gateway path sends: it records the user's access token the Worker minted. */
let minted: Upstream;
let proxy: RunningProxy;
let dir: string;
let offset = 0;
const jwksFetches = { n: 0 };
const logs = captureLog();

const admin = (path: string, method = 'POST') =>
  fetch(`${worker.url}${path}`, { method, headers: { Authorization: `Bearer ${TEST_ADMIN_TOKEN}` } });

/** An egress-delivered entry, so the agent's credentials carry a sentinel (README, "Egress delivery"). */
const CREDENTIALS = JSON.stringify({
  GATEWAY_TOKEN: { secret: 'MOLTBOT_GATEWAY_TOKEN', derive: true },
  PROVIDER_API_KEY: { secret: 'E2E_PROVIDER_SECRET', egress: { hosts: ['api.provider.test'], header: 'authorization' } },
});

async function agentToken(id: string, encJwk?: JWK): Promise<string> {
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
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
      ...(encJwk ? { enc_jwk: JSON.stringify(encJwk) } : {}),
    }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

/** The sentinel the agent of `id` would write into credentials.json, decrypted as the agent does. */
async function sentinelOf(id: string): Promise<string> {
  const { publicKey, privateKey } = await generateKeyPair('ECDH-ES+A256KW', { crv: 'X25519', extractable: true });
  const pub = await exportJWK(publicKey);
  const t = await agentToken(id, { kty: pub.kty, crv: pub.crv, x: pub.x });
  const { plaintext } = await compactDecrypt(decodeJwt(t).cred as string, privateKey);
  return (JSON.parse(new TextDecoder().decode(plaintext)) as { values: Record<string, string> }).values.PROVIDER_API_KEY!;
}

/**
 * The user's access token as the Worker mints it on the gateway path (DEV_USER, scope gateway).
 * The Worker reuses it until half its life or until its signing key changes (rotation, revocation).
 */
async function userToken(): Promise<string> {
  const res = await fetch(`${worker.url}/mint-probe`);
  await res.arrayBuffer();
  expect(res.status).toBe(200);
  const auth = minted.requests.at(-1)?.headers.authorization;
  expect(auth).toMatch(/^Bearer /);
  return auth!.slice('Bearer '.length);
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
  minted = await startUpstream();
  // A one-minute JWKS max-age keeps the clock moves below the tokens' 600 s lifetime.
  worker = await startWorker({
    persistTo: join(dir, 'state'),
    vars: {
      JWKS_MAX_AGE: `${MAX_AGE_S}s`,
      SANDBOX_ID: SANDBOX,
      DEV_USER: USER,
      GATEWAY_UPSTREAM: minted.url,
      ACCESS_TOKEN_TTL,
      CREDENTIALS,
      E2E_PROVIDER_SECRET: `e2e-provider-${randomUUID()}`,
    },
  });
  upstream = await startUpstream();
  writeCredentials(dir, { GATEWAY_TOKEN: 'gw-e2e-value' }, 'v1');
  proxy = await startProxy(
    {
      jwksUrl: `${worker.url}/.well-known/jwks.json`,
      issuer: worker.url,
      audience: `gateway:${SANDBOX}`,
      upstream: upstream.url,
      credentialsFile: join(dir, 'credentials.json'),
    },
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
  await minted?.close();
  rmSync(dir, { recursive: true, force: true });
});

it("finding 7: a user token from the real issuer goes through as its user; the agent's token is refused (insufficient_scope), another sandbox's too", async () => {
  const res = await get(await userToken());
  expect(res.status).toBe(200);
  expect(await res.json()).toMatchObject({ authorization: 'Bearer gw-e2e-value', user: USER });
  const hits = upstream.hits;
  const agent = await get(await agentToken(SANDBOX));
  expect(agent.status).toBe(401);
  expect(await challenge(agent)).toBe('Bearer error="invalid_token", error_description="insufficient_scope"');
  const other = await get(await agentToken('e2e-other'));
  expect(other.status).toBe(401);
  expect(await challenge(other)).toBe('Bearer error="invalid_token", error_description="bad_audience"');
  expect(upstream.hits).toBe(hits);
});

it('an egress sentinel from the real issuer, presented to the gateway path as a bearer token, is refused by the proxy', async () => {
  const sentinel = await sentinelOf(SANDBOX);
  expect(JSON.parse(Buffer.from(sentinel.split('.')[0]!, 'base64url').toString())).toMatchObject({ typ: 'egress+jwt' });
  const hits = upstream.hits;
  const res = await get(sentinel);
  expect(res.status).toBe(401);
  expect(await challenge(res)).toBe('Bearer error="invalid_token", error_description="invalid_typ"');
  expect(upstream.hits).toBe(hits);
});

/**
 * The rotation test signs and sends 1,000 tokens: about 4.5 s alone on a shared 2-core machine,
 * over vitest's 5 s default when other test files run beside it. The limit is generous; the test's
 * own assertions (fetch counts) are what it checks, not its speed.
 */
const FLOOD_TIMEOUT_MS = 30_000;

it(
  'rotation: the new kid is accepted after one refetch; 1,000 unknown kids cost at most one fetch',
  async () => {
    const before = await userToken();
    expect((await get(before)).status).toBe(200);
    // Two forced rotations: the key that signs now was not even `next` when the proxy fetched.
    expect((await admin('/api/admin/keys/rotate?force=true')).status).toBe(200);
    expect((await admin('/api/admin/keys/rotate?force=true')).status).toBe(200);
    const after = await userToken();
    expect(kidOf(after)).not.toBe(kidOf(before));
    const fetchesBefore = jwksFetches.n;
    const res = await get(after);
    expect(res.status).toBe(200);
    expect(jwksFetches.n).toBe(fetchesBefore + 1);
    expect((await get(await userToken())).status).toBe(200);
    expect(jwksFetches.n).toBe(fetchesBefore + 1);

    // Past the cooldown, a flood of made-up kids: one fetch at most, every request refused.
    offset += 31_000;
    const attacker = await makeKey();
    const flood = await Promise.all(
      Array.from({ length: 1000 }, (_, i) =>
        localToken(
          { ...attacker, kid: `made-up-${i}` },
          { claims: { iss: worker.url, aud: `gateway:${SANDBOX}` }, now: Date.now() + offset },
        ),
      ),
    );
    const fetchesBeforeFlood = jwksFetches.n;
    const hitsBefore = upstream.hits;
    const statuses: number[] = [];
    for (let i = 0; i < flood.length; i += 100) {
      const batch = await Promise.all(
        flood.slice(i, i + 100).map(async (t) => {
          const r = await get(t);
          await r.arrayBuffer();
          return r.status;
        }),
      );
      statuses.push(...batch);
    }
    expect(statuses.filter((s) => s === 401)).toHaveLength(1000);
    expect(jwksFetches.n - fetchesBeforeFlood).toBeLessThanOrEqual(1);
    expect(upstream.hits).toBe(hitsBefore);
  },
  FLOOD_TIMEOUT_MS,
);

it('revocation: a revoked kid is refused after its refetch, also for a token already in the cache', async () => {
  const t = await userToken();
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
  const fresh = await userToken();
  expect(kidOf(fresh)).not.toBe(kid);
  expect((await get(fresh)).status).toBe(200);
});

it('a JWKS outage keeps valid tokens working, first-seen ones included', async () => {
  const seen = await userToken();
  expect((await get(seen)).status).toBe(200);
  // The Worker reuses a user's token, so a second one takes a new signing key: a forced rotation
  // promotes `next`, which the proxy's copy of the JWKS already holds (it was published by the
  // revocation above, before the proxy's last fetch). The proxy has never verified this token.
  expect((await admin('/api/admin/keys/rotate?force=true')).status).toBe(200);
  const unseen = await userToken();
  expect(unseen).not.toBe(seen);
  expect(kidOf(unseen)).not.toBe(kidOf(seen));
  await worker.stop();
  offset += (MAX_AGE_S + 1) * 1000;
  expect((await get(unseen)).status).toBe(200);
  expect((await get(seen)).status).toBe(200);
  const health = (await (await fetch(`${proxy.url}/healthz`)).json()) as {
    status: string;
    jwks: { usable: boolean; fresh: boolean; last_error: string | null };
  };
  expect(health.jwks).toMatchObject({ usable: true, fresh: false });
  expect(health.jwks.last_error).not.toBeNull();
  expect(logs.lines).toContainEqual(expect.objectContaining({ event: 'jwks_fetch_failed', serving_stale: true }));
});
