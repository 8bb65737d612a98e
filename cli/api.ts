/**
 * What the CLI reads of the issuer's HTTP API beyond the contract (src/admin-api.ts, which the
 * CLI's modules import directly): the JWKS, read loosely, since token inspect meets JWKS
 * documents of any issuer.
 */

/** cli/inspect.ts still imports these three from here; once it imports src/admin-api.ts directly, this line goes. */
export { type KeyListing, SANDBOX_ID, type SandboxStatus } from '../src/admin-api.js';

export interface Jwks {
  keys: { kid?: string; kty?: string; crv?: string; alg?: string; [k: string]: unknown }[];
}
