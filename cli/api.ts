/**
 * The admin API's answers as the CLI reads them (README, "HTTP API"). Declared here, not imported
 * from src/: the CLI is a client of the HTTP contract, not of the Worker's internals.
 */

export type KeyState = 'next' | 'active' | 'retiring' | 'removed';

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

export interface KeyListing {
  keys: KeyView[];
  schedule: {
    rotation_period_seconds: number;
    next_rotation_at: string;
    earliest_manual_rotation_at: string;
  };
}

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
}

export interface AuditEvent {
  at: string;
  sandbox?: string;
  event: string;
  outcome: string;
  code?: string;
  kid?: string;
  jti?: string;
  cred_ver?: string;
  actor?: string;
}

export interface BootstrapFile {
  client_id: string;
  issuer: string;
  token_endpoint: string;
  key: { kid?: string; [k: string]: unknown };
}

export interface Jwks {
  keys: { kid?: string; kty?: string; crv?: string; alg?: string; [k: string]: unknown }[];
}

/** A sandbox id: a DNS label's shape (the issuer checks the same). */
export const SANDBOX_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** A kid: an RFC 7638 SHA-256 thumbprint, 43 base64url characters. */
export const KID = /^[A-Za-z0-9_-]{43}$/;
/** Most audit events the issuer returns at once. */
export const AUDIT_MAX_LIMIT = 500;
