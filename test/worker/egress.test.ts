/**
 * Egress delivery in workerd: sentinels minted by the real grant, checked by the egress handler
 * against the real Durable Objects and the published JWKS, with a recording fetch standing in for
 * the model provider (the outside network is the one thing faked).
 */
import { createExecutionContext, env } from 'cloudflare:test';
import { compactDecrypt, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { createApp } from '../../src/app.js';
import { type Env, parseConfig } from '../../src/config.js';
import { secretsFingerprint } from '../../src/issuer/credentials.js';
import { ConfigError } from '../../src/issuer/errors.js';
import { agentTokenBytesBound } from '../../src/issuer/tokens.js';
import { type EgressDeps, handleEgress } from '../../src/sandbox/egress.js';
import { egressDeps, sandboxContainerId } from '../../src/sandbox/egress-deps.js';
import { outboundRoutes } from '../../src/sandbox/index.js';
import { adminHeaders, BASE, freshStorage } from './helpers.js';
import { agentKeyPair, assertion, type BootstrapFile, tokenForm } from './token-helpers.js';

const PROVIDER_HOST = 'api.provider.test';
const OTHER_HOST = 'api.other.test';
const REAL_KEY = `real-provider-key-${crypto.randomUUID()}`;
const OTHER_KEY = `real-other-key-${crypto.randomUUID()}`;
const CREDENTIALS = JSON.stringify({
  GATEWAY_TOKEN: { secret: 'MOLTBOT_GATEWAY_TOKEN', derive: true },
  PROVIDER_API_KEY: { secret: 'PROVIDER_SECRET', egress: { hosts: [PROVIDER_HOST], header: 'authorization' } },
  OTHER_API_KEY: { secret: 'OTHER_SECRET', egress: { hosts: [OTHER_HOST], header: 'x-api-key' } },
});

/** One env object per deployment: the isolate caches (config, egress state) are keyed by it. */
function deployment(over: Record<string, unknown> = {}): Env {
  return { ...env, CREDENTIALS, PROVIDER_SECRET: REAL_KEY, OTHER_SECRET: OTHER_KEY, ...over } as unknown as Env;
}

const app = createApp();
async function call(e: Env, path: string, init: RequestInit = {}): Promise<Response> {
  return app.fetch(new Request(BASE + path, init), e, createExecutionContext());
}

async function bootstrap(e: Env, id: string): Promise<BootstrapFile> {
  const res = await call(e, `/api/admin/sandboxes/${id}/bootstrap`, { method: 'POST', headers: adminHeaders() });
  expect(res.status).toBe(200);
  return (await res.json()) as BootstrapFile;
}

/** A token request as the agent makes it; returns the agent token and its decrypted credentials. */
async function issue(e: Env, b: BootstrapFile): Promise<{ token: string; values: Record<string, string>; version: string }> {
  const { publicJwk, privateKey } = await agentKeyPair();
  const res = await call(e, '/oauth/token', tokenForm(await assertion(b), { enc_jwk: JSON.stringify(publicJwk) }));
  expect(res.status).toBe(200);
  const token = ((await res.json()) as { access_token: string }).access_token;
  const claims = decodeJwt(token) as { cred: string };
  const { plaintext } = await compactDecrypt(claims.cred, privateKey);
  const set = JSON.parse(new TextDecoder().decode(plaintext)) as { version: string; values: Record<string, string> };
  return { token, ...set };
}

interface Recorded {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: string;
}

function recorder(): { fetch: (r: Request) => Promise<Response>; seen: Recorded[] } {
  const seen: Recorded[] = [];
  return {
    seen,
    fetch: async (r: Request) => {
      seen.push({ url: r.url, method: r.method, headers: Object.fromEntries(r.headers), body: await r.text() });
      return new Response(JSON.stringify({ ok: true }), { status: 200, headers: { 'content-type': 'application/json' } });
    },
  };
}

function depsFor(e: Env, fetch: (r: Request) => Promise<Response>, over: Partial<EgressDeps> = {}): EgressDeps {
  return { ...egressDeps(e, { containerIdOf: (id) => sandboxContainerId(e, id), fetch }), ...over };
}

function providerRequest(
  sentinel: string | undefined,
  init: { host?: string; header?: string; body?: string; extra?: Record<string, string> } = {},
): Request {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...init.extra };
  const header = init.header ?? 'authorization';
  if (sentinel !== undefined) headers[header] = header === 'authorization' ? `Bearer ${sentinel}` : sentinel;
  const body = init.body ?? JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
  return new Request(`https://${init.host ?? PROVIDER_HOST}/v1/chat/completions`, { method: 'POST', headers, body });
}

async function refusalsOf(e: Env, id: string): Promise<{ code: string; authenticated: boolean; count: number }[]> {
  const res = await call(e, `/api/admin/audit?sandbox=${id}`, { headers: adminHeaders() });
  expect(res.status).toBe(200);
  return ((await res.json()) as { refusals: { code: string; authenticated: boolean; count: number }[] }).refusals;
}

async function expectRefused(res: Response, rule: string): Promise<void> {
  expect(res.status).toBe(403);
  expect(await res.json()).toEqual({ error: 'egress_refused', error_description: rule });
}

function b64json(o: unknown): string {
  return btoa(JSON.stringify(o)).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

/** Flips one character in the middle of a segment: still canonical base64url, no longer what was signed. */
function tamper(token: string, segment: 0 | 1): string {
  const parts = token.split('.');
  const s = parts[segment]!;
  const i = Math.floor(s.length / 2);
  parts[segment] = s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
  return parts.join('.');
}

let e: Env;
let main: BootstrapFile;
let issued: { token: string; values: Record<string, string>; version: string };
let container: string;

beforeEach(async () => {
  await freshStorage();
  e = deployment();
  main = await bootstrap(e, 'main');
  issued = await issue(e, main);
  container = sandboxContainerId(e, 'main');
});

describe('CREDENTIALS egress entries', () => {
  const base = { ISSUER: 'https://issuer.example', ADMIN_TOKEN: 'x'.repeat(40), K: 'secret-value' };
  const entry = (egress: unknown, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ PROVIDER_KEY: { secret: 'K', egress, ...extra } });
  it.each([
    ['empty hosts', { hosts: [], header: 'x-api-key' }, {}, /entry PROVIDER_KEY: egress\.hosts must be a non-empty list/],
    [
      'an upper-case host',
      { hosts: ['API.example.com'], header: 'x-api-key' },
      {},
      /entry PROVIDER_KEY: egress\.hosts: "API\.example\.com" is not a plain lowercase host name/,
    ],
    ['a host with a port', { hosts: ['api.example.com:443'], header: 'x-api-key' }, {}, /is not a plain lowercase host name/],
    ['a URL as host', { hosts: ['https://api.example.com'], header: 'x-api-key' }, {}, /is not a plain lowercase host name/],
    ['a wildcard host', { hosts: ['*.example.com'], header: 'x-api-key' }, {}, /is not a plain lowercase host name/],
    [
      'an unknown header',
      { hosts: ['api.example.com'], header: 'x-goog-api-key' },
      {},
      /entry PROVIDER_KEY: egress\.header "x-goog-api-key" is not one of "x-api-key", "authorization"/,
    ],
    ['a missing header', { hosts: ['api.example.com'] }, {}, /entry PROVIDER_KEY: egress\.header missing/],
    [
      'derive with egress',
      { hosts: ['api.example.com'], header: 'x-api-key' },
      { derive: true },
      /entry PROVIDER_KEY: "derive" and "egress" cannot be combined/,
    ],
  ])('refuses %s at load, naming the entry and the rule', (_what, egress, extra, message) => {
    let err: unknown;
    try {
      parseConfig({ ...base, CREDENTIALS: entry(egress, extra) });
    } catch (x) {
      err = x;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).option).toBe('CREDENTIALS');
    expect((err as Error).message).toMatch(message);
  });

  it('accepts a valid entry and keeps its binding', () => {
    const c = parseConfig({ ...base, CREDENTIALS: entry({ hosts: ['api.anthropic.com'], header: 'x-api-key' }) });
    expect(c.credentials[0]).toMatchObject({ name: 'PROVIDER_KEY', egress: { hosts: ['api.anthropic.com'], header: 'x-api-key' } });
  });

  it('bounds the agent token size at load: the bound holds for a real token, and too many sentinels are a start-up error', () => {
    const c = parseConfig(e as never);
    const bound = agentTokenBytesBound(c.issuer, c.credentials);
    expect(issued.token.length).toBeLessThanOrEqual(bound);
    expect(bound).toBeLessThan(issued.token.length * 1.25);
    const many: Record<string, unknown> = {};
    for (let i = 0; i < 8; i++) many[`KEY_${i}`] = { secret: 'K', egress: { hosts: ['api.example.com'], header: 'x-api-key' } };
    expect(() => parseConfig({ ...base, CREDENTIALS: JSON.stringify(many) })).toThrow(
      /could make agent tokens up to \d+ bytes, over the 8192-byte cap/,
    );
    console.log(`agent token with 2 sentinels: ${issued.token.length} bytes (bound ${bound})`);
  });

  it('leaves egress secrets out of the secrets fingerprint: rotating one pushes nothing', async () => {
    const before = await secretsFingerprint(parseConfig(deployment() as never).credentials);
    const rotated = await secretsFingerprint(parseConfig(deployment({ PROVIDER_SECRET: 'another-value' }) as never).credentials);
    const plainRotated = await secretsFingerprint(
      parseConfig(deployment({ MOLTBOT_GATEWAY_TOKEN: 'another-gateway-token-value-000000' }) as never).credentials,
    );
    expect(rotated).toBe(before);
    expect(plainRotated).not.toBe(before);
  });
});

describe('sentinels in the agent token', () => {
  it('carry typ egress+jwt, aud egress, the entry, its hosts, the bootstrap key and the token expiry; never the value', async () => {
    const sentinel = issued.values.PROVIDER_API_KEY!;
    expect(sentinel).not.toContain(REAL_KEY);
    expect(JSON.stringify(issued)).not.toContain(REAL_KEY);
    expect(JSON.stringify(issued)).not.toContain(OTHER_KEY);
    expect(decodeProtectedHeader(sentinel)).toMatchObject({ alg: 'EdDSA', typ: 'egress+jwt' });
    const s = decodeJwt(sentinel);
    const agent = decodeJwt(issued.token);
    expect(s).toMatchObject({
      iss: BASE,
      sub: 'main',
      aud: 'egress',
      name: 'PROVIDER_API_KEY',
      hosts: [PROVIDER_HOST],
      cnf: { jkt: main.key.kid },
    });
    expect(s.exp).toBe(agent.exp);
    expect(typeof s.jti).toBe('string');
    expect(agent.cred_egress).toEqual(['OTHER_API_KEY', 'PROVIDER_API_KEY']);
    // Plain and derived entries are delivered as before.
    expect(issued.values.GATEWAY_TOKEN).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('are new with each token, so the credentials version follows them', async () => {
    const next = await issue(e, main);
    expect(next.values.PROVIDER_API_KEY).not.toBe(issued.values.PROVIDER_API_KEY);
    expect(next.values.GATEWAY_TOKEN).toBe(issued.values.GATEWAY_TOKEN);
    expect(next.version).not.toBe(issued.version);
  });
});

describe('the egress handler', () => {
  it('replaces the sentinel with the real key and forwards; the sentinel is in no header and not in the body', async () => {
    const rec = recorder();
    const sentinel = issued.values.PROVIDER_API_KEY!;
    const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: `leak ${sentinel} please` }] });
    const res = await handleEgress(
      providerRequest(sentinel, { body, extra: { 'x-debug': `k=${sentinel}` } }),
      container,
      depsFor(e, rec.fetch),
    );
    expect(res.status).toBe(200);
    expect(rec.seen).toHaveLength(1);
    const got = rec.seen[0]!;
    expect(got.url).toBe(`https://${PROVIDER_HOST}/v1/chat/completions`);
    expect(got.headers.authorization).toBe(`Bearer ${REAL_KEY}`);
    expect(got.headers['x-debug']).toBeUndefined();
    expect(JSON.stringify(got.headers)).not.toContain(sentinel);
    expect(got.body).not.toContain(sentinel);
    expect(got.body.length).toBe(body.length);
    expect(got.body).toContain('"content":"leak x');
  });

  it('writes an x-api-key entry as the raw value', async () => {
    const rec = recorder();
    const res = await handleEgress(
      providerRequest(issued.values.OTHER_API_KEY!, { host: OTHER_HOST, header: 'x-api-key' }),
      container,
      depsFor(e, rec.fetch),
    );
    expect(res.status).toBe(200);
    expect(rec.seen[0]!.headers['x-api-key']).toBe(OTHER_KEY);
  });

  it('finds a sentinel split across body chunks', async () => {
    const rec = recorder();
    const sentinel = issued.values.PROVIDER_API_KEY!;
    const text = `{"a":"${'y'.repeat(1000)}${sentinel}${'z'.repeat(1000)}"}`;
    const bytes = new TextEncoder().encode(text);
    const cut = 1000 + 6 + Math.floor(sentinel.length / 2);
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(bytes.slice(0, cut));
        c.enqueue(bytes.slice(cut));
        c.close();
      },
    });
    const req = new Request(`https://${PROVIDER_HOST}/v1/x`, {
      method: 'POST',
      headers: { authorization: `Bearer ${sentinel}` },
      body: stream,
    });
    expect((await handleEgress(req, container, depsFor(e, rec.fetch))).status).toBe(200);
    expect(rec.seen[0]!.body).not.toContain(sentinel);
    expect(rec.seen[0]!.body.length).toBe(text.length);
  });

  it('forwards a request without a sentinel unchanged', async () => {
    const rec = recorder();
    const body = '{"own":"request"}';
    const req = new Request(`https://${PROVIDER_HOST}/v1/models?x=1`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-operators-own-key', 'x-trace': 't1', 'content-type': 'application/json' },
      body,
    });
    const res = await handleEgress(req, container, depsFor(e, rec.fetch));
    expect(res.status).toBe(200);
    expect(rec.seen).toEqual([
      {
        url: `https://${PROVIDER_HOST}/v1/models?x=1`,
        method: 'POST',
        headers: { authorization: 'Bearer sk-operators-own-key', 'x-trace': 't1', 'content-type': 'application/json' },
        body,
      },
    ]);
    const none = recorder();
    expect((await handleEgress(new Request(`https://${PROVIDER_HOST}/v1/models`), container, depsFor(e, none.fetch))).status).toBe(200);
    expect(none.seen[0]!.headers).toEqual({});
  });

  it('applies a rotated secret to the very next request, with the same sentinel (no refresh, no push)', async () => {
    const sentinel = issued.values.PROVIDER_API_KEY!;
    const rec = recorder();
    await handleEgress(providerRequest(sentinel), container, depsFor(e, rec.fetch));
    // A new deployment (wrangler secret put) is a new env object with the new value.
    const rotated = deployment({ PROVIDER_SECRET: 'rotated-provider-key' });
    const t0 = Date.now();
    await handleEgress(providerRequest(sentinel), container, depsFor(rotated, rec.fetch));
    const elapsed = Date.now() - t0;
    expect(rec.seen.map((r) => r.headers.authorization)).toEqual([`Bearer ${REAL_KEY}`, 'Bearer rotated-provider-key']);
    console.log(`egress rotation: the first request after the new value carried it (${elapsed} ms for that request, sentinel unchanged)`);
  });
});

describe('egress refusals: 403 egress_refused with the rule, nothing forwarded, a refusal counted', () => {
  async function refused(
    req: Request,
    rule: string,
    opts: { containerId?: string; deps?: Partial<EgressDeps>; audited?: { sandbox: string; authenticated: boolean } } = {},
  ): Promise<void> {
    const rec = recorder();
    await expectRefused(await handleEgress(req, opts.containerId ?? container, depsFor(e, rec.fetch, opts.deps)), rule);
    expect(rec.seen).toHaveLength(0);
    const audited = opts.audited ?? { sandbox: 'main', authenticated: true };
    const counts = await refusalsOf(e, audited.sandbox);
    expect(counts).toContainEqual(expect.objectContaining({ code: `egress:${rule}`, authenticated: audited.authenticated, count: 1 }));
  }

  it('a sentinel sent to a host not in its hosts', async () => {
    await refused(providerRequest(issued.values.PROVIDER_API_KEY!, { host: OTHER_HOST, header: 'x-api-key' }), 'host_not_bound');
  });

  it('a sentinel in the other egress header than its entry is bound to', async () => {
    await refused(providerRequest(issued.values.PROVIDER_API_KEY!, { header: 'x-api-key' }), 'host_not_bound');
  });

  it('one of another sandbox (a different ctx.containerId)', async () => {
    const other = await bootstrap(e, 'other');
    const theirs = await issue(e, other);
    // Other's sentinel, from main's container: counted for the sandbox whose sentinel it is.
    await refused(providerRequest(theirs.values.PROVIDER_API_KEY!), 'wrong_sandbox', {
      audited: { sandbox: 'other', authenticated: true },
    });
    // Main's sentinel from another container.
    const rec = recorder();
    await expectRefused(
      await handleEgress(providerRequest(issued.values.PROVIDER_API_KEY!), sandboxContainerId(e, 'other'), depsFor(e, rec.fetch)),
      'wrong_sandbox',
    );
    expect(rec.seen).toHaveLength(0);
  });

  it('an expired one', async () => {
    const skewMs = parseConfig(e as never).timing.clockSkew * 1000;
    const exp = decodeJwt(issued.values.PROVIDER_API_KEY!).exp! * 1000;
    await refused(providerRequest(issued.values.PROVIDER_API_KEY!), 'expired', { deps: { now: () => exp + skewMs + 1 } });
    // Within the skew it still passes.
    const rec = recorder();
    expect(
      (
        await handleEgress(
          providerRequest(issued.values.PROVIDER_API_KEY!),
          container,
          depsFor(e, rec.fetch, { now: () => exp + skewMs - 1000 }),
        )
      ).status,
    ).toBe(200);
  });

  it('one voided by a gateway restart (a new bootstrap key)', async () => {
    const rec = recorder();
    expect((await handleEgress(providerRequest(issued.values.PROVIDER_API_KEY!), container, depsFor(e, rec.fetch))).status).toBe(200);
    await bootstrap(e, 'main');
    await refused(providerRequest(issued.values.PROVIDER_API_KEY!), 'stale_bootstrap');
  });

  it('one of a revoked sandbox, refused within 5 s even by an isolate that cached the state', async () => {
    const sentinel = issued.values.PROVIDER_API_KEY!;
    const rec = recorder();
    expect((await handleEgress(providerRequest(sentinel), container, depsFor(e, rec.fetch))).status).toBe(200);
    // Revoked through another isolate (another env object): this one's cached state is not cleared.
    const elsewhere = deployment();
    const revokedAt = Date.now();
    expect((await call(elsewhere, '/api/admin/sandboxes/main', { method: 'DELETE', headers: adminHeaders() })).status).toBe(200);
    let status = 200;
    while (status === 200 && Date.now() - revokedAt < 7_000) {
      const res = await handleEgress(providerRequest(sentinel), container, depsFor(e, rec.fetch));
      status = res.status;
      if (status === 200) await new Promise((r) => setTimeout(r, 100));
      else await expectRefused(res, 'revoked');
    }
    const after = Date.now() - revokedAt;
    expect(status).toBe(403);
    expect(after).toBeLessThanOrEqual(5_000);
    console.log(`egress: a revocation made in another isolate was refused after ${after} ms`);
  }, 15_000);

  it('one of a sandbox revoked through the same isolate, at once', async () => {
    const rec = recorder();
    expect((await handleEgress(providerRequest(issued.values.PROVIDER_API_KEY!), container, depsFor(e, rec.fetch))).status).toBe(200);
    expect((await call(e, '/api/admin/sandboxes/main', { method: 'DELETE', headers: adminHeaders() })).status).toBe(200);
    await refused(providerRequest(issued.values.PROVIDER_API_KEY!), 'revoked');
  });

  it('one with a tampered payload', async () => {
    const s = issued.values.PROVIDER_API_KEY!;
    const [h, , sig] = s.split('.');
    const claims = { ...decodeJwt(s), hosts: [PROVIDER_HOST, 'evil.test'], exp: decodeJwt(s).exp! + 3600 };
    await refused(providerRequest(`${h}.${b64json(claims)}.${sig}`), 'bad_signature', {
      audited: { sandbox: 'main', authenticated: false },
    });
    // A flipped character: no longer what was signed, or no longer JSON at all; refused either way.
    const rec = recorder();
    const res = await handleEgress(providerRequest(tamper(s, 1)), container, depsFor(e, rec.fetch));
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error_description: string }).error_description).toMatch(/^(bad_signature|malformed_sentinel)$/);
    expect(rec.seen).toHaveLength(0);
  });

  it('one with a tampered header', async () => {
    const s = issued.values.PROVIDER_API_KEY!;
    const [, p, sig] = s.split('.');
    const header = b64json({ ...decodeProtectedHeader(s), x: 1 });
    await refused(providerRequest(`${header}.${p}.${sig}`), 'bad_signature', { audited: { sandbox: 'main', authenticated: false } });
  });

  it('one signed by a key not in the JWKS', async () => {
    const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const claims = decodeJwt(issued.values.PROVIDER_API_KEY!);
    const forged = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'EdDSA', typ: 'egress+jwt', kid: 'not-a-published-kid' })
      .sign(privateKey);
    await refused(providerRequest(forged), 'unknown_key', { audited: { sandbox: 'main', authenticated: false } });
    // A published kid over a foreign key's signature.
    const kid = decodeProtectedHeader(issued.values.PROVIDER_API_KEY!).kid!;
    const borrowed = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', typ: 'egress+jwt', kid }).sign(privateKey);
    const rec = recorder();
    await expectRefused(await handleEgress(providerRequest(borrowed), container, depsFor(e, rec.fetch)), 'bad_signature');
    expect(rec.seen).toHaveLength(0);
    expect((await exportJWK(publicKey)).x).toBeDefined();
  });

  it('one with typ at+jwt (an access token used as a sentinel)', async () => {
    await refused(providerRequest(issued.token), 'bad_type');
  });

  it('junk shaped like a JWS', async () => {
    await refused(providerRequest('eyJhbGciOiJFZERTQSJ9.e30.AAAA'), 'unknown_key', { audited: { sandbox: 'main', authenticated: false } });
    await refused(providerRequest('bm90IGpzb24.e30.AAAA'), 'malformed_sentinel', { audited: { sandbox: 'main', authenticated: false } });
  });

  it('never logs the sentinel or the key', async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void lines.push(a.join(' ')));
    try {
      const rec = recorder();
      await handleEgress(
        providerRequest(issued.values.PROVIDER_API_KEY!, { host: OTHER_HOST, header: 'x-api-key' }),
        container,
        depsFor(e, rec.fetch),
      );
      await handleEgress(providerRequest(issued.values.PROVIDER_API_KEY!), container, depsFor(e, rec.fetch));
    } finally {
      spy.mockRestore();
    }
    expect(lines.some((l) => l.includes('egress_refused'))).toBe(true);
    const text = lines.join('\n');
    expect(text).not.toContain(issued.values.PROVIDER_API_KEY!.split('.')[2]!);
    expect(text).not.toContain(REAL_KEY);
  });
});

describe('the SDK wiring (outboundRoutes) and the local route', () => {
  it('binds issuer.internal and every egress host; the handler takes the platform container id', async () => {
    const routes = outboundRoutes(e as unknown as Record<string, unknown>);
    expect(Object.keys(routes).sort()).toEqual([OTHER_HOST, PROVIDER_HOST, 'issuer.internal'].sort());
    const handler = routes[PROVIDER_HOST]!;
    const spy = vi.spyOn(globalThis, 'fetch').mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
      const r = new Request(input, init);
      return new Response(JSON.stringify({ authorization: r.headers.get('authorization') }), { status: 200 });
    });
    try {
      const wrong = await handler(providerRequest(issued.values.PROVIDER_API_KEY!), e, { containerId: sandboxContainerId(e, 'other') });
      await expectRefused(wrong, 'wrong_sandbox');
      expect(spy).not.toHaveBeenCalled();
      const ok = await handler(providerRequest(issued.values.PROVIDER_API_KEY!), e, { containerId: container });
      expect(await ok.json()).toEqual({ authorization: `Bearer ${REAL_KEY}` });
      expect(spy).toHaveBeenCalledTimes(1);
    } finally {
      spy.mockRestore();
    }
  });

  it('binds no egress host when CREDENTIALS does not parse (the requests report the error)', () => {
    expect(Object.keys(outboundRoutes({ ...env, CREDENTIALS: '{"X": {"secret": "S", "egress": {"hosts": []}}}' }))).toEqual([
      'issuer.internal',
    ]);
  });

  it('/.local/egress runs the same handler with the named sandbox container, on a loopback issuer only', async () => {
    const sentinel = issued.values.PROVIDER_API_KEY!;
    const local = (over: Record<string, string>, target = `http://${PROVIDER_HOST}/v1/chat/completions`) =>
      call(e, '/.local/egress', {
        method: 'POST',
        headers: { 'x-egress-url': target, 'x-egress-sandbox': 'main', authorization: `Bearer ${sentinel}`, ...over },
        body: '{}',
      });
    await expectRefused(await local({ 'x-egress-sandbox': 'other' }), 'wrong_sandbox');
    expect((await local({}, 'http://unbound.test/v1')).status).toBe(400);
    expect((await local({ 'x-egress-sandbox': 'NOT VALID' })).status).toBe(400);
    const prod = deployment({ ISSUER: 'https://issuer.example.com', DEV_USER: undefined, GATEWAY_UPSTREAM: undefined });
    const res = await app.fetch(
      new Request(`${BASE}/.local/egress`, {
        method: 'POST',
        headers: { 'x-egress-url': `http://${PROVIDER_HOST}/v1`, 'x-egress-sandbox': 'main' },
      }),
      prod,
      createExecutionContext(),
    );
    expect(res.status).toBe(404);
  });
});
