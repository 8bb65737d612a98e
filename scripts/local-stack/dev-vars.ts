/**
 * `.dev.vars`: the local Worker's secrets and var overrides (dotenv format, read by wrangler dev).
 * On first run it is written from keys.example with a fresh random value for every placeholder
 * secret; an existing file is never overwritten (an operator's edits and the local keys' KEK live
 * there).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

/** keys.example marks every value that must be secret with this prefix. */
const PLACEHOLDER = /^replace-me/;
const LINE = /^([A-Z][A-Z0-9_]*)=(.*)$/;
/** 32 random bytes: at least the 32 characters config.ts asks of every secret, once base64url. */
const SECRET_BYTES = 32;

/** Writes `devVarsPath` from `examplePath` if it does not exist. Returns whether it wrote one. */
export function ensureDevVars(devVarsPath: string, examplePath: string): boolean {
  if (existsSync(devVarsPath)) return false;
  const out = readFileSync(examplePath, 'utf8')
    .split('\n')
    .map((line) => {
      const m = LINE.exec(line);
      return m && PLACEHOLDER.test(m[2]!) ? `${m[1]}=${randomBytes(SECRET_BYTES).toString('base64url')}` : line;
    });
  try {
    // 'wx': if another process wrote it in between, theirs stands.
    writeFileSync(devVarsPath, out.join('\n'), { mode: 0o600, flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  return true;
}

/** KEY=VALUE lines of a dotenv file; comments and blank lines skipped, one level of quotes removed. */
export function readDevVars(path: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = LINE.exec(line.trim());
    if (!m) continue;
    vars[m[1]!] = m[2]!.replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1');
  }
  return vars;
}
