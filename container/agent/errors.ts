/**
 * The agent's one error type. Every failure a refresh can meet becomes an AgentError with a
 * stable code, so the loop logs, counts and backs off from it instead of exiting.
 */
export type AgentErrorCode =
  | 'bootstrap_malformed'
  | 'issuer_unreachable'
  | 'issuer_error'
  | 'bootstrap_refused'
  | 'request_rejected'
  | 'bad_response'
  /** The token's `cred` does not decrypt: the issuer holds another X25519 key for this sandbox. */
  | 'credentials_undecryptable';

export interface AgentErrorDetail {
  /** The issuer's HTTP status. */
  status?: number;
}

/** A failure with a stable code; the message is one line for an operator, with no secret in it. */
export class AgentError extends Error {
  readonly code: AgentErrorCode;
  readonly status?: number;
  constructor(code: AgentErrorCode, message: string, detail: AgentErrorDetail = {}) {
    super(message);
    this.name = 'AgentError';
    this.code = code;
    this.status = detail.status;
  }
}
