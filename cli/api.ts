/**
 * The issuer's HTTP API as the CLI reads it. The admin answers are the Worker's own contract
 * (src/admin-api.ts, types and patterns only, erased or inlined by the bundle); the JWKS shape is
 * read loosely here, since token inspect meets JWKS documents of any issuer.
 */
export { AUDIT_MAX_LIMIT, KID, SANDBOX_ID, SANDBOX_PAGE_MAX, type AuditEvent, type AuditListing, type CredentialDelivery, type RefusalCount, type SandboxListing, type BootstrapFile, type KeyListing, type KeyState, type KeyView, type SandboxStatus } from '../src/admin-api.js';

export interface Jwks {
  keys: { kid?: string; kty?: string; crv?: string; alg?: string; [k: string]: unknown }[];
}
