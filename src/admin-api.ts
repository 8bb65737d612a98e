/**
 * The admin API's wire contract (README, "HTTP API"): the shapes of its answers and the rules of
 * its path parameters. The one definition for the Worker, which produces them, and the operator
 * CLI, which reads them. No imports and no runtime but three patterns and a number, so Node code
 * (cli/) can use it without the Workers types.
 */

export type KeyState = 'next' | 'active' | 'retiring' | 'removed';

/** A key as the admin API shows it: state and times, never private material. */
export interface KeyView {
  kid: string;
  state: KeyState;
  created_at: string;
  activated_at?: string;
  retired_at?: string;
  remove_at?: string;
  removed_at?: string;
  removed_reason?: string;
}

/** GET /api/admin/keys, and the answer to a rotation or revocation. */
export interface KeyListing {
  keys: KeyView[];
  schedule: {
    rotation_period_seconds: number;
    next_rotation_at: string;
    earliest_manual_rotation_at: string;
  };
}

/** GET /api/admin/sandboxes/:id, and each entry of GET /api/admin/sandboxes. */
export interface SandboxStatus {
  sandbox: string;
  exists: boolean;
  revoked: boolean;
  bootstrap_kid?: string;
  bootstrapped_at?: string;
  revoked_at?: string;
  agent_key_registered: boolean;
  last_issued_at?: string;
  token_expires_at?: string;
  credentials_version?: string;
  /** What CREDENTIALS delivers to every sandbox, and how (the deployment's config, not this sandbox's state). */
  credentials?: CredentialDelivery[];
}

/**
 * How one CREDENTIALS entry reaches a sandbox: its value (`value`), a per-sandbox HMAC of it
 * (`derived`), or a sentinel that the outbound handler swaps for the value on the way to one of
 * `hosts` (`egress`). Names and hosts only: never a value, never a sentinel.
 */
export interface CredentialDelivery {
  name: string;
  delivery: 'value' | 'derived' | 'egress';
  hosts?: string[];
  header?: string;
}

/**
 * One audit event: identifiers only. Never a token, an assertion, a key or a secret value: there
 * is no field that could carry one.
 */
export interface AuditEvent {
  at: string;
  sandbox?: string;
  event: string;
  outcome: 'ok' | 'refused';
  code?: string;
  kid?: string;
  jti?: string;
  cred_ver?: string;
  actor?: string;
}

/**
 * Refusals of a sandbox's token requests, counted per rule per minute rather than kept one by one:
 * anyone can send junk that names a sandbox, and counting keeps it from pushing the sandbox's
 * authenticated events (issuances, admin actions) out of the bounded audit table.
 */
export interface RefusalCount {
  /** Start of the minute counted. */
  minute: string;
  /** The last refusal counted in that minute. */
  last_at: string;
  sandbox: string;
  /** The assertion rule that refused (README, token endpoint). */
  code: string;
  /** True when the assertion's signature verified under the sandbox's key (an agent or a replayed copy). */
  authenticated: boolean;
  count: number;
}

/** GET /api/admin/audit: authenticated events and refusal counts, each newest first and each at most `limit`. */
export interface AuditListing {
  events: AuditEvent[];
  refusals: RefusalCount[];
  /** The merged view (no `?sandbox=`): how many sandboxes' logs it read, of how many there are. */
  sandboxes?: { included: number; total: number };
  /** What CREDENTIALS delivers, and how (names and hosts only). */
  credentials?: CredentialDelivery[];
}

/** GET /api/admin/sandboxes: one page, the Worker's own sandbox first; `next_cursor` gets the next. */
export interface SandboxListing {
  sandboxes: SandboxStatus[];
  /** Every sandbox ever bootstrapped. */
  total: number;
  next_cursor?: string;
}

/** POST /api/admin/sandboxes/:id/bootstrap (DESIGN §4): `key` is the private Ed25519 JWK. */
export interface BootstrapFile {
  client_id: string;
  issuer: string;
  token_endpoint: string;
  key: { kid?: string; [member: string]: unknown };
}

/**
 * Sandbox ids (and so client ids): lowercase letters, digits and hyphens, 1 to 63 characters,
 * starting with a letter or digit. A DNS label's shape: safe in URLs, paths, logs and names.
 */
export const SANDBOX_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** A kid is an RFC 7638 SHA-256 thumbprint: 32 bytes, base64url without padding. */
export const KID = /^[A-Za-z0-9_-]{43}$/;

/** Most audit events one read returns. */
export const AUDIT_MAX_LIMIT = 500;

/** Most sandboxes one page of GET /api/admin/sandboxes (and one registry page) holds. */
export const SANDBOX_PAGE_MAX = 1000;
