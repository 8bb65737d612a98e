/**
 * Typed errors with stable codes, and the one table (ERRORS) that says, per code, the HTTP status,
 * the log level and the public body: toErrorResponse and the app's error handler both read it.
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

/** How the issuer answers and logs one error code. */
interface ErrorSpec {
  status: number;
  /**
   * The log level of a refusal with this code: `error` for server faults (the operator must act),
   * `info` for a caller's mistake.
   */
  level: 'info' | 'error';
  /** The `error` field of the body, when it is not the code itself. */
  error?: string;
  /** A fixed `error_description` for every such error; without one, the error's own message. */
  description?: string;
  /** Extra response headers. */
  headers?: Readonly<Record<string, string>>;
}

/** What a server fault tells anonymous callers: which option is broken goes to the log only. */
const CONFIGURATION_FAULT = { status: 500, level: 'error', description: 'configuration error' } as const;

/** The one table per error code: status, log level and public body, read by toErrorResponse and app.ts. */
export const ERRORS: Readonly<Record<ErrorCode, ErrorSpec>> = {
  configuration_error: CONFIGURATION_FAULT,
  invalid_request: { status: 400, level: 'info' },
  // RFC 6749 §5.2: client authentication failed.
  invalid_client: { status: 401, level: 'info' },
  unsupported_grant_type: { status: 400, level: 'info' },
  invalid_kid: { status: 400, level: 'info' },
  unauthorized: { status: 401, level: 'info', headers: { 'WWW-Authenticate': 'Bearer realm="admin"' } },
  forbidden: { status: 403, level: 'info' },
  not_found: { status: 404, level: 'info' },
  rotation_too_soon: { status: 409, level: 'info' },
  too_many_retiring_keys: { status: 409, level: 'info' },
  // RFC 6749 has no error code for an oversized body; 413 with invalid_request says both.
  payload_too_large: { status: 413, level: 'info', error: 'invalid_request' },
  gateway_unavailable: { status: 503, level: 'info' },
  bad_gateway: { status: 502, level: 'info' },
  // A signing-key wrapping key that does not fit the stored keys is an operator mistake
  // the service cannot recover from by itself: report it as a server-side configuration fault.
  kek_mismatch: CONFIGURATION_FAULT,
  kek_missing: CONFIGURATION_FAULT,
  internal_error: { status: 500, level: 'error', description: 'internal error' },
};

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
 * Maps any thrown value to a status and a JSON body, by the ERRORS table. Server faults get a
 * fixed body ("configuration error", "internal error"): the details go to the log, not to
 * anonymous callers. Unknown errors become a generic 500; the caller logs them.
 */
export function toErrorResponse(err: unknown): { status: number; body: ErrorBody; headers: Record<string, string> } {
  const known = err instanceof IssuerError ? err : undefined;
  const code: ErrorCode = known?.code ?? 'internal_error';
  const spec = ERRORS[code];
  return {
    status: spec.status,
    body: { error: spec.error ?? code, error_description: spec.description ?? known?.message ?? '' },
    headers: { 'Content-Type': 'application/json', ...spec.headers },
  };
}
