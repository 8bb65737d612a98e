/**
 * What of a previous run's files can be used at start (issue 12 F). Nothing on disk is believed
 * for what it claims: the token's expiry comes from the token itself, the credentials must prove
 * they are whole (their version is a hash over their names and values) and be the version the
 * token carries. state.json only remembers bookkeeping (the hook's last version); it decides
 * nothing about validity. Each file that cannot be used is reported, by name and reason.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { CREDENTIALS_FILE, type CredentialsFile, credentialsVersionFromDigest, credentialsVersionInput } from '../../src/admin-api.js';
import { type AgentState, type FileProblem, type SavedFile, type SavedFiles, STATE_FILE, TOKEN_FILE } from './files.js';

/**
 * A token claiming a longer life than the issuer ever gives (AGENT_TOKEN_TTL is at most 1 d) was
 * not issued by it: a hand-made `token` must not keep /healthz green for days.
 */
export const MAX_TOKEN_LIFETIME_S = 24 * 60 * 60;

/**
 * The credentials version as the issuer computes it: the contract's formula (credentialsVersionInput,
 * credentialsVersionFromDigest) over Node's SHA-256. A test holds it equal to the Worker's.
 */
export function credentialsVersion(values: Record<string, string>): string {
  return credentialsVersionFromDigest(createHash('sha256').update(credentialsVersionInput(values)).digest());
}

interface RestoredToken {
  token: string;
  iat: number;
  exp: number;
  kid?: string;
  jti?: string;
  credVer?: string;
  /** Its life on this machine's clock, counted from when the file was written (epoch ms). */
  localStart: number;
  localExpiry: number;
}

export interface Restored {
  token?: RestoredToken;
  credentials?: CredentialsFile;
  state: AgentState;
  problems: FileProblem[];
}

function decodePart(part: string | undefined): Record<string, unknown> | undefined {
  if (!part || !/^[A-Za-z0-9_-]+$/.test(part)) return undefined;
  try {
    const v = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function readToken(f: SavedFile, now: number): RestoredToken | string {
  const parts = f.text.trim().split('.');
  const header = decodePart(parts[0]);
  const claims = decodePart(parts[1]);
  if (parts.length !== 3 || !header || !claims || !parts[2]) return 'not a JWT';
  const { iat, exp } = claims;
  if (typeof iat !== 'number' || typeof exp !== 'number' || !Number.isFinite(iat) || !Number.isFinite(exp) || exp <= iat)
    return 'a JWT without a usable iat and exp';
  if (exp - iat > MAX_TOKEN_LIFETIME_S)
    return `a JWT claiming a lifetime of ${exp - iat} s, more than the issuer gives (${MAX_TOKEN_LIFETIME_S} s)`;
  // The file was written the moment the token arrived: its life runs from then, on this clock
  // (a modification time in the future, after the clock was set back, counts as now).
  const localStart = Math.min(f.writtenAt, now);
  const localExpiry = localStart + (exp - iat) * 1000;
  if (localExpiry <= now) return `expired ${Math.ceil((now - localExpiry) / 1000)} s ago`;
  return {
    token: f.text.trim(),
    iat,
    exp,
    kid: typeof header.kid === 'string' ? header.kid : undefined,
    jti: typeof claims.jti === 'string' ? claims.jti : undefined,
    credVer: typeof claims.cred_ver === 'string' ? claims.cred_ver : undefined,
    localStart,
    localExpiry,
  };
}

function readCredentials(f: SavedFile, expected: string | undefined): CredentialsFile | string {
  const c = parseObject(f.text);
  if (!c) return 'not a JSON object';
  const { version, values } = c;
  if (typeof version !== 'string' || !values || typeof values !== 'object' || Array.isArray(values)) return 'no version or values';
  const names = Object.keys(values);
  const empty = names.filter(
    (k) => typeof (values as Record<string, unknown>)[k] !== 'string' || (values as Record<string, string>)[k] === '',
  );
  if (empty.length > 0) return `version ${version} with missing or empty values for ${empty.join(', ')}`;
  // The version is a hash over the names and values: a value removed, emptied or edited shows.
  if (credentialsVersion(values as Record<string, string>) !== version)
    return `values that do not match version ${version} (some removed or changed)`;
  if (expected !== undefined && version !== expected) return `version ${version}, not the token's ${expected}`;
  return { version, values: values as Record<string, string> };
}

/** Decides what of `saved` can be used at `now`; every file that cannot is in `problems`. */
export function inspectSaved(saved: SavedFiles, now: number): Restored {
  const problems = [...saved.problems];
  const problem = (file: string, path: string, reason: string) => problems.push({ file, path, reason });
  let token: RestoredToken | undefined;
  if (saved.token) {
    const t = readToken(saved.token, now);
    if (typeof t === 'string') problem(TOKEN_FILE, saved.token.path, t);
    else token = t;
  }
  let credentials: CredentialsFile | undefined;
  if (saved.credentials) {
    const c = readCredentials(saved.credentials, token?.credVer);
    if (typeof c === 'string') problem(CREDENTIALS_FILE, saved.credentials.path, c);
    else credentials = c;
  } else if (token?.credVer) {
    problem(CREDENTIALS_FILE, join(saved.dir, CREDENTIALS_FILE), `missing; the token carries credentials version ${token.credVer}`);
  }
  let state: AgentState = {};
  if (saved.state) {
    const s = parseObject(saved.state.text);
    if (s) state = s as AgentState;
    else problem(STATE_FILE, saved.state.path, 'not a JSON object (truncated?); the token and credentials do not depend on it');
  }
  return { token, credentials, state, problems };
}
