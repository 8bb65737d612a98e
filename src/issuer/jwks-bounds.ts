/**
 * How large the issuer's JWKS can grow, against what a verifier accepts (src/verifier/limits.ts):
 * keys past MAX_JWKS_KEYS are ignored and a body over MAX_JWKS_BYTES is refused whole, so the
 * JWKS must stay within both however many rotations an operator forces. A leaf module: keys.ts
 * enforces the cap, config.ts checks the bound when the config is loaded.
 */
import { MAX_JWKS_BYTES, MAX_JWKS_KEYS } from '../verifier/limits.js';

/**
 * The most retiring keys a manual rotation (forced or not) may leave published. Each forced
 * rotation keeps the key it retires published for the whole retention (every token it signed
 * must stay verifiable), so without a cap the JWKS grew by one key per forced rotation, past what
 * verifiers keep and read. Scheduled rotations never need more than one (ROTATION_PERIOD is at
 * least the retention); eight leaves room for an incident's rotations. Past it a rotation is
 * refused (409 too_many_retiring_keys): revoking a key is the tool for emergencies.
 */
export const MAX_RETIRING_KEYS = 8;

/**
 * The most keys the JWKS can hold: active, next, the retiring keys manual rotations may leave,
 * and one more that a scheduled rotation (never refused) may retire on top of them.
 */
export const MAX_PUBLISHED_KEYS = 2 + MAX_RETIRING_KEYS + 1;

/** The JSON size of one published key: x and kid are 43 base64url characters each. */
const PUBLISHED_KEY_BYTES =
  JSON.stringify({ kty: 'OKP', crv: 'Ed25519', x: 'x'.repeat(43), kid: 'k'.repeat(43), alg: 'EdDSA', use: 'sig' }).length + 1;

/** Whether the largest JWKS this issuer can publish is read whole, and kept whole, by a verifier. */
export function jwksWithinVerifierLimits(): { ok: boolean; keys: number; bytes: number } {
  const bytes = '{"keys":[]}'.length + MAX_PUBLISHED_KEYS * PUBLISHED_KEY_BYTES;
  return { ok: MAX_PUBLISHED_KEYS <= MAX_JWKS_KEYS && bytes <= MAX_JWKS_BYTES, keys: MAX_PUBLISHED_KEYS, bytes };
}
