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
  | 'credentials_undecryptable'
  /** The issuer refused the assertion's times (expired, iat_in_future, nbf_in_future): a clock problem, not a key problem. */
  | 'clock_skew'
  /** A file could not be written (ENOSPC, EISDIR, EACCES, ...); `path` names it. */
  | 'write_failed'
  /** A bug: anything thrown that is not one of the above. Logged and retried like any failure. */
  | 'internal_error';

export interface AgentErrorDetail {
  /** The issuer's HTTP status. */
  status?: number;
  /** The file a write failed for. */
  path?: string;
  /** The issuer's rule code, for a refusal. */
  rule?: string;
}

/** A failure with a stable code; the message is one line for an operator, with no secret in it. */
export class AgentError extends Error {
  readonly code: AgentErrorCode;
  readonly status?: number;
  readonly path?: string;
  readonly rule?: string;
  constructor(code: AgentErrorCode, message: string, detail: AgentErrorDetail = {}) {
    super(message);
    this.name = 'AgentError';
    this.code = code;
    this.status = detail.status;
    this.path = detail.path;
    this.rule = detail.rule;
  }
}

/** What an errno means, for a log line an operator reads. */
const ERRNO_TEXT: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EISDIR: 'is a directory',
  ENOTDIR: 'a path component is not a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  EIO: 'input/output error',
  ENOENT: 'no such file or directory',
};

/** "EISDIR: is a directory" for a Node system error; its message otherwise. */
export function describeErrno(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string') return ERRNO_TEXT[code] ? `${code}: ${ERRNO_TEXT[code]}` : code;
  return e instanceof Error ? e.message : String(e);
}
