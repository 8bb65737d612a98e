/**
 * Isomorphic verifier for the issuer's access tokens (WebCrypto and fetch only: Node and Workers).
 * See verify.ts for the checks, jwks.ts for the key cache, hono.ts for the middleware.
 */
export { bearerToken } from './bearer.js';
export { ALGORITHMS, FORBIDDEN_HEADERS, MAX_TOKEN_BYTES, TOKEN_TYP } from './compact.js';
export { challengeOf, statusOf, VerifierError, type VerifierErrorCode } from './errors.js';
export { type BearerEnv, rejection, verifyBearer } from './hono.js';
export type { JwksEvent, JwksOptions, JwksStatus } from './jwks.js';
export { MAX_JWKS_BYTES, MAX_JWKS_KEYS } from './limits.js';
export {
  createVerifier,
  DEFAULT_CLOCK_SKEW_S,
  type VerifiedClaims,
  type Verifier,
  type VerifierEvent,
  type VerifierOptions,
  type VerifierStatus,
} from './verify.js';
