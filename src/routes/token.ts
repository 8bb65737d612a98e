/**
 * POST /oauth/token (docs/architecture.md, "Token endpoint"): RFC 6749 §4.4 client_credentials with RFC 7523 client
 * authentication. Parses the form strictly, calls clientCredentialsGrant, and answers with
 * `Cache-Control: no-store` on every outcome (RFC 6749 §5.1).
 */
import { Hono } from 'hono';
import { SANDBOX_ID } from '../admin-api.js';
import type { AppEnv } from '../app-env.js';
import { readBodyLimited } from '../http.js';
import type { X25519PublicJwk } from '../issuer/credentials.js';
import { IssuerError } from '../issuer/errors.js';
import { clientCredentialsGrant, type TokenRequest } from '../issuer/grant.js';
import { unwrap } from '../issuer/result.js';

/** A token request over 16 KiB is refused with 413 before it is parsed. */
const TOKEN_BODY_LIMIT_BYTES = 16 * 1024;
/** An X25519 public JWK is ~80 bytes of JSON; anything much larger is not one. */
const ENC_JWK_MAX_BYTES = 1024;
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const FORM = 'application/x-www-form-urlencoded';
const KNOWN_PARAMS = new Set(['grant_type', 'client_assertion_type', 'client_assertion', 'client_id', 'enc_jwk', 'scope']);

export const NO_STORE = { 'Cache-Control': 'no-store', Pragma: 'no-cache' } as const;

function invalid(text: string): IssuerError {
  return new IssuerError('invalid_request', text);
}

function parseEncJwk(raw: string): X25519PublicJwk {
  if (raw.length > ENC_JWK_MAX_BYTES) throw invalid(`enc_jwk must be at most ${ENC_JWK_MAX_BYTES} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw invalid('enc_jwk must be a JSON object (an X25519 public JWK)');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalid('enc_jwk must be a JSON object (an X25519 public JWK)');
  const jwk = v as Record<string, unknown>;
  if ('d' in jwk) throw invalid('enc_jwk must be a public key: it carries a private part "d"');
  if (jwk.kty !== 'OKP' || jwk.crv !== 'X25519' || typeof jwk.x !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(jwk.x)) {
    throw invalid('enc_jwk must be an X25519 public JWK: {"kty":"OKP","crv":"X25519","x":"<43 base64url characters>"}');
  }
  return { kty: 'OKP', crv: 'X25519', x: jwk.x };
}

/** Parses the form body into a TokenRequest, or throws a 400 with the reason. */
function parseTokenForm(body: string): TokenRequest {
  const params = new URLSearchParams(body);
  const seen = new Set<string>();
  for (const [k] of params) {
    // RFC 6749 §3.2: request parameters must not be included more than once.
    if (seen.has(k)) throw invalid(`parameter "${k.slice(0, 40)}" appears more than once`);
    seen.add(k);
  }
  const grant = params.get('grant_type');
  if (!grant) throw invalid('grant_type is required');
  if (grant !== 'client_credentials') throw new IssuerError('unsupported_grant_type', 'only grant_type=client_credentials is supported');
  const type = params.get('client_assertion_type');
  if (type !== JWT_BEARER) throw invalid(`client_assertion_type must be ${JWT_BEARER}`);
  const assertion = params.get('client_assertion');
  if (!assertion) throw invalid('client_assertion is required');
  for (const k of seen) if (!KNOWN_PARAMS.has(k)) throw invalid(`unknown parameter "${k.slice(0, 40)}"`);
  const clientId = params.get('client_id') ?? undefined;
  if (clientId !== undefined && !SANDBOX_ID.test(clientId)) throw invalid('client_id is not a valid sandbox id');
  const encRaw = params.get('enc_jwk');
  return { assertion, clientId, encJwk: encRaw ? parseEncJwk(encRaw) : undefined };
}

export const token = new Hono<AppEnv>()
  .use('*', async (c, next) => {
    await next();
    for (const [k, v] of Object.entries(NO_STORE)) c.res.headers.set(k, v);
    // The issuer's clock, so an agent whose assertion was refused for clock skew can measure it
    // (RFC 9110 §6.6.1; the platform adds one in production, local workerd does not).
    if (!c.res.headers.has('Date')) c.res.headers.set('Date', new Date().toUTCString());
  })
  .post('/token', async (c) => {
    const type = (c.req.header('Content-Type') ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== FORM) throw invalid(`the request must be ${FORM}`);
    const form = parseTokenForm(await readBodyLimited(c.req.raw, TOKEN_BODY_LIMIT_BYTES));
    const { config, signingKey, sandboxAuthority, registry } = c.var.services;
    const res = await clientCredentialsGrant(form, {
      config,
      now: Date.now,
      randomId: () => crypto.randomUUID(),
      signingKey: () => signingKey.get(),
      authorize: (id, req) => unwrap(sandboxAuthority(id).authorize(req)),
      isKnown: (id) => registry.isKnown(id),
      refuse: (id, rule) => sandboxAuthority(id).refuse(id, rule),
      containerMatches: c.var.containerMatches,
    });
    return c.json(res, 200, NO_STORE);
  })
  .all('/token', () => {
    throw invalid('the token endpoint accepts POST only');
  });
