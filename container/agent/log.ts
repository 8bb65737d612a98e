/**
 * One JSON object per line on stdout: time, level, event and identifiers (kid, jti, version,
 * codes). Callers never pass a token, a key or a credential value.
 */
export type Fields = Record<string, string | number | boolean | undefined>;
export type Logger = (level: 'info' | 'warn' | 'error', event: string, fields?: Fields) => void;

export function createLogger(write: (line: string) => void = (l) => process.stdout.write(l)): Logger {
  return (level, event, fields = {}) => {
    write(`${JSON.stringify({ time: new Date().toISOString(), level, event, ...fields })}\n`);
  };
}
