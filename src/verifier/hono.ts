/**
 * Hono middleware on the verifier: `Authorization: Bearer <jwt>` in, `c.get('claims')` out.
 *
 * A refused request gets 401 with `WWW-Authenticate: Bearer error="invalid_token",
 * error_description="<code>"` (RFC 6750 §3) and a JSON body naming the same code; never the token.
 * When the verifier has no usable JWKS the answer is 503 with `Retry-After`: the token may be
 * fine, the keys to check it are missing.
 */
import type { MiddlewareHandler } from 'hono';
import { bearerToken } from './bearer.js';
import { challengeOf, statusOf, VerifierError } from './errors.js';
import type { VerifiedClaims, Verifier } from './verify.js';

/** Seconds a client should wait before retrying after a 503: one JWKS fetch timeout and then some. */
const JWKS_UNAVAILABLE_RETRY_AFTER_S = 10;

export interface BearerEnv {
  Variables: { claims: VerifiedClaims };
}

/** The 401 or 503 answer for a verifier error, shared by the middleware and the proxy. */
export function rejection(err: VerifierError): { status: 401 | 503; headers: Record<string, string>; body: string } {
  const status = statusOf(err.code);
  const headers: Record<string, string> = { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' };
  if (status === 401) headers['WWW-Authenticate'] = challengeOf(err.code);
  else headers['Retry-After'] = String(JWKS_UNAVAILABLE_RETRY_AFTER_S);
  const error = status === 401 ? 'invalid_token' : 'temporarily_unavailable';
  return { status, headers, body: JSON.stringify({ error, error_description: err.code }) };
}

/**
 * Requires a valid bearer token on every request it guards.
 *
 * @example
 * const verifier = createVerifier({ jwksUrl, issuer, audience: 'gateway:main' });
 * app.use('/api/*', verifyBearer({ verifier }));
 * app.get('/api/me', (c) => c.json({ user: c.get('claims').sub }));
 */
export function verifyBearer(options: { verifier: Verifier }): MiddlewareHandler<BearerEnv> {
  if (typeof options?.verifier?.verify !== 'function')
    throw new TypeError('verifyBearer: options.verifier must be a Verifier (createVerifier)');
  const { verifier } = options;
  return async (c, next) => {
    let claims: VerifiedClaims;
    try {
      claims = await verifier.verify(bearerToken(c.req.raw.headers.get('authorization')));
    } catch (e) {
      if (!(e instanceof VerifierError)) throw e;
      const r = rejection(e);
      return new Response(r.body, { status: r.status, headers: r.headers });
    }
    c.set('claims', claims);
    await next();
  };
}
