/**
 * Global options: which issuer, which admin credentials, how long to wait. A flag wins over its
 * environment variable. Resolved once per run, before any request.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEV_VARS_FILE, isLoopbackUrl, LOCAL_ISSUER, parseDotenv } from '../src/admin-api.js';
import { usageError } from './errors.js';

/** A request that has not answered in this many seconds counts as an unreachable issuer. */
export const DEFAULT_TIMEOUT_SECONDS = 10;
/** The longest --timeout accepted: beyond this a hung issuer would just look like a hung CLI. */
const MAX_TIMEOUT_SECONDS = 600;

export interface AdminCredentials {
  /** `Authorization: Bearer` for a Worker that checks ADMIN_TOKEN. */
  adminToken?: string;
  /** A Cloudflare Access service token, for a Worker behind Access. */
  access?: { clientId: string; clientSecret: string };
  /** Where the admin token came from, for error hints. */
  source: 'flag' | 'env' | 'dev-vars' | 'none';
}

export interface GlobalOptions {
  issuer: URL;
  /** The issuer URL as tokens carry it in `iss`: no trailing slash. */
  issuerText: string;
  credentials: AdminCredentials;
  timeoutMs: number;
  json: boolean;
}

export interface RawGlobals {
  issuer?: string;
  'admin-token'?: string;
  'access-client-id'?: string;
  'access-client-secret'?: string;
  timeout?: string;
  json?: boolean;
}

function parseIssuer(raw: string): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw usageError('--issuer: must be an absolute http(s) URL such as https://issuer.example.com');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw usageError('--issuer: must be an http(s) URL');
  if (u.username || u.password) throw usageError('--issuer: must not carry credentials');
  if (u.search || u.hash) throw usageError('--issuer: must not carry a query or fragment');
  return u;
}

function parseTimeout(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_TIMEOUT_SECONDS * 1000;
  const n = /^\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw) : NaN;
  if (!(n > 0) || n > MAX_TIMEOUT_SECONDS)
    throw usageError(`--timeout: must be a number of seconds greater than 0 and at most ${MAX_TIMEOUT_SECONDS}`);
  return Math.round(n * 1000);
}

/** ADMIN_TOKEN from the local stack's .dev.vars in `dir` (the contract's dotenv rule). Missing file or empty value: undefined. */
function adminTokenFromDevVars(dir: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, DEV_VARS_FILE), 'utf8');
  } catch {
    return undefined;
  }
  return parseDotenv(text).ADMIN_TOKEN || undefined;
}

export function resolveGlobals(raw: RawGlobals, env: NodeJS.ProcessEnv, cwd: string): GlobalOptions {
  const issuer = parseIssuer(raw.issuer ?? (env.ISSUER_URL || LOCAL_ISSUER));
  const issuerText = issuer.href.replace(/\/+$/, '');

  const id = raw['access-client-id'] ?? (env.CF_ACCESS_CLIENT_ID || undefined);
  const secret = raw['access-client-secret'] ?? (env.CF_ACCESS_CLIENT_SECRET || undefined);
  if ((id === undefined) !== (secret === undefined)) {
    throw usageError(
      'a Cloudflare Access service token needs both --access-client-id and --access-client-secret (CF_ACCESS_CLIENT_ID, CF_ACCESS_CLIENT_SECRET)',
    );
  }
  const credentials: AdminCredentials = { source: 'none' };
  if (id !== undefined && secret !== undefined) credentials.access = { clientId: id, clientSecret: secret };
  if (raw['admin-token'] !== undefined) {
    if (raw['admin-token'].trim() === '') throw usageError('--admin-token: must not be empty');
    credentials.adminToken = raw['admin-token'].trim();
    credentials.source = 'flag';
  } else if (env.ADMIN_TOKEN) {
    credentials.adminToken = env.ADMIN_TOKEN.trim();
    credentials.source = 'env';
  } else if (isLoopbackUrl(issuer)) {
    // Newcomer convenience: the local stack's own token, only ever sent to this machine.
    const fromFile = adminTokenFromDevVars(cwd);
    if (fromFile !== undefined) {
      credentials.adminToken = fromFile;
      credentials.source = 'dev-vars';
    }
  }
  return { issuer, issuerText, credentials, timeoutMs: parseTimeout(raw.timeout), json: raw.json === true };
}

/** Every secret value of a run, for the last-resort redaction of output. */
export function secretsOf(c: AdminCredentials | undefined): string[] {
  if (!c) return [];
  return [c.adminToken, c.access?.clientSecret].filter((s): s is string => s !== undefined);
}
