/**
 * One JSON object per line on the console, which Workers Logs and `wrangler tail` keep as is.
 *
 * Fields are identifiers only (event, kid, jti, sandbox, code, option). Callers never pass a
 * token, an assertion, a key or a secret value; the test suite captures the log of whole
 * scenarios and searches it for such material.
 */
export type LogFields = Record<string, string | number | boolean | undefined>;

export type Level = 'info' | 'warn' | 'error';

export function log(level: Level, event: string, fields: LogFields = {}): void {
  const line = JSON.stringify({ level, event, ...fields });
  if (level === 'error') console.error(line);
  else if (level === 'warn') console.warn(line);
  else console.log(line);
}
