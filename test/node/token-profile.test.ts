/**
 * One token profile (src/token-profile.ts): the same malformed compacts, fed to the three readers
 * of tokens, are refused by each, each under its own code: the issuer's client-assertion check
 * (parseAssertion, its AssertionRule), the verifier the gateways' proxy runs (createVerifier, its
 * VerifierErrorCode) and `credctl token inspect` (inspectToken: a usage error naming the
 * verifier's code, or an INVALID verdict). Each compact is signed over exactly its own bytes, so
 * only its spelling or its header is wrong, never the signature; a well-formed control shows
 * each reader accepts the same construction.
 */
import { readFileSync } from 'node:fs';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { IssuerClient } from '../../cli/client.js';
import { CliError, EXIT } from '../../cli/errors.js';
import { inspectToken } from '../../cli/inspect.js';
import { AssertionError, parseAssertion } from '../../src/issuer/assertion.js';
import {
  ACCESS_TOKEN_TYP,
  ALGORITHMS,
  FORBIDDEN_HEADERS,
  gatewayAudience,
  MAX_TOKEN_BYTES,
  parseCompact,
  SENTINEL_AUD,
  SENTINEL_TYP,
  sandboxOfAudience,
  TokenProfileError,
  tokenTypeOf,
} from '../../src/token-profile.js';
import { VerifierError } from '../../src/verifier/errors.js';
import { createVerifier } from '../../src/verifier/verify.js';
import { ROOT } from './worker-process.js';

const ISSUER = 'https://issuer.test';
const SANDBOX = 'sb-1';
const enc = (text: string | Uint8Array) => Buffer.from(text).toString('base64url');

let privateKey: CryptoKey;
let kid: string;
let jwks: { keys: JWK[] };
/** Requests for the JWKS, from the verifier and from inspect. */
let jwksFetches = 0;

beforeAll(async () => {
  const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  privateKey = pair.privateKey;
  const jwk = await exportJWK(pair.publicKey);
  kid = await calculateJwkThumbprint(jwk);
  jwks = { keys: [{ ...jwk, kid, alg: 'EdDSA', use: 'sig' }] };
});

const jwksFetch = (async () => {
  jwksFetches++;
  return new Response(JSON.stringify(jwks), { headers: { 'Content-Type': 'application/json', 'Cache-Control': 'max-age=300' } });
}) as typeof fetch;

/** Signs `<h>.<p>` exactly as given. */
async function signed(h: string, p: string): Promise<string> {
  const sig = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, privateKey, new TextEncoder().encode(`${h}.${p}`)));
  return `${h}.${p}.${enc(sig)}`;
}

const now = () => Math.floor(Date.now() / 1000);
const header = (extra: Record<string, unknown> = {}) => ({ alg: 'EdDSA', kid, typ: ACCESS_TOKEN_TYP, ...extra });
const claims = (extra: Record<string, unknown> = {}) => ({
  iss: ISSUER,
  sub: SANDBOX,
  aud: gatewayAudience(SANDBOX),
  iat: now(),
  exp: now() + 300,
  jti: crypto.randomUUID(),
  ...extra,
});

/** Sets an unused trailing bit of a base64url segment: the same bytes, a second spelling. */
function nonCanonical(seg: string): string {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  if (seg.length % 4 === 0) throw new Error('no unused bits in a segment of 4n characters');
  return seg.slice(0, -1) + A[A.indexOf(seg.at(-1)!) | 1]!;
}

/** A claims segment whose length leaves unused bits (so it has a non-canonical spelling). */
function claimsWithUnusedBits(): string {
  let pad = '';
  let p = enc(JSON.stringify(claims()));
  while (p.length % 4 === 0) p = enc(JSON.stringify(claims({ x: (pad += 'a') })));
  return p;
}

/** What each reader answers: its own code, or `accepted`. */
async function assertionCode(jwt: string): Promise<string> {
  try {
    parseAssertion(jwt);
    return 'accepted';
  } catch (e) {
    if (e instanceof AssertionError) return e.rule;
    throw e;
  }
}

async function verifierCode(jwt: string): Promise<string> {
  const v = createVerifier({
    jwksUrl: `${ISSUER}/.well-known/jwks.json`,
    issuer: ISSUER,
    audience: gatewayAudience(SANDBOX),
    fetch: jwksFetch,
    tokenCache: { maxEntries: 0 },
  });
  try {
    await v.verify(jwt);
    return 'accepted';
  } catch (e) {
    if (e instanceof VerifierError) return e.code;
    throw e;
  }
}

/** `usage:<code>` for a refusal before the token is verified (exit 2), `invalid:<reason>` for a verdict (exit 5). */
async function inspectCode(jwt: string): Promise<string> {
  const client = new IssuerClient({ issuer: new URL(ISSUER), credentials: { source: 'none' }, timeoutMs: 5_000, fetch: jwksFetch });
  try {
    const r = await inspectToken(jwt, client, Date.now());
    return r.valid ? 'accepted' : `invalid:${r.reason}`;
  } catch (e) {
    if (!(e instanceof CliError) || e.exitCode !== EXIT.usage) throw e;
    // The one line an operator sees names the verifier's code, never the token.
    expect(e.message).toMatch(/^malformed token: .+ \([a-z_]+\)$/);
    expect(e.message).not.toContain(jwt.slice(0, 16));
    return `usage:${/\(([a-z_]+)\)$/.exec(e.message)![1]}`;
  }
}

function profileCode(jwt: string): string {
  try {
    parseCompact(jwt);
    return 'accepted';
  } catch (e) {
    if (e instanceof TokenProfileError) return e.code;
    throw e;
  }
}

describe('the same malformed compacts, refused by every reader under its own code', () => {
  /** name, the compact, then the codes of: the profile's parser, parseAssertion, the verifier, inspect. */
  type Case = [string, () => Promise<string>, string, string, string, string];
  const cases: Case[] = [
    [
      'non-canonical base64url (an unused bit set in the claims set)',
      async () => signed(enc(JSON.stringify(header())), nonCanonical(claimsWithUnusedBits())),
      'malformed',
      'malformed_assertion',
      'malformed_token',
      'usage:malformed_token',
    ],
    [
      'base64 padding on the header',
      async () => signed(`${enc(JSON.stringify(header()))}==`, enc(JSON.stringify(claims()))),
      'malformed',
      'malformed_assertion',
      'malformed_token',
      'usage:malformed_token',
    ],
    [
      'a claims set that repeats a member name (sub twice)',
      async () => signed(enc(JSON.stringify(header())), enc(JSON.stringify(claims()).replace('{', '{"sub":"someone-else",'))),
      'duplicate_member',
      'duplicate_member',
      'duplicate_member',
      'usage:duplicate_member',
    ],
    [
      'a header that repeats a member name (alg twice)',
      async () => signed(enc(`{"alg":"none",${JSON.stringify(header()).slice(1)}`), enc(JSON.stringify(claims()))),
      'duplicate_member',
      'duplicate_member',
      'duplicate_member',
      'usage:duplicate_member',
    ],
    [
      'a header that is a JSON array',
      async () => signed(enc(JSON.stringify([header()])), enc(JSON.stringify(claims()))),
      'malformed',
      'malformed_assertion',
      'malformed_token',
      'usage:malformed_token',
    ],
    [
      'a byte-order mark before the header',
      async () => signed(enc(`\uFEFF${JSON.stringify(header())}`), enc(JSON.stringify(claims()))),
      'malformed',
      'malformed_assertion',
      'malformed_token',
      'usage:malformed_token',
    ],
    [
      'a 9 KiB token',
      async () => signed(enc(JSON.stringify(header())), enc(JSON.stringify(claims({ pad: 'p'.repeat(9 * 1024) })))),
      'too_large',
      'assertion_too_large',
      'token_too_large',
      'usage:token_too_large',
    ],
    [
      'an unsecured JWS (alg none, empty signature)',
      async () => `${enc(JSON.stringify(header({ alg: 'none' })))}.${enc(JSON.stringify(claims()))}.`,
      'unsecured',
      'unsupported_alg',
      'malformed_token',
      'usage:malformed_token',
    ],
    [
      'alg HS256',
      async () => signed(enc(JSON.stringify(header({ alg: 'HS256' }))), enc(JSON.stringify(claims()))),
      'unsupported_alg',
      'unsupported_alg',
      'unsupported_alg',
      'invalid:unsupported_alg',
    ],
    [
      'a jku header',
      async () => signed(enc(JSON.stringify(header({ jku: 'https://attacker.test/jwks.json' }))), enc(JSON.stringify(claims()))),
      'forbidden_header',
      'forbidden_header',
      'forbidden_header',
      'invalid:invalid_token',
    ],
  ];

  it.each(cases)('%s', async (_name, make, profile, assertion, verifier, inspect) => {
    const jwt = await make();
    const before = jwksFetches;
    expect({
      profile: profileCode(jwt),
      assertion: await assertionCode(jwt),
      verifier: await verifierCode(jwt),
      inspect: await inspectCode(jwt),
    }).toEqual({ profile, assertion, verifier, inspect });
    // Structural refusals come before any key is looked up: neither the verifier nor inspect asked for the JWKS.
    if (inspect.startsWith('usage:')) expect(jwksFetches).toBe(before);
  });

  it('the control: the same construction, well formed, is accepted by each reader', async () => {
    const token = await signed(enc(JSON.stringify(header())), claimsWithUnusedBits());
    expect({ profile: profileCode(token), verifier: await verifierCode(token), inspect: await inspectCode(token) }).toEqual({
      profile: 'accepted',
      verifier: 'accepted',
      inspect: 'accepted',
    });
    // A client assertion names the sandbox as its issuer and carries no typ.
    const assertion = await signed(enc(JSON.stringify({ alg: 'EdDSA', kid })), enc(JSON.stringify(claims({ iss: SANDBOX, aud: ISSUER }))));
    expect(await assertionCode(assertion)).toBe('accepted');
    // Exactly at the cap is still a token; one byte more is not.
    const at = (n: number) => `${'A'.repeat(n - 8)}.AAAA.AA`;
    expect([profileCode(at(MAX_TOKEN_BYTES)), profileCode(at(MAX_TOKEN_BYTES + 1))]).toEqual(['malformed', 'too_large']);
  });
});

describe('the profile', () => {
  it('holds the constants every reader uses', () => {
    expect({ ALGORITHMS, FORBIDDEN_HEADERS, MAX_TOKEN_BYTES, ACCESS_TOKEN_TYP, SENTINEL_TYP, SENTINEL_AUD }).toEqual({
      ALGORITHMS: ['EdDSA', 'Ed25519'],
      FORBIDDEN_HEADERS: ['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'crit', 'b64', 'zip'],
      MAX_TOKEN_BYTES: 8 * 1024,
      ACCESS_TOKEN_TYP: 'at+jwt',
      SENTINEL_TYP: 'egress+jwt',
      SENTINEL_AUD: 'egress',
    });
    expect(gatewayAudience('sb-1')).toBe('gateway:sb-1');
    expect([
      sandboxOfAudience('gateway:sb-1'),
      sandboxOfAudience('gateway:'),
      sandboxOfAudience('gateway:Bad_Id'),
      sandboxOfAudience(['gateway:sb-1']),
      sandboxOfAudience('egress'),
    ]).toEqual(['sb-1', undefined, undefined, undefined, undefined]);
    // RFC 7515 §4.1.9: case-insensitive, application/ optional; nothing else is ours.
    expect(['at+jwt', 'AT+JWT', 'application/at+jwt', 'egress+jwt', 'JWT', undefined, 7].map(tokenTypeOf)).toEqual([
      'at+jwt',
      'at+jwt',
      'at+jwt',
      'egress+jwt',
      undefined,
      undefined,
      undefined,
    ]);
  });

  it('imports nothing from Node or the Workers runtime (the proxy, the CLI and the Worker all load it)', () => {
    const imports = (file: string) =>
      [...readFileSync(`${ROOT}${file}`, 'utf8').matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]);
    expect(imports('src/token-profile.ts')).toEqual(['./admin-api.js']);
    expect(imports('src/admin-api.ts')).toEqual([]);
  });
});
