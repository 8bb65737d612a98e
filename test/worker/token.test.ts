import { env } from 'cloudflare:test';
import { base64url, compactDecrypt, createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, SignJWT } from 'jose';
import { beforeEach, describe, expect, it } from 'vitest';
import { deriveValue } from '../../src/issuer/credentials.js';
import { adminHeaders, BASE, call, captureLogs, freshStorage, TEST_ADMIN_TOKEN } from './helpers.js';
import {
  agentKeyPair,
  assertion,
  type BootstrapFile,
  bootstrap,
  type ErrorBody,
  form,
  rawJws,
  requestToken,
  TOKEN_URL,
  tokenForm,
} from './token-helpers.js';

beforeEach(freshStorage);

async function expectRule(res: Response, rule: string, status = 401): Promise<void> {
  expect(res.status).toBe(status);
  expect(res.headers.get('Cache-Control')).toBe('no-store');
  const body = (await res.json()) as ErrorBody;
  expect(body.error).toBe(status === 401 ? 'invalid_client' : body.error);
  expect(body.error_description.split(':')[0]).toBe(rule);
}

async function jwks() {
  return createLocalJWKSet((await (await call('/.well-known/jwks.json')).json()) as { keys: [] });
}

describe('POST /oauth/token: success', () => {
  it('issues an agent token with the documented claims, signed EdDSA with the active key', async () => {
    const b = await bootstrap('sb-1');
    expect(b).toMatchObject({ client_id: 'sb-1', issuer: BASE, token_endpoint: TOKEN_URL });
    expect(b.key).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA' });
    const res = await requestToken(await assertion(b));
    expect(res.status).toBe(200);
    expect(res.headers.get('Cache-Control')).toBe('no-store');
    const body = (await res.json()) as { access_token: string; token_type: string; expires_in: number; credentials_version?: string };
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 600 });
    expect(body.credentials_version).toBeUndefined(); // no agent key registered yet
    const header = decodeProtectedHeader(body.access_token);
    expect(header).toMatchObject({ alg: 'EdDSA', typ: 'at+jwt' });
    const { payload } = await jwtVerify(body.access_token, await jwks(), {
      issuer: BASE,
      audience: 'gateway:sb-1',
      typ: 'at+jwt',
      algorithms: ['EdDSA'],
    });
    expect(payload).toMatchObject({ sub: 'sb-1', client_id: 'sb-1', scope: 'agent', cnf: { jkt: b.key.kid } });
    expect(payload.exp! - payload.iat!).toBe(600);
    expect(typeof payload.jti).toBe('string');
    expect(body.access_token.length).toBeLessThanOrEqual(8192);
    const keys = (await (await call('/api/admin/keys', { headers: adminHeaders() })).json()) as { keys: { kid: string; state: string }[] };
    expect(header.kid).toBe(keys.keys.find((k) => k.state === 'active')!.kid);
  });

  it('accepts aud as the token endpoint URL, as an array of allowed values, and alg Ed25519', async () => {
    const b = await bootstrap('sb-aud');
    expect((await requestToken(await assertion(b, { claims: { aud: TOKEN_URL } }))).status).toBe(200);
    expect((await requestToken(await assertion(b, { claims: { aud: [BASE, TOKEN_URL] } }))).status).toBe(200);
    expect((await requestToken(await assertion(b, { header: { alg: 'Ed25519' } }))).status).toBe(200);
    expect((await requestToken(await assertion(b, { header: { kid: undefined } }))).status).toBe(200);
    expect((await requestToken(await assertion(b), { client_id: 'sb-aud' })).status).toBe(200);
  });
});

describe('POST /oauth/token: every assertion rule, broken alone, is a 401 with its code', () => {
  let b: BootstrapFile;
  beforeEach(async () => {
    b = await bootstrap('sb-rules');
  });
  const now = () => Math.floor(Date.now() / 1000);
  const claims = () => ({ iss: 'sb-rules', sub: 'sb-rules', aud: BASE, iat: now(), exp: now() + 60, jti: crypto.randomUUID() });

  it('alg: none', async () => expectRule(await requestToken(rawJws({ alg: 'none' }, claims())), 'unsupported_alg'));

  it('HS256 signed with the public key bytes', async () => {
    // The classic confusion: an HMAC whose secret is the server's known public key.
    const secret = base64url.decode(b.key.x!);
    const jwt = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: b.key.kid }).sign(secret);
    await expectRule(await requestToken(jwt), 'unsupported_alg');
    const jwt2 = await new SignJWT(claims())
      .setProtectedHeader({ alg: 'HS256' })
      .sign(new TextEncoder().encode(JSON.stringify({ kty: 'OKP', crv: 'Ed25519', x: b.key.x })));
    await expectRule(await requestToken(jwt2), 'unsupported_alg');
  });

  it('a header jwk', async () => {
    const { d: _d, ...pub } = b.key;
    await expectRule(await requestToken(await assertion(b, { header: { jwk: pub } })), 'forbidden_header');
  });
  it('a header jku', async () =>
    expectRule(await requestToken(await assertion(b, { header: { jku: 'https://evil.example/jwks' } })), 'forbidden_header'));
  it('a header x5u, x5c, crit', async () => {
    await expectRule(await requestToken(await assertion(b, { header: { x5u: 'https://evil.example/cert' } })), 'forbidden_header');
    await expectRule(await requestToken(await assertion(b, { header: { x5c: ['MIIB'] } })), 'forbidden_header');
    await expectRule(await requestToken(rawJws({ alg: 'EdDSA', crit: ['exp'] }, claims(), 'AAAA')), 'forbidden_header');
  });
  it('wrong iss (no such sandbox)', async () => {
    await expectRule(await requestToken(await assertion(b, { claims: { iss: 'sb-other', sub: 'sb-other' } })), 'unknown_client');
    await expectRule(await requestToken(await assertion(b, { claims: { iss: 'Not A Sandbox!' } })), 'unknown_client');
  });
  it('sub != iss', async () => expectRule(await requestToken(await assertion(b, { claims: { sub: 'someone-else' } })), 'sub_mismatch'));
  it('wrong aud', async () =>
    expectRule(await requestToken(await assertion(b, { claims: { aud: 'https://other.example' } })), 'bad_audience'));
  it('aud array holding the issuer plus another', async () =>
    expectRule(await requestToken(await assertion(b, { claims: { aud: [BASE, 'https://other.example'] } })), 'bad_audience'));
  it('missing exp', async () => expectRule(await requestToken(await assertion(b, { drop: ['exp'] })), 'exp_missing'));
  it('missing iat', async () => expectRule(await requestToken(await assertion(b, { drop: ['iat'] })), 'iat_missing'));
  it('exp too far ahead of iat', async () =>
    expectRule(await requestToken(await assertion(b, { claims: { exp: now() + 61 } })), 'exp_too_far'));
  it('expired (beyond the skew)', async () =>
    expectRule(await requestToken(await assertion(b, { claims: { iat: now() - 120, exp: now() - 31 } })), 'expired'));
  it('iat in the future beyond the skew', async () =>
    expectRule(await requestToken(await assertion(b, { claims: { iat: now() + 40, exp: now() + 60 } })), 'iat_in_future'));
  it('nbf in the future beyond the skew', async () =>
    expectRule(await requestToken(await assertion(b, { claims: { nbf: now() + 40 } })), 'nbf_in_future'));
  it('missing jti', async () => expectRule(await requestToken(await assertion(b, { drop: ['jti'] })), 'jti_missing'));
  it('replayed jti', async () => {
    const jwt = await assertion(b);
    expect((await requestToken(jwt)).status).toBe(200);
    await expectRule(await requestToken(jwt), 'jti_replayed');
    // Another assertion reusing the jti (re-signed) is a replay too.
    const jti = decodeJwt(jwt).jti as string;
    await expectRule(await requestToken(await assertion(b, { claims: { jti } })), 'jti_replayed');
  });
  it('unknown sandbox', async () => {
    const other = { ...b, client_id: 'never-bootstrapped' };
    await expectRule(await requestToken(await assertion(other)), 'unknown_client');
  });
  it('revoked sandbox', async () => {
    const del = await call('/api/admin/sandboxes/sb-rules', { method: 'DELETE', headers: adminHeaders() });
    expect(del.status).toBe(200);
    await expectRule(await requestToken(await assertion(b)), 'client_revoked');
  });
  it('superseded bootstrap key', async () => {
    const fresh = await bootstrap('sb-rules');
    await expectRule(await requestToken(await assertion(b)), 'kid_mismatch');
    await expectRule(await requestToken(await assertion(b, { header: { kid: undefined } })), 'bad_signature');
    expect((await requestToken(await assertion(fresh))).status).toBe(200);
  });
  it('a signature by another key', async () => {
    const other = await bootstrap('sb-another');
    const forged = await assertion({ ...other, client_id: 'sb-rules' }, { header: { kid: b.key.kid } });
    await expectRule(await requestToken(forged), 'bad_signature');
  });
  it('client_id that differs from iss', async () => {
    await bootstrap('sb-x');
    await expectRule(await requestToken(await assertion(b), { client_id: 'sb-x' }), 'client_id_mismatch');
  });
  it('garbage instead of a JWT', async () => {
    for (const junk of [
      'garbage',
      'a.b',
      'a.b.c.d',
      '!!!.???.***',
      rawJws({ alg: 'EdDSA' }, claims(), '').replace(/\.$/, '.%%'),
      'eyJhbGciOiJFZERTQSJ9.W10.AAAA',
    ]) {
      await expectRule(await requestToken(junk), 'malformed_assertion');
    }
  });
  it('a 100 KiB assertion is refused with 413 before parsing; a 9 KiB one with its rule', async () => {
    const huge = await assertion(b, { claims: { pad: 'x'.repeat(100 * 1024) } });
    const res = await requestToken(huge);
    expect(res.status).toBe(413);
    expect(res.headers.get('Cache-Control')).toBe('no-store');
    expect(((await res.json()) as ErrorBody).error).toBe('invalid_request');
    await expectRule(await requestToken(await assertion(b, { claims: { pad: 'x'.repeat(9 * 1024) } })), 'assertion_too_large');
  });
});

describe('POST /oauth/token: malformed requests', () => {
  it('wrong content type, missing parameters, duplicates, unknown grant type: 400, never 500', async () => {
    const b = await bootstrap('sb-req');
    const jwt = await assertion(b);
    const cases: [RequestInit, string][] = [
      [
        { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ grant_type: 'client_credentials' }) },
        'invalid_request',
      ],
      [{ method: 'POST', body: 'grant_type=client_credentials' }, 'invalid_request'],
      [form({ client_assertion: jwt }), 'invalid_request'],
      [form({ grant_type: 'password', client_assertion: jwt }), 'unsupported_grant_type'],
      [form({ grant_type: 'authorization_code' }), 'unsupported_grant_type'],
      [form({ grant_type: 'client_credentials', client_assertion: jwt }), 'invalid_request'],
      [form({ grant_type: 'client_credentials', client_assertion_type: 'urn:other', client_assertion: jwt }), 'invalid_request'],
      [
        { ...tokenForm(jwt), body: `${new URLSearchParams({ grant_type: 'client_credentials' })}&${tokenForm(jwt).body as string}` },
        'invalid_request',
      ],
      [tokenForm(jwt, { enc_jwk: '{not json' }), 'invalid_request'],
      [tokenForm(jwt, { enc_jwk: JSON.stringify({ kty: 'OKP', crv: 'X25519', x: 'A'.repeat(43), d: 'B'.repeat(43) }) }), 'invalid_request'],
      [tokenForm(jwt, { enc_jwk: JSON.stringify({ kty: 'EC', crv: 'P-256', x: 'A', y: 'B' }) }), 'invalid_request'],
      [tokenForm(jwt, { unexpected: '1' }), 'invalid_request'],
    ];
    for (const [init, error] of cases) {
      const res = await call('/oauth/token', init);
      expect(res.status, String(init.body).slice(0, 80)).toBe(400);
      expect(res.headers.get('Cache-Control')).toBe('no-store');
      const body = (await res.json()) as ErrorBody;
      expect(body.error).toBe(error);
      expect(body.error_description.length).toBeGreaterThan(5);
    }
    const get = await call('/oauth/token');
    expect(get.status).toBe(400);
    expect(get.headers.get('Cache-Control')).toBe('no-store');
  });
});

describe('replay under concurrency', () => {
  it('two copies of one assertion at the same moment: exactly one wins', async () => {
    const b = await bootstrap('sb-race');
    for (let round = 0; round < 5; round++) {
      const jwt = await assertion(b);
      const results = await Promise.all(Array.from({ length: 8 }, () => requestToken(jwt)));
      const statuses = results.map((r) => r.status).sort();
      expect(statuses.filter((s) => s === 200)).toHaveLength(1);
      expect(statuses.filter((s) => s === 401)).toHaveLength(7);
    }
  });
});

describe('credentials', () => {
  async function decrypt(token: string, privateKey: CryptoKey) {
    const claims = decodeJwt(token);
    const { plaintext, protectedHeader } = await compactDecrypt(claims.cred as string, privateKey);
    expect(protectedHeader).toMatchObject({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM' });
    return { claims, cred: JSON.parse(new TextDecoder().decode(plaintext)) as { version: string; values: Record<string, string> } };
  }

  async function issue(b: BootstrapFile, enc: { publicJwk: object } | undefined, envOverride: Record<string, unknown> = {}) {
    const res = await requestToken(await assertion(b), enc ? { enc_jwk: JSON.stringify(enc.publicJwk) } : {}, envOverride);
    expect(res.status).toBe(200);
    return (await res.json()) as { access_token: string; credentials_version?: string };
  }

  it('the cred JWE decrypts with the agent X25519 key to the configured values', async () => {
    const b = await bootstrap('sb-cred');
    const agent = await agentKeyPair();
    const extra = {
      CREDENTIALS: JSON.stringify({
        GATEWAY_TOKEN: { secret: 'MOLTBOT_GATEWAY_TOKEN', derive: true },
        ANTHROPIC_API_KEY: { secret: 'ANTHROPIC_KEY' },
      }),
      ANTHROPIC_KEY: 'sk-test-plain-value',
    };
    const body = await issue(b, agent, extra);
    const { claims, cred } = await decrypt(body.access_token, agent.privateKey);
    expect(cred.values).toEqual({
      ANTHROPIC_API_KEY: 'sk-test-plain-value',
      GATEWAY_TOKEN: await deriveValue(env.MOLTBOT_GATEWAY_TOKEN as string, 'GATEWAY_TOKEN', 'sb-cred'),
    });
    expect(claims.cred_ver).toBe(cred.version);
    expect(body.credentials_version).toBe(cred.version);
    // The registered key stays: a later request without enc_jwk still gets credentials.
    const again = await issue(b, undefined, extra);
    expect((await decrypt(again.access_token, agent.privateKey)).cred).toEqual(cred);
    // Neither the master nor the plain value appears in the clear in the token.
    expect(body.access_token).not.toContain(btoa('sk-test-plain-value').replace(/=+$/, ''));
  });

  it('derived values differ between sandboxes and change with the master secret; cred_ver only with a delivered value', async () => {
    const agent = await agentKeyPair();
    const b1 = await bootstrap('sb-d1');
    const b2 = await bootstrap('sb-d2');
    const v1 = await decrypt((await issue(b1, agent)).access_token, agent.privateKey);
    const v2 = await decrypt((await issue(b2, agent)).access_token, agent.privateKey);
    expect(v1.cred.values.GATEWAY_TOKEN).not.toBe(v2.cred.values.GATEWAY_TOKEN);
    expect(v1.cred.values.GATEWAY_TOKEN).not.toContain(env.MOLTBOT_GATEWAY_TOKEN as string);

    // Same secrets again: same version.
    const same = await decrypt((await issue(b1, agent)).access_token, agent.privateKey);
    expect(same.cred.version).toBe(v1.cred.version);

    // New master: new derived value and version.
    const rotated = await decrypt(
      (await issue(b1, agent, { MOLTBOT_GATEWAY_TOKEN: 'a-new-master-value-0123456789' })).access_token,
      agent.privateKey,
    );
    expect(rotated.cred.values.GATEWAY_TOKEN).not.toBe(v1.cred.values.GATEWAY_TOKEN);
    expect(rotated.cred.version).not.toBe(v1.cred.version);

    // A secret that is set but not delivered does not change the version.
    const unrelated = await decrypt((await issue(b1, agent, { SOME_OTHER_SECRET: 'x' })).access_token, agent.privateKey);
    expect(unrelated.cred.version).toBe(v1.cred.version);
  });

  it('a CREDENTIALS entry naming an unset secret is a configuration error naming it', async () => {
    const { result: res, lines } = await captureLogs(async () =>
      call('/.well-known/jwks.json', {}, { CREDENTIALS: JSON.stringify({ OPENAI_API_KEY: { secret: 'OPENAI_KEY' } }) }),
    );
    expect(res.status).toBe(500);
    expect(((await res.json()) as ErrorBody).error_description).toBe('configuration error');
    expect(lines.some((l) => l.includes('"option":"OPENAI_KEY"'))).toBe(true);
  });
});

describe('sandboxes and audit', () => {
  it('a revoked sandbox cannot get a token; re-bootstrapped, it works with the new key only', async () => {
    const old = await bootstrap('sb-life');
    expect((await requestToken(await assertion(old))).status).toBe(200);
    expect((await call('/api/admin/sandboxes/sb-life', { method: 'DELETE', headers: adminHeaders() })).status).toBe(200);
    await expectRule(await requestToken(await assertion(old)), 'client_revoked');
    const fresh = await bootstrap('sb-life');
    expect((await requestToken(await assertion(fresh))).status).toBe(200);
    await expectRule(await requestToken(await assertion(old)), 'kid_mismatch');
  });

  it('sandbox ids are validated; unknown sandbox delete is 404', async () => {
    for (const bad of ['UPPER', '-lead', 'a_b', 'x'.repeat(64), 'dot.ted']) {
      const res = await call(`/api/admin/sandboxes/${bad}/bootstrap`, { method: 'POST', headers: adminHeaders() });
      expect(res.status, bad).toBe(400);
    }
    expect((await call('/api/admin/sandboxes/nobody', { method: 'DELETE', headers: adminHeaders() })).status).toBe(404);
  });

  it('the bootstrap answer is no-store and requires admin auth', async () => {
    expect(
      (await call('/api/admin/sandboxes/sb-a/bootstrap', { method: 'POST', headers: { 'Content-Type': 'application/json' } })).status,
    ).toBe(401);
    // A simple (form-like) POST is refused before authentication: the CSRF rule (README, Security).
    expect((await call('/api/admin/sandboxes/sb-a/bootstrap', { method: 'POST' })).status).toBe(403);
    const res = await call('/api/admin/sandboxes/sb-a/bootstrap', { method: 'POST', headers: adminHeaders() });
    expect(res.headers.get('Cache-Control')).toBe('no-store');
  });

  it('logs and audit of a whole scenario hold no secret, token, assertion or private key', async () => {
    const agent = await agentKeyPair();
    const secrets: string[] = [TEST_ADMIN_TOKEN, env.MOLTBOT_GATEWAY_TOKEN as string, env.SIGNING_KEY_KEK as string];
    const { lines, result } = await captureLogs(async () => {
      const b = await bootstrap('sb-audit');
      secrets.push(b.key.d!);
      const sent: string[] = [];
      const ok = await assertion(b);
      sent.push(ok);
      const res = await requestToken(ok, { enc_jwk: JSON.stringify(agent.publicJwk) });
      const body = (await res.json()) as { access_token: string };
      sent.push(body.access_token);
      const { cred } = await (async () => {
        const c = decodeJwt(body.access_token);
        const { plaintext } = await compactDecrypt(c.cred as string, agent.privateKey);
        return { cred: JSON.parse(new TextDecoder().decode(plaintext)) as { values: Record<string, string> } };
      })();
      secrets.push(...Object.values(cred.values));
      await requestToken(ok); // replay
      const bad = await assertion(b, { claims: { aud: 'https://x.example' } });
      sent.push(bad);
      await requestToken(bad);
      await requestToken(rawJws({ alg: 'none' }, { iss: 'sb-audit' }));
      await call('/api/admin/keys/rotate?force=true', { method: 'POST', headers: adminHeaders() });
      await call('/api/admin/sandboxes/sb-audit', { method: 'DELETE', headers: adminHeaders() });
      await requestToken(await assertion(b));
      const audit = await call('/api/admin/audit?sandbox=sb-audit&limit=100', { headers: adminHeaders() });
      const all = await call('/api/admin/audit', { headers: adminHeaders() });
      return { sent, audit: await audit.text(), all: await all.text() };
    });
    const listing = JSON.parse(result.audit) as {
      events: { event: string; outcome: string; code?: string; jti?: string; kid?: string; cred_ver?: string }[];
      refusals: { code: string; count: number; authenticated: boolean }[];
    };
    const events = listing.events;
    // Newest first; issuance with kid, jti and cred_ver; admin actions. Refusals are counted per rule.
    expect(events.map((e) => e.event)).toEqual(['revoke', 'token_issued', 'bootstrap']);
    const counted = Object.fromEntries(listing.refusals.map((r) => [r.code, [r.count, r.authenticated]]));
    expect(counted).toEqual({ client_revoked: [1, false], unsupported_alg: [1, false], bad_audience: [1, true], jti_replayed: [1, true] });
    const issued = events.find((e) => e.event === 'token_issued')!;
    expect(issued.kid).toBeDefined();
    expect(issued.jti).toBe(decodeJwt(result.sent[1]!).jti);
    expect(issued.cred_ver).toMatch(/^[A-Za-z0-9_-]{16}$/);
    const merged = JSON.parse(result.all) as { events: { event: string }[] };
    expect(merged.events.some((e) => e.event === 'key_rotate_forced')).toBe(true);
    expect(merged.events.some((e) => e.event === 'token_issued')).toBe(true);

    const everything = [...lines, result.audit, result.all].join('\n');
    for (const s of [...secrets, ...result.sent]) expect(everything).not.toContain(s);
    // Not even a token's signature or an assertion's payload segment.
    for (const t of result.sent) for (const part of t.split('.')) if (part.length > 20) expect(everything).not.toContain(part);
  });

  it('audit limit and filters are validated', async () => {
    for (const q of ['limit=0', 'limit=abc', 'limit=100000', 'sandbox=BAD']) {
      expect((await call(`/api/admin/audit?${q}`, { headers: adminHeaders() })).status, q).toBe(400);
    }
  });
});

describe('security review: the client-assertion parser is as strict as the verifier (src/verifier/compact.ts)', () => {
  const enc = (text: string) => base64url.encode(new TextEncoder().encode(text));
  /** Signs exactly the given segments, so only their spelling is wrong, never the signature. */
  async function signedRaw(b: BootstrapFile, h: string, p: string): Promise<string> {
    const { importJWK } = await import('jose');
    const key = (await importJWK(b.key, 'EdDSA')) as CryptoKey;
    const sig = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, key, new TextEncoder().encode(`${h}.${p}`)));
    return `${h}.${p}.${base64url.encode(sig)}`;
  }
  const now = () => Math.floor(Date.now() / 1000);
  const claimsOf = (id: string, extra: Record<string, unknown> = {}) => ({
    iss: id,
    sub: id,
    aud: BASE,
    iat: now(),
    exp: now() + 60,
    jti: crypto.randomUUID(),
    ...extra,
  });
  /** Flips unused trailing bits of a base64url segment: same bytes, another spelling. */
  function nonCanonical(seg: string): string {
    const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const rem = seg.length % 4;
    if (rem === 0) throw new Error('pick a segment whose length is not a multiple of 4');
    const last = A.indexOf(seg.at(-1)!);
    return seg.slice(0, -1) + A[last | (rem === 2 ? 0x01 : 0x01)]!;
  }

  it('the control: a hand-signed assertion with canonical segments is accepted', async () => {
    const b = await bootstrap('sb-strict');
    expect(
      (
        await requestToken(
          await signedRaw(b, enc(JSON.stringify({ alg: 'EdDSA', kid: b.key.kid })), enc(JSON.stringify(claimsOf('sb-strict')))),
        )
      ).status,
    ).toBe(200);
  });

  it('refuses a byte-order mark before the header JSON (malformed_assertion)', async () => {
    const b = await bootstrap('sb-strict');
    await expectRule(
      await requestToken(
        await signedRaw(b, enc(`\uFEFF${JSON.stringify({ alg: 'EdDSA', kid: b.key.kid })}`), enc(JSON.stringify(claimsOf('sb-strict')))),
      ),
      'malformed_assertion',
    );
  });

  it('refuses a zip header (forbidden_header)', async () => {
    const b = await bootstrap('sb-strict');
    await expectRule(
      await requestToken(
        await signedRaw(b, enc(JSON.stringify({ alg: 'EdDSA', kid: b.key.kid, zip: 'DEF' })), enc(JSON.stringify(claimsOf('sb-strict')))),
      ),
      'forbidden_header',
    );
  });

  it('refuses non-canonical base64url trailing bits in header, claims or signature (malformed_assertion)', async () => {
    const b = await bootstrap('sb-strict');
    // Pad the JSON until each segment's length is not a multiple of 4, so it has unused bits.
    let pad = '';
    let h = enc(JSON.stringify({ alg: 'EdDSA', kid: b.key.kid }));
    while (h.length % 4 === 0) h = enc(JSON.stringify({ alg: 'EdDSA', kid: b.key.kid, x: (pad += 'a') }));
    let p = enc(JSON.stringify(claimsOf('sb-strict')));
    while (p.length % 4 === 0) p = enc(JSON.stringify(claimsOf('sb-strict', { x: (pad += 'a') })));
    await expectRule(await requestToken(await signedRaw(b, nonCanonical(h), p)), 'malformed_assertion');
    await expectRule(await requestToken(await signedRaw(b, h, nonCanonical(p))), 'malformed_assertion');
    const good = await signedRaw(b, h, p);
    const [gh, gp, gs] = good.split('.') as [string, string, string];
    await expectRule(await requestToken(`${gh}.${gp}.${nonCanonical(gs)}`), 'malformed_assertion');
  });

  it('refuses duplicate JSON members in header or claims (duplicate_member)', async () => {
    const b = await bootstrap('sb-strict');
    const c = claimsOf('sb-strict');
    const claimsText = JSON.stringify(c).replace('{', `{"sub":"someone-else",`);
    await expectRule(
      await requestToken(await signedRaw(b, enc(JSON.stringify({ alg: 'EdDSA', kid: b.key.kid })), enc(claimsText))),
      'duplicate_member',
    );
    await expectRule(
      await requestToken(await signedRaw(b, enc(`{"alg":"none","alg":"EdDSA","kid":"${b.key.kid}"}`), enc(JSON.stringify(c)))),
      'duplicate_member',
    );
  });

  it('refuses exp before iat (exp_before_iat)', async () => {
    const b = await bootstrap('sb-strict');
    await expectRule(await requestToken(await assertion(b, { claims: { iat: now() + 10, exp: now() + 5 } })), 'exp_before_iat');
  });
});

describe('security finding 6: low-order X25519 agent keys', () => {
  const P = (1n << 255n) - 19n;
  /** An X25519 u-coordinate as a JWK x (32 bytes, little-endian). */
  const u = (n: bigint) => base64url.encode(Uint8Array.from({ length: 32 }, (_, i) => Number((n >> BigInt(8 * i)) & 0xffn)));
  const LOW_ORDER = { 'u=0': 0n, 'u=1': 1n, 'u=p-1': P - 1n, 'u=p': P };

  for (const [name, value] of Object.entries(LOW_ORDER)) {
    it(`finding 6: enc_jwk with ${name} is 400 invalid_request, stores nothing, and later refreshes work`, async () => {
      const b = await bootstrap('sb-loworder');
      const res = await requestToken(await assertion(b), { enc_jwk: JSON.stringify({ kty: 'OKP', crv: 'X25519', x: u(value) }) });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({
        error: 'invalid_request',
        error_description: 'enc_jwk is not a usable X25519 public key (a low-order point, or not on the curve)',
      });
      // Nothing registered: the next refresh is a normal token, and a good key still registers.
      const next = await requestToken(await assertion(b));
      expect(next.status).toBe(200);
      expect(((await next.json()) as { credentials_version?: string }).credentials_version).toBeUndefined();
      const agent = await agentKeyPair();
      const good = await requestToken(await assertion(b), { enc_jwk: JSON.stringify(agent.publicJwk) });
      expect(good.status).toBe(200);
      expect(((await good.json()) as { credentials_version?: string }).credentials_version).toMatch(/^[A-Za-z0-9_-]{16}$/);
      // Audited: only what was delivered; a cred_ver only on the token that carried credentials.
      const { events } = (await (await call('/api/admin/audit?sandbox=sb-loworder', { headers: adminHeaders() })).json()) as {
        events: { event: string; cred_ver?: string }[];
      };
      expect(events.map((e) => [e.event, e.cred_ver !== undefined])).toEqual([
        ['token_issued', true],
        ['token_issued', false],
        ['bootstrap', false],
      ]);
    });
  }

  it('finding 6: a low-order key already stored (before this check) is dropped, not a 500 on every refresh', async () => {
    const b = await bootstrap('sb-poisoned');
    const { runInDurableObject } = await import('cloudflare:test');
    const stub = env.SANDBOX_AUTHORITY.get(env.SANDBOX_AUTHORITY.idFromName('sb-poisoned'));
    await runInDurableObject(stub, (_i, s) => {
      s.storage.sql.exec(
        "INSERT INTO meta (k, v) VALUES ('enc_key', ?)",
        JSON.stringify({ jwk: { kty: 'OKP', crv: 'X25519', x: u(0n) }, thumbprint: 'x', registeredAt: 0 }),
      );
    });
    for (let i = 0; i < 2; i++) {
      const res = await requestToken(await assertion(b));
      expect(res.status).toBe(200);
      expect(((await res.json()) as { credentials_version?: string }).credentials_version).toBeUndefined();
    }
    const status = (await (await call('/api/admin/sandboxes/sb-poisoned', { headers: adminHeaders() })).json()) as {
      agent_key_registered: boolean;
    };
    expect(status.agent_key_registered).toBe(false);
  });
});
