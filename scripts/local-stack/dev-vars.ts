/**
 * `.dev.vars`: the local Worker's secrets and var overrides (dotenv format, read by wrangler dev).
 * On first run it is written from keys.example with a fresh random value for every placeholder
 * secret; an existing file is never overwritten (an operator's edits and the local keys' KEK live
 * there).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dotenvEntry, parseDotenv } from '../../src/admin-api.js';

/** keys.example marks every value that must be secret with this prefix. */
const PLACEHOLDER = /^replace-me/;
/** 32 random bytes: at least the 32 characters config.ts asks of every secret, once base64url. */
const SECRET_BYTES = 32;

/** Writes `devVarsPath` from `examplePath` if it does not exist. Returns whether it wrote one. */
export function ensureDevVars(devVarsPath: string, examplePath: string): boolean {
  if (existsSync(devVarsPath)) return false;
  const out = readFileSync(examplePath, 'utf8')
    .split('\n')
    .map((line) => {
      const e = dotenvEntry(line);
      return e && PLACEHOLDER.test(e.value) ? `${e.name}=${randomBytes(SECRET_BYTES).toString('base64url')}` : line;
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

/** The entries of a dotenv file, by the contract's rule (parseDotenv), the one the CLI reads it by. */
export function readDevVars(path: string): Record<string, string> {
  return parseDotenv(readFileSync(path, 'utf8'));
}
