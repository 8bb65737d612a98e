/**
 * The contract of everything that crosses a process boundary, in one place: the admin API (paths,
 * answers, parameter patterns), the token endpoint's answer, the bootstrap file and its check, the
 * agent's credentials.json and its version formula, the default ports, the loopback rule, and the
 * `.dev.vars` format. The Worker writes these, the agent, the verifying proxy, the operator CLI
 * and the local stack read them; each fact is stated here once and imported everywhere else.
 *
 * Plain TypeScript only: no imports, nothing of the Workers or Node APIs (WHATWG URL, which both
 * have, is the one global it uses), so the Worker, Node code and the CLI's bundle all import it.
 */

// ---------------------------------------------------------------------------------------------
// Paths

/** The token endpoint (RFC 6749 client_credentials with an RFC 7523 client assertion). */
export const TOKEN_PATH = '/oauth/token';
/** The published signing keys. */
export const JWKS_PATH = '/.well-known/jwks.json';
/** Every admin route is under this prefix. */
export const ADMIN_PREFIX = '/api/admin';

/**
 * The admin API's routes, under ADMIN_PREFIX: method and path pattern (`:name` is a parameter, as
 * Hono writes it). AdminAnswers says what each answers; adminPath fills a pattern in.
 */
export const ADMIN_ROUTES = {
  listKeys: { method: 'GET', path: '/keys' },
  /** `?force=true|false`. */
  rotateKeys: { method: 'POST', path: '/keys/rotate' },
  revokeKey: { method: 'POST', path: '/keys/:kid/revoke' },
  /** `?limit=N&cursor=C`. */
  listSandboxes: { method: 'GET', path: '/sandboxes' },
  sandboxStatus: { method: 'GET', path: '/sandboxes/:id' },
  revokeSandbox: { method: 'DELETE', path: '/sandboxes/:id' },
  bootstrap: { method: 'POST', path: '/sandboxes/:id/bootstrap' },
  refreshSandbox: { method: 'POST', path: '/sandboxes/:id/refresh' },
  restartGateway: { method: 'POST', path: '/gateway/restart' },
  /** `?sandbox=ID&limit=N`. */
  audit: { method: 'GET', path: '/audit' },
} as const;

export type AdminRoute = keyof typeof ADMIN_ROUTES;

/** What each admin route answers with 200. */
export interface AdminAnswers {
  listKeys: KeyListing;
  rotateKeys: KeyListing;
  revokeKey: KeyListing;
  listSandboxes: SandboxListing;
  sandboxStatus: SandboxStatus;
  revokeSandbox: SandboxStatus;
  bootstrap: BootstrapFile;
  refreshSandbox: RefreshAnswer;
  restartGateway: GatewayRestartAnswer;
  audit: AuditListing;
}

/**
 * The path of an admin route under ADMIN_PREFIX, its `:name` parameters filled in from `params`
 * (each percent-encoded; a sandbox id or a kid, checked against SANDBOX_ID or KID first, never
 * needs it) and `query` appended when it has any entry.
 */
export function adminPath(route: AdminRoute, params: Record<string, string> = {}, query?: URLSearchParams): string {
  const path = ADMIN_ROUTES[route].path.replace(/:([a-z]+)/g, (_, name: string) => {
    const v = params[name];
    if (v === undefined) throw new TypeError(`adminPath(${route}): no value for :${name}`);
    return encodeURIComponent(v);
  });
  const qs = query?.toString();
  return qs ? `${path}?${qs}` : path;
}

// ---------------------------------------------------------------------------------------------
// Answers

/** Every error answer of the issuer (the token endpoint's RFC 6749 ones included): a stable code and a reason, never a secret. */
export interface ErrorAnswer {
  error: string;
  error_description?: string;
}

/** The token endpoint's 200 answer. */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  /** Seconds. */
  expires_in: number;
  /** The version of the credentials the token carries (`cred_ver`), when it carries any. */
  credentials_version?: string;
}

export type KeyState = 'next' | 'active' | 'retiring' | 'removed';

/** A key as the admin API shows it: state and times, never private material. */
export interface KeyView {
  kid: string;
  state: KeyState;
  created_at: string;
  activated_at?: string;
  retired_at?: string;
  remove_at?: string;
  removed_at?: string;
  removed_reason?: string;
}

/** GET /api/admin/keys, and the answer to a rotation or revocation. */
export interface KeyListing {
  keys: KeyView[];
  schedule: {
    rotation_period_seconds: number;
    next_rotation_at: string;
    earliest_manual_rotation_at: string;
  };
}

/** GET /api/admin/sandboxes/:id, and each entry of GET /api/admin/sandboxes. */
export interface SandboxStatus {
  sandbox: string;
  exists: boolean;
  revoked: boolean;
  bootstrap_kid?: string;
  bootstrapped_at?: string;
  revoked_at?: string;
  agent_key_registered: boolean;
  last_issued_at?: string;
  token_expires_at?: string;
  credentials_version?: string;
  /** What CREDENTIALS delivers to every sandbox, and how (the deployment's config, not this sandbox's state). */
  credentials?: CredentialDelivery[];
}

/**
 * How one CREDENTIALS entry reaches a sandbox: its value (`value`), a per-sandbox HMAC of it
 * (`derived`), or a sentinel that the outbound handler swaps for the value on the way to one of
 * `hosts` (`egress`). Names and hosts only: never a value, never a sentinel.
 */
export interface CredentialDelivery {
  name: string;
  delivery: 'value' | 'derived' | 'egress';
  hosts?: string[];
  header?: string;
}

/**
 * One audit event: identifiers only. Never a token, an assertion, a key or a secret value: there
 * is no field that could carry one.
 */
export interface AuditEvent {
  at: string;
  sandbox?: string;
  event: string;
  outcome: 'ok' | 'refused';
  code?: string;
  kid?: string;
  jti?: string;
  cred_ver?: string;
  actor?: string;
}

/**
 * Refusals of a sandbox's token requests, counted per rule per minute rather than kept one by one:
 * anyone can send junk that names a sandbox, and counting keeps it from pushing the sandbox's
 * authenticated events (issuances, admin actions) out of the bounded audit table.
 */
export interface RefusalCount {
  /** Start of the minute counted. */
  minute: string;
  /** The last refusal counted in that minute. */
  last_at: string;
  sandbox: string;
  /** The assertion rule that refused (README, token endpoint). */
  code: string;
  /** True when the assertion's signature verified under the sandbox's key (an agent or a replayed copy). */
  authenticated: boolean;
  count: number;
}

/** GET /api/admin/audit: authenticated events and refusal counts, each newest first and each at most `limit`. */
export interface AuditListing {
  events: AuditEvent[];
  refusals: RefusalCount[];
  /** The merged view (no `?sandbox=`): how many sandboxes' logs it read, of how many there are. */
  sandboxes?: { included: number; total: number };
  /** What CREDENTIALS delivers, and how (names and hosts only). */
  credentials?: CredentialDelivery[];
}

/** GET /api/admin/sandboxes: one page, the Worker's own sandbox first; `next_cursor` gets the next. */
export interface SandboxListing {
  sandboxes: SandboxStatus[];
  /** Every sandbox ever bootstrapped. */
  total: number;
  next_cursor?: string;
}

/** POST /api/admin/sandboxes/:id/refresh. */
interface RefreshAnswer {
  sandbox: string;
  refresh: string;
}

/** POST /api/admin/gateway/restart: `started` is false when the gateway was already running. */
interface GatewayRestartAnswer {
  sandbox: string;
  started: boolean;
}

/**
 * Sandbox ids (and so client ids): lowercase letters, digits and hyphens, 1 to 63 characters,
 * starting with a letter or digit. A DNS label's shape: safe in URLs, paths, logs and names.
 */
export const SANDBOX_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** A kid is an RFC 7638 SHA-256 thumbprint: 32 bytes, base64url without padding. */
export const KID = /^[A-Za-z0-9_-]{43}$/;

/** Most audit events one read returns. */
export const AUDIT_MAX_LIMIT = 500;

/** Most sandboxes one page of GET /api/admin/sandboxes (and one registry page) holds. */
export const SANDBOX_PAGE_MAX = 1000;

// ---------------------------------------------------------------------------------------------
// The bootstrap file

/**
 * The bootstrap key: a private Ed25519 JWK (RFC 8037: kty OKP, crv Ed25519, x, d), with its kid
 * (the RFC 7638 thumbprint) as the Worker writes it. Typed loosely, as JSON arrives;
 * checkBootstrapFile holds a file to the members that matter.
 */
export interface BootstrapKey {
  kty?: string;
  crv?: string;
  x?: string;
  d?: string;
  kid?: string;
  [member: string]: unknown;
}

/**
 * What POST /api/admin/sandboxes/:id/bootstrap answers (and what the Worker writes into its own
 * sandbox): the agent's only secret, read once at its start.
 */
export interface BootstrapFile {
  client_id: string;
  issuer: string;
  token_endpoint: string;
  key: BootstrapKey;
}

/** The members of a bootstrap file, and `file` for the value as a whole. */
type BootstrapField = 'file' | 'client_id' | 'issuer' | 'token_endpoint' | 'key';

export type BootstrapFileCheck = { ok: true; file: BootstrapFile } | { ok: false; field: BootstrapField; problem: string };

function isHttpUrl(v: unknown): boolean {
  if (typeof v !== 'string') return false;
  try {
    const u = new URL(v);
    return u.protocol === 'https:' || u.protocol === 'http:';
  } catch {
    return false;
  }
}

/**
 * Whether `value` (parsed JSON) is a bootstrap file: a JSON object with a non-empty client_id,
 * http(s) URLs for issuer and token_endpoint, and a private Ed25519 JWK as key. Otherwise which
 * field is wrong and how, in words fit for a message (never the value: the key is a secret).
 */
export function checkBootstrapFile(value: unknown): BootstrapFileCheck {
  const bad = (field: BootstrapField, problem: string): BootstrapFileCheck => ({ ok: false, field, problem });
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return bad('file', 'not a JSON object');
  const f = value as Record<string, unknown>;
  if (typeof f.client_id !== 'string' || f.client_id === '') return bad('client_id', 'client_id is missing');
  for (const k of ['issuer', 'token_endpoint'] as const) {
    if (!isHttpUrl(f[k])) return bad(k, `${k} is not an http(s) URL`);
  }
  const key = f.key as BootstrapKey | null | undefined;
  if (
    !key ||
    typeof key !== 'object' ||
    Array.isArray(key) ||
    key.kty !== 'OKP' ||
    key.crv !== 'Ed25519' ||
    typeof key.x !== 'string' ||
    typeof key.d !== 'string'
  ) {
    return bad('key', 'key is not a private Ed25519 JWK');
  }
  return { ok: true, file: { client_id: f.client_id, issuer: f.issuer as string, token_endpoint: f.token_endpoint as string, key } };
}

// ---------------------------------------------------------------------------------------------
// credentials.json

/** The agent's output file, next to its token, which the gateway (and the verifying proxy) read. */
export const CREDENTIALS_FILE = 'credentials.json';

/**
 * credentials.json, and the plaintext of an agent token's `cred`: every delivered name with its
 * value, and the version over them (credentialsVersionInput).
 */
export interface CredentialsFile {
  version: string;
  values: Record<string, string>;
}

/** Bytes of the SHA-256 digest kept as the version: 96 bits; it identifies, it does not protect. */
const CREDENTIALS_VERSION_BYTES = 12;

/**
 * The string whose SHA-256 (of its UTF-8) makes the credentials version: a prefix, then the names
 * and values as JSON pairs sorted by name. Any change of any delivered name or value changes it,
 * and nothing else does. The Worker and the agent hash it with their own SHA-256
 * (credentialsVersionFromDigest makes the version of the digest).
 */
export function credentialsVersionInput(values: Record<string, string>): string {
  return `credentials-version:v1:${JSON.stringify(
    Object.keys(values)
      .sort()
      .map((k) => [k, values[k]]),
  )}`;
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** The credentials version of a SHA-256 digest of credentialsVersionInput: its first 96 bits, base64url (16 characters). */
export function credentialsVersionFromDigest(sha256: Uint8Array): string {
  if (sha256.length !== 32) throw new TypeError('credentialsVersionFromDigest: not a SHA-256 digest');
  const b = sha256.subarray(0, CREDENTIALS_VERSION_BYTES);
  let out = '';
  // 12 bytes are four whole groups of three: no padding, no tail.
  for (let i = 0; i < b.length; i += 3) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
    out += BASE64URL[n >> 18]! + BASE64URL[(n >> 12) & 63]! + BASE64URL[(n >> 6) & 63]! + BASE64URL[n & 63]!;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Ports

/**
 * The ports in the container (start.sh's defaults, the environment the Worker starts it with): the
 * agent (health, metrics, the push's POST /refresh), the verifying proxy, and the gateway (OpenClaw's
 * default), which listens on the container's loopback only.
 */
export const CONTAINER_PORTS = { agent: 8788, proxy: 8789, gateway: 18789 } as const;

/** The address the local stack (npm run dev) listens on. */
export const LOCAL_HOST = '127.0.0.1';
/** The local stack's first port, the issuer's; `--base-port N` moves the stack to N..N+5. */
export const LOCAL_BASE_PORT = 8787;
/** The local stack's issuer, the operator CLI's default. */
export const LOCAL_ISSUER = `http://${LOCAL_HOST}:${LOCAL_BASE_PORT}`;

/** The local stack's ports, from its base: issuer, agent, verifying proxy, gateway, stand-in model provider, egress hop. */
export interface LocalStackPorts {
  issuer: number;
  agent: number;
  proxy: number;
  gateway: number;
  /** The stand-in model provider: base + 4. */
  modelProvider: number;
  /** The local egress hop (scripts/local-stack/egress-hop.ts): base + 5. */
  egressHop: number;
}

export function localStackPorts(base: number = LOCAL_BASE_PORT): LocalStackPorts {
  return { issuer: base, agent: base + 1, proxy: base + 2, gateway: base + 3, modelProvider: base + 4, egressHop: base + 5 };
}

// ---------------------------------------------------------------------------------------------
// Loopback

/**
 * Whether `url` names this machine: a literal loopback address (127.0.0.0/8, `[::1]`) or the name
 * `localhost` itself, nothing else. The one rule for "local": the Worker allows DEV_USER and the
 * local routes only on a loopback ISSUER, and the CLI sends admin credentials over plain http only
 * to a loopback issuer. A name under `.localhost` (`evil.localhost`) does not count: RFC 6761 asks
 * resolvers to answer it with loopback, but the system resolver may pass it to DNS, and whatever
 * DNS answers would receive what is sent (issue 11, finding 12). `localhost.` (with the dot) is a
 * DNS name too. The URL parser normalises the host first: `127.1` and `0x7f.0.0.1` arrive as
 * `127.0.0.1`, `[0:0:0:0:0:0:0:1]` as `[::1]`, upper case as lower case. Not a URL: false.
 */
export function isLoopbackUrl(url: string | URL): boolean {
  let host: string;
  try {
    host = (typeof url === 'string' ? new URL(url) : url).hostname;
  } catch {
    return false;
  }
  return host === 'localhost' || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host);
}

// ---------------------------------------------------------------------------------------------
// .dev.vars

/**
 * The local Worker's secrets and var overrides, in the project root: the local stack writes it
 * (from keys.example), wrangler dev reads it, and the CLI takes ADMIN_TOKEN from it for a loopback
 * issuer.
 */
export const DEV_VARS_FILE = '.dev.vars';

const DOTENV_LINE = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/;

/**
 * One line of a dotenv file as a name and its value, or undefined for a comment, a blank line or
 * anything else: an optional `export `, NAME=VALUE with blanks allowed around `=` and at either
 * end, and one pair of matching quotes (' or ") around the value removed. The part of dotenv that
 * keys.example and the local stack write: no inline comments, escapes or multi-line values.
 */
export function dotenvEntry(line: string): { name: string; value: string } | undefined {
  const m = DOTENV_LINE.exec(line);
  if (!m) return undefined;
  return { name: m[1]!, value: m[2]!.replace(/^(['"])(.*)\1$/, '$2') };
}

/** The entries of a dotenv file; a name given twice has its last value (as wrangler reads it). */
export function parseDotenv(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const e = dotenvEntry(line);
    if (e) vars[e.name] = e.value;
  }
  return vars;
}
