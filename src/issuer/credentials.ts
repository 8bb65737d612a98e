/**
 * Which secrets a sandbox receives, how derived ones are computed, their version, and their
 * encryption to the agent's X25519 key (docs/architecture.md, "credentials.json").
 *
 * `CREDENTIALS` (a var, JSON) maps a delivered name to a Worker secret:
 *   {"GATEWAY_TOKEN": {"secret": "MOLTBOT_GATEWAY_TOKEN", "derive": true},
 *    "ANTHROPIC_API_KEY": {"secret": "ANTHROPIC_API_KEY"}}
 * A plain entry delivers the secret's value; a derived one delivers
 * base64url(HMAC-SHA256(secret value, "credential:" + name + ":" + sandbox id)), so the master
 * never leaves the Worker and each sandbox gets its own value. An egress entry
 *   {"ANTHROPIC_API_KEY": {"secret": "ANTHROPIC_API_KEY",
 *     "egress": {"hosts": ["api.anthropic.com"], "header": "x-api-key"}}}
 * delivers a sentinel instead (sentinel.ts): the value itself is put into the request by the
 * Sandbox outbound handler (src/sandbox/egress.ts) and never enters the container.
 */
import { base64url, CompactEncrypt, importJWK } from 'jose';
import { z } from 'zod';
import { type CredentialDelivery, credentialsVersionFromDigest, credentialsVersionInput } from '../admin-api.js';
import { ConfigError, IssuerError } from './errors.js';

/** Delivered names and secret names: environment-variable style, so they can be exported as such. */
const NAME = /^[A-Z][A-Z0-9_]{0,63}$/;
/** Enough for a handful of API keys while keeping an agent token far under its 8 KiB cap. */
const MAX_CREDENTIALS = 16;

/** The request headers an egress entry can carry its key in, and how the value is written there. */
export const EGRESS_HEADERS = ['x-api-key', 'authorization'] as const;
export type EgressHeader = (typeof EGRESS_HEADERS)[number];

/** Where an egress entry's key may go: the outbound handler substitutes it for these hosts only. */
interface EgressBinding {
  /** Plain lowercase host names, compared with the request URL's hostname. */
  hosts: readonly string[];
  /** `x-api-key`: the raw value; `authorization`: `Bearer <value>`. */
  header: EgressHeader;
}

export interface CredentialEntry {
  /** The name the agent sees. */
  name: string;
  /** The Worker secret it comes from. */
  secret: string;
  derive: boolean;
  /** Delivered at egress: the container gets a sentinel, the outbound handler adds the value. */
  egress?: EgressBinding;
  /** The secret's value. Never logged, never in an error. */
  value: string;
}

/**
 * A plain lowercase host name: labels of a-z, 0-9 and inner hyphens, dot-separated, at most 253
 * characters. No scheme, port, path, wildcard, upper case or trailing dot: it is compared
 * byte for byte with the hostname of each intercepted request, so anything else would never
 * match, or match more than was meant.
 */
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
/** Hosts per egress entry: a provider has one API host, or a few regional ones. Bounds the sentinel's size. */
const MAX_EGRESS_HOSTS = 4;

export interface CredentialSet {
  version: string;
  values: Record<string, string>;
}

const entrySchema = z.strictObject({ secret: z.string().regex(NAME), derive: z.boolean().optional(), egress: z.unknown().optional() });

/** Checks an entry's `egress` object; each broken rule is a ConfigError naming the entry and the rule. */
function parseEgress(name: string, raw: unknown, derive: boolean): EgressBinding {
  const fail = (rule: string) => new ConfigError('CREDENTIALS', `entry ${name}: ${rule}`);
  if (derive)
    throw fail('"derive" and "egress" cannot be combined (a derived value is made for the container; an egress key never enters it)');
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw fail('egress must be an object {"hosts": ["api.example.com"], "header": "x-api-key" | "authorization"}');
  const o = raw as Record<string, unknown>;
  for (const key of Object.keys(o))
    if (key !== 'hosts' && key !== 'header') throw fail(`egress has an unknown field "${key.slice(0, 40)}" (only "hosts" and "header")`);
  if (!Array.isArray(o.hosts) || o.hosts.length === 0) throw fail('egress.hosts must be a non-empty list of host names');
  if (o.hosts.length > MAX_EGRESS_HOSTS) throw fail(`egress.hosts may name at most ${MAX_EGRESS_HOSTS} hosts`);
  const hosts: string[] = [];
  for (const h of o.hosts) {
    if (typeof h !== 'string' || !HOSTNAME.test(h)) {
      const shown = typeof h === 'string' ? JSON.stringify(h.slice(0, 64)) : typeof h;
      throw fail(
        `egress.hosts: ${shown} is not a plain lowercase host name (such as api.anthropic.com: no scheme, port, path, wildcard or upper case)`,
      );
    }
    if (!hosts.includes(h)) hosts.push(h);
  }
  if (typeof o.header !== 'string' || !(EGRESS_HEADERS as readonly string[]).includes(o.header)) {
    const shown = typeof o.header === 'string' ? JSON.stringify(o.header.slice(0, 40)) : 'missing';
    throw fail(`egress.header ${shown} is not one of ${EGRESS_HEADERS.map((x) => `"${x}"`).join(', ')}`);
  }
  return { hosts, header: o.header as EgressHeader };
}

/**
 * Parses the CREDENTIALS var and resolves each named secret from the env. A secret named but
 * not set is a ConfigError naming the secret.
 */
export function parseCredentials(raw: string | undefined, env: Partial<Record<string, unknown>>): CredentialEntry[] {
  const text = raw === undefined || raw.trim() === '' ? '{}' : raw;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ConfigError(
      'CREDENTIALS',
      'must be a JSON object such as {"GATEWAY_TOKEN": {"secret": "MOLTBOT_GATEWAY_TOKEN", "derive": true}}',
    );
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new ConfigError('CREDENTIALS', 'must be a JSON object');
  const names = Object.keys(json);
  if (names.length > MAX_CREDENTIALS) throw new ConfigError('CREDENTIALS', `may name at most ${MAX_CREDENTIALS} credentials`);
  const out: CredentialEntry[] = [];
  for (const name of names.sort()) {
    if (!NAME.test(name))
      throw new ConfigError('CREDENTIALS', `"${name.slice(0, 64)}" is not a valid name (A-Z, 0-9 and _, starting with a letter)`);
    const parsed = entrySchema.safeParse((json as Record<string, unknown>)[name]);
    if (!parsed.success) {
      throw new ConfigError(
        'CREDENTIALS',
        `entry ${name} must be {"secret": "SECRET_NAME", "derive": true|false} or {"secret": "SECRET_NAME", "egress": {...}} with SECRET_NAME in A-Z, 0-9 and _`,
      );
    }
    const derive = parsed.data.derive === true;
    const egress = parsed.data.egress === undefined ? undefined : parseEgress(name, parsed.data.egress, derive);
    const value = env[parsed.data.secret];
    if (typeof value !== 'string' || value === '') {
      throw new ConfigError(
        parsed.data.secret,
        `is named in CREDENTIALS (for ${name}) but not set; set it with wrangler secret put ${parsed.data.secret}`,
      );
    }
    out.push(egress ? { name, secret: parsed.data.secret, derive, egress, value } : { name, secret: parsed.data.secret, derive, value });
  }
  return out;
}

/** The egress entries bound to `host`, in name order. */
export function egressEntriesFor(entries: readonly CredentialEntry[], host: string): CredentialEntry[] {
  return entries.filter((e) => e.egress?.hosts.includes(host));
}

/** Every host some egress entry is bound to: what the outbound handler intercepts. */
export function egressHosts(entries: readonly CredentialEntry[]): string[] {
  return [...new Set(entries.flatMap((e) => e.egress?.hosts ?? []))].sort();
}

/** How an entry reaches the sandbox, for status and audit displays: never a value. */
export function deliveryOf(e: CredentialEntry): CredentialDelivery {
  if (e.egress) return { name: e.name, delivery: 'egress', hosts: [...e.egress.hosts], header: e.egress.header };
  return { name: e.name, delivery: e.derive ? 'derived' : 'value' };
}

const enc = new TextEncoder();

async function hmac(key: string, message: string): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey('raw', enc.encode(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', k, enc.encode(message)));
}

/** The derived value of one credential for one sandbox. */
export async function deriveValue(master: string, name: string, sandboxId: string): Promise<string> {
  return base64url.encode(await hmac(master, `credential:${name}:${sandboxId}`));
}

/**
 * The version: a short hash over the delivered names and values, so any change of any delivered
 * value changes it, and nothing else does. 96 bits of SHA-256; it identifies, it does not protect.
 * The formula is the contract's (credentialsVersionInput), which the agent hashes the same way.
 */
export async function credentialsVersion(values: Record<string, string>): Promise<string> {
  return credentialsVersionFromDigest(new Uint8Array(await crypto.subtle.digest('SHA-256', enc.encode(credentialsVersionInput(values)))));
}

/**
 * A fingerprint of the Worker secrets CREDENTIALS delivers into sandboxes (names and values), the
 * same for every sandbox: it changes when `wrangler secret put` changes any of them, and the
 * Worker then pushes a refresh. Egress entries are left out: their value is read at each request
 * by the outbound handler, so a new one applies with no push and no refresh. 96 bits of SHA-256.
 */
export async function secretsFingerprint(entries: readonly CredentialEntry[]): Promise<string> {
  const pairs = [...new Map(entries.filter((e) => !e.egress).map((e) => [e.secret, e.value])).entries()].sort(([a], [b]) =>
    a < b ? -1 : a > b ? 1 : 0,
  );
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', enc.encode(`secrets-fingerprint:v1:${JSON.stringify(pairs)}`)));
  return base64url.encode(digest.subarray(0, 12));
}

/**
 * The values one sandbox receives that do not change from token to token: plain and derived
 * entries. Egress entries are not here: each token carries fresh sentinels (sentinel.ts).
 * @public test/node/sandbox-env.test.ts imports it by path (Workers-typed module), out of knip's sight.
 */
export async function fixedValuesFor(entries: readonly CredentialEntry[], sandboxId: string): Promise<Record<string, string>> {
  const values: Record<string, string> = {};
  for (const e of entries) {
    if (e.egress) continue;
    values[e.name] = e.derive ? await deriveValue(e.value, e.name, sandboxId) : e.value;
  }
  return values;
}

/** What one sandbox receives, given the sentinels of this token (none without egress entries). */
export async function credentialSet(fixed: Record<string, string>, sentinels: Record<string, string> = {}): Promise<CredentialSet> {
  const values = { ...fixed, ...sentinels };
  return { version: await credentialsVersion(values), values };
}

/**
 * Per-isolate memo of fixedValuesFor, keyed by the entries array (one per parsed config, so a
 * new deployment with new secrets starts afresh). Bounded: the Worker fronts few sandboxes.
 */
const memo = new WeakMap<readonly CredentialEntry[], Map<string, Promise<Record<string, string>>>>();
const MEMO_MAX_SANDBOXES = 1024;

export function cachedFixedValuesFor(entries: readonly CredentialEntry[], sandboxId: string): Promise<Record<string, string>> {
  let m = memo.get(entries);
  if (!m) memo.set(entries, (m = new Map()));
  let hit = m.get(sandboxId);
  if (!hit) {
    if (m.size >= MEMO_MAX_SANDBOXES) m.clear();
    hit = fixedValuesFor(entries, sandboxId);
    m.set(sandboxId, hit);
  }
  return hit;
}

/** An agent's registered X25519 public key. */
export interface X25519PublicJwk {
  kty: 'OKP';
  crv: 'X25519';
  x: string;
}

const JWE_ALG = 'ECDH-ES+A256KW';
const JWE_ENC = 'A256GCM';

/** Encrypts a credential set to the agent's key as a compact JWE (ECDH-ES+A256KW, A256GCM). */
export async function encryptCredentials(set: CredentialSet, agentKey: X25519PublicJwk): Promise<string> {
  const key = await importJWK({ kty: 'OKP', crv: 'X25519', x: agentKey.x }, JWE_ALG);
  return new CompactEncrypt(enc.encode(JSON.stringify({ version: set.version, values: set.values })))
    .setProtectedHeader({ alg: JWE_ALG, enc: JWE_ENC, cty: 'json' })
    .encrypt(key);
}

/**
 * Refuses an agent key that credentials cannot be encrypted to: low-order X25519 points (u = 0, 1,
 * p - 1, p, ...) make ECDH fail (RFC 7748 §6.1: an all-zero shared secret), which would turn
 * every later refresh of the sandbox into a failure. One key agreement with a throwaway key
 * shows it, before the key is stored: the same operation the JWE encryption runs.
 */
export async function checkAgentKey(agentKey: X25519PublicJwk): Promise<void> {
  try {
    const peer = await crypto.subtle.importKey('jwk', { kty: 'OKP', crv: 'X25519', x: agentKey.x }, { name: 'X25519' }, false, []);
    const mine = (await crypto.subtle.generateKey({ name: 'X25519' }, false, ['deriveBits'])) as CryptoKeyPair;
    const shared = new Uint8Array(
      await crypto.subtle.deriveBits({ name: 'X25519', public: peer } as unknown as SubtleCryptoDeriveKeyAlgorithm, mine.privateKey, 256),
    );
    if (shared.every((b) => b === 0)) throw new Error('all-zero shared secret');
  } catch {
    throw new IssuerError('invalid_request', 'enc_jwk is not a usable X25519 public key (a low-order point, or not on the curve)');
  }
}
