/**
 * Global options: which issuer, which admin credentials, how long to wait. A flag wins over its
 * environment variable. Resolved once per run, before any request.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { usageError } from './errors.js';

export const DEFAULT_ISSUER = 'http://127.0.0.1:8787';
/** A request that has not answered in this many seconds counts as an unreachable issuer. */
export const DEFAULT_TIMEOUT_SECONDS = 10;
/** The longest --timeout accepted: beyond this a hung issuer would just look like a hung CLI. */
const MAX_TIMEOUT_SECONDS = 600;
/** The local stack (`npm run dev`) writes its secrets here, ADMIN_TOKEN among them. */
const DEV_VARS_FILE = '.dev.vars';

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

/**
 * Whether plain http to `url` stays on this machine, so admin credentials may go over it: a literal
 * loopback address (127.0.0.0/8, `[::1]`) or the name `localhost` itself, nothing else. A name
 * under `.localhost` (`evil.localhost`) does not count: RFC 6761 asks resolvers to answer it with
 * loopback, but the system resolver may pass it to DNS, and whatever DNS answers would receive the
 * admin token in the clear (issue 11, finding 12). `localhost.` (with the dot) is a DNS name too.
 * The URL parser has already normalised the host: `127.1` and `0x7f.0.0.1` arrive as `127.0.0.1`,
 * `[0:0:0:0:0:0:0:1]` as `[::1]`, and upper case as lower case.
 */
export function isLoopback(url: URL): boolean {
  const h = url.hostname;
  return h === 'localhost' || h === '[::1]' || /^127(\.\d{1,3}){3}$/.test(h);
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
  if (!(n > 0) || n > MAX_TIMEOUT_SECONDS) throw usageError(`--timeout: must be a number of seconds greater than 0 and at most ${MAX_TIMEOUT_SECONDS}`);
  return Math.round(n * 1000);
}

/** ADMIN_TOKEN from a dotenv-style file; quotes around the value are dropped. Missing file: undefined. */
export function adminTokenFromDevVars(dir: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, DEV_VARS_FILE), 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*(?:export\s+)?ADMIN_TOKEN\s*=\s*(.*?)\s*$/.exec(line);
    if (!m) continue;
    const v = m[1]!.replace(/^(['"])(.*)\1$/, '$2');
    return v === '' ? undefined : v;
  }
  return undefined;
}

export function resolveGlobals(raw: RawGlobals, env: NodeJS.ProcessEnv, cwd: string): GlobalOptions {
  const issuer = parseIssuer(raw.issuer ?? (env.ISSUER_URL || DEFAULT_ISSUER));
  const issuerText = issuer.href.replace(/\/+$/, '');

  const id = raw['access-client-id'] ?? (env.CF_ACCESS_CLIENT_ID || undefined);
  const secret = raw['access-client-secret'] ?? (env.CF_ACCESS_CLIENT_SECRET || undefined);
  if ((id === undefined) !== (secret === undefined)) {
    throw usageError('a Cloudflare Access service token needs both --access-client-id and --access-client-secret (CF_ACCESS_CLIENT_ID, CF_ACCESS_CLIENT_SECRET)');
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
  } else if (isLoopback(issuer)) {
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
