/**
 * Typed errors with stable codes, and the one function that turns them into HTTP.
 *
 * Callers and tests switch on `code`, never on the message. Messages are written for
 * operators and must never contain a token, a secret or key material: they end up in
 * response bodies and log lines.
 */

export type ErrorCode =
  | 'configuration_error'
  | 'invalid_request'
  | 'invalid_client'
  | 'unsupported_grant_type'
  | 'invalid_kid'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'rotation_too_soon'
  | 'too_many_retiring_keys'
  | 'payload_too_large'
  | 'gateway_unavailable'
  | 'bad_gateway'
  | 'kek_mismatch'
  | 'kek_missing'
  | 'internal_error';

/** Base class: every error the issuer raises on purpose carries a stable `code`. */
export class IssuerError extends Error {
  readonly code: ErrorCode;
  /** Extra fields safe to log and to return (never secrets). */
  readonly details: Readonly<Record<string, string | number | boolean>>;

  constructor(code: ErrorCode, message: string, details: Record<string, string | number | boolean> = {}) {
    super(message);
    this.name = 'IssuerError';
    this.code = code;
    this.details = details;
  }
}

/** A configuration value is missing or breaks a rule; names the option and the rule. */
export class ConfigError extends IssuerError {
  readonly option: string;
  readonly rule: string;

  constructor(option: string, rule: string) {
    super('configuration_error', `${option}: ${rule}`, { option });
    this.name = 'ConfigError';
    this.option = option;
    this.rule = rule;
  }
}

const STATUS: Record<ErrorCode, number> = {
  configuration_error: 500,
  invalid_request: 400,
  // RFC 6749 §5.2: client authentication failed.
  invalid_client: 401,
  unsupported_grant_type: 400,
  invalid_kid: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  rotation_too_soon: 409,
  too_many_retiring_keys: 409,
  payload_too_large: 413,
  gateway_unavailable: 503,
  bad_gateway: 502,
  // A signing-key wrapping key that does not fit the stored keys is an operator mistake
  // the service cannot recover from by itself: report it as a server-side configuration fault.
  kek_mismatch: 500,
  kek_missing: 500,
  internal_error: 500,
};

export function statusOf(code: ErrorCode): number {
  return STATUS[code];
}

/** Carries the fields of an IssuerError across a Durable Object RPC boundary. */
export interface SerializedError {
  readonly code: ErrorCode;
  readonly message: string;
  readonly details: Record<string, string | number | boolean>;
}

/** Durable Object RPC loses error subclasses; this restores them from a serialized form. */
export function revive(e: SerializedError): IssuerError {
  return new IssuerError(e.code, e.message, e.details);
}

export interface ErrorBody {
  error: string;
  error_description: string;
}

/**
 * Maps any thrown value to a status and a JSON body. Configuration errors get a generic body
 * ("configuration error"): which option is broken goes to the log, not to anonymous callers.
 * Unknown errors become a generic 500; the caller logs them.
 */
export function toErrorResponse(err: unknown): { status: number; body: ErrorBody; headers: Record<string, string> } {
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  if (!(err instanceof IssuerError)) {
    return { status: 500, body: { error: 'internal_error', error_description: 'internal error' }, headers };
  }
  const status = statusOf(err.code);
  if (err.code === 'configuration_error' || err.code === 'kek_mismatch' || err.code === 'kek_missing') {
    return { status, body: { error: err.code, error_description: 'configuration error' }, headers };
  }
  if (err.code === 'internal_error') {
    return { status, body: { error: 'internal_error', error_description: 'internal error' }, headers };
  }
  if (err.code === 'unauthorized') headers['WWW-Authenticate'] = 'Bearer realm="admin"';
  // RFC 6749 has no error code for an oversized body; 413 with invalid_request says both.
  const error = err.code === 'payload_too_large' ? 'invalid_request' : err.code;
  return { status, body: { error, error_description: err.message }, headers };
}
