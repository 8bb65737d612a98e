/**
 * The CLI's one error type and its exit codes. Every failure the CLI reports on purpose is a
 * CliError: one line for an operator, no token or secret in it, and the exit code scripts
 * switch on.
 */

/** Exit codes, documented in `credctl --help`. */
export const EXIT = {
  ok: 0,
  /** The issuer answered with an error (4xx/5xx other than 401/403). */
  issuer: 1,
  /** Usage or bad input: unknown command or flag, missing argument, bad value, malformed token, file exists. */
  usage: 2,
  /** Not authorized: 401/403, or no admin credentials available. */
  auth: 3,
  /** The issuer is unreachable, or its answer is not the API's JSON. */
  unreachable: 4,
  /** token inspect: the token does not verify. */
  invalid: 5,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export class CliError extends Error {
  override name = 'CliError';
  readonly exitCode: ExitCode;

  constructor(exitCode: ExitCode, message: string) {
    super(message);
    this.exitCode = exitCode;
  }
}

export function usageError(message: string): CliError {
  return new CliError(EXIT.usage, message);
}

/** Longest piece of server-supplied text echoed to the terminal. */
const MAX_ECHO_CHARS = 300;

/**
 * Makes text from elsewhere (the issuer's error descriptions, claim values) safe for one terminal
 * line: control characters (escape sequences, newlines) become spaces, and it is cut to a bound.
 */
export function oneLine(text: string, max = MAX_ECHO_CHARS): string {
  const flat = text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}...` : flat;
}

/** Replaces every occurrence of each secret with a marker: the last guard before text reaches a terminal. */
export function redact(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join('[redacted]');
  return out;
}
