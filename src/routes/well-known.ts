/**
 * GET /.well-known/jwks.json and the two discovery documents (docs/architecture.md, "JWKS and discovery").
 */
import { Hono } from 'hono';
import { JWKS_PATH, TOKEN_PATH } from '../admin-api.js';
import type { AppEnv } from '../app-env.js';
import { ALGORITHMS, SIGNING_ALG } from '../token-profile.js';

/**
 * The token profile's algorithms (src/token-profile.ts): tokens are signed with `EdDSA`, the name
 * verifiers everywhere know; client assertions may use RFC 9864's `Ed25519` too.
 */
const SIGNING_ALGS: readonly string[] = [SIGNING_ALG];
const CLIENT_ASSERTION_ALGS: readonly string[] = ALGORITHMS;

/** Cache-Control of the JWKS: verifiers may use a stale copy for a minute while revalidating, and a day when we are down. */
function jwksCacheControl(maxAge: number): string {
  return `public, max-age=${maxAge}, stale-while-revalidate=60, stale-if-error=86400`;
}

/** RFC 9110 §13.1.2: weak comparison, a list of tags, or `*`. */
export function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  const strip = (t: string) => t.trim().replace(/^W\//, '');
  return ifNoneMatch.split(',').some((t) => t.trim() === '*' || strip(t) === strip(etag));
}

function discovery(issuer: string) {
  return {
    issuer,
    jwks_uri: `${issuer}${JWKS_PATH}`,
    token_endpoint: `${issuer}${TOKEN_PATH}`,
    grant_types_supported: ['client_credentials'],
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGS],
    // OpenID Connect Discovery requires these three; this issuer has no authorization endpoint.
    response_types_supported: ['token'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: [...SIGNING_ALGS],
    access_token_signing_alg_values_supported: [...SIGNING_ALGS],
  };
}

export const wellKnown = new Hono<AppEnv>()
  .get('/jwks.json', async (c) => {
    const { config, jwks } = c.var.services;
    const snap = await jwks.get();
    const headers = {
      'Content-Type': 'application/json',
      'Cache-Control': jwksCacheControl(config.timing.jwksMaxAge),
      ETag: snap.etag,
    };
    if (etagMatches(c.req.header('If-None-Match'), snap.etag)) return c.body(null, 304, headers);
    return c.body(snap.body, 200, headers);
  })
  .get('/openid-configuration', (c) => discoveryResponse(c.var.services.config.issuer, c.var.services.config.timing.jwksMaxAge))
  .get('/oauth-authorization-server', (c) => discoveryResponse(c.var.services.config.issuer, c.var.services.config.timing.jwksMaxAge));

function discoveryResponse(issuer: string, maxAge: number): Response {
  return new Response(JSON.stringify(discovery(issuer)), {
    headers: { 'Content-Type': 'application/json', 'Cache-Control': `public, max-age=${maxAge}` },
  });
}
