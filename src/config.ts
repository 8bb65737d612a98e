/**
 * The Worker's environment, parsed once into a typed Config with one strict zod schema.
 *
 * A broken value fails with a ConfigError naming the option and the rule it broke; the
 * Worker answers such a request with a 500 "configuration error" and logs which option.
 * The key-timing rules the durations must keep are issuer/key-timing.ts's, called from here.
 */
import { z } from 'zod';
import { isLoopbackUrl, SANDBOX_ID } from './admin-api.js';
import { type CredentialEntry, parseCredentials } from './issuer/credentials.js';
import { ConfigError } from './issuer/errors.js';
import { checkKeyTiming, type Timing } from './issuer/key-timing.js';
import { agentTokenBytesBound, TOKEN_MAX_BYTES } from './issuer/tokens.js';

/** Bindings and vars the Worker reads. Secrets are optional strings here and validated below. */
export interface Env {
  /**
   * The two authorities' namespaces, typed where their stubs are made (src/services.ts): the
   * authorities import this module, so it names none of their classes.
   */
  KEY_AUTHORITY: DurableObjectNamespace;
  SANDBOX_AUTHORITY: DurableObjectNamespace;
  /** The Cloudflare Sandbox the gateway runs in (absent where the gateway runs elsewhere). */
  Sandbox?: DurableObjectNamespace;
  ISSUER?: string;
  ACCESS_TOKEN_TTL?: string;
  AGENT_TOKEN_TTL?: string;
  JWKS_MAX_AGE?: string;
  CLOCK_SKEW?: string;
  ROTATION_PERIOD?: string;
  CF_ACCESS_TEAM_DOMAIN?: string;
  CF_ACCESS_AUD?: string;
  ADMIN_USERS?: string;
  ADMIN_ACCESS_AUD?: string;
  CREDENTIALS?: string;
  SANDBOX_ID?: string;
  GATEWAY_UPSTREAM?: string;
  DEV_USER?: string;
  ADMIN_TOKEN?: string;
  SIGNING_KEY_KEK?: string;
}

export interface Config {
  issuer: string;
  timing: Timing;
  admin: {
    /**
     * Cloudflare Access, when both team domain and audience are set. Admins are an explicit
     * allow-list: `users` (ADMIN_USERS, lower case) and/or every identity of a separate Access
     * application for /api/admin (`adminAud`, ADMIN_ACCESS_AUD). With neither, no Access identity
     * is an admin.
     */
    access?: { teamDomain: string; aud: string; users: readonly string[]; adminAud?: string };
    token?: string;
  };
  signingKeyKek?: string;
  /** What each sandbox receives, with the secrets' values resolved. */
  credentials: CredentialEntry[];
  gateway: {
    /** The sandbox this Worker fronts: access tokens carry aud gateway:<sandboxId>. */
    sandboxId: string;
    /** Send gateway traffic to this URL instead of into the sandbox (local use, gateways elsewhere). */
    upstream?: string;
    /** The user of every gateway request when Cloudflare Access is off; loopback issuers only. */
    devUser?: string;
  };
}

/** Every option the config schema knows: documentation and its test read this list. */
export const OPTIONS = [
  'ISSUER',
  'ACCESS_TOKEN_TTL',
  'AGENT_TOKEN_TTL',
  'JWKS_MAX_AGE',
  'CLOCK_SKEW',
  'ROTATION_PERIOD',
  'CF_ACCESS_TEAM_DOMAIN',
  'CF_ACCESS_AUD',
  'ADMIN_USERS',
  'ADMIN_ACCESS_AUD',
  'CREDENTIALS',
  'SANDBOX_ID',
  'GATEWAY_UPSTREAM',
  'DEV_USER',
  'ADMIN_TOKEN',
  'SIGNING_KEY_KEK',
] as const;

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
const DURATION = /^(\d{1,9})(s|m|h|d)?$/;

/** Bounds that keep values sane; the reasons are in the messages. */
const MIN_TTL_SECONDS = 10; // shorter tokens expire before an agent can use them across a hop
const MAX_TTL_SECONDS = 86400; // a day: beyond that "short-lived" means nothing
const MAX_CLOCK_SKEW_SECONDS = 300; // more hides broken clocks and extends every token's life
const MIN_JWKS_MAX_AGE_SECONDS = 1; // 0 would mean no-store, which the timing invariants forbid for the JWKS
const MAX_JWKS_MAX_AGE_SECONDS = 86400;
/** ADMIN_TOKEN and SIGNING_KEY_KEK must carry at least ~128 bits as random text. */
const MIN_SECRET_LENGTH = 32;

function duration(option: string, fallback: string) {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      const text = raw === undefined || raw.trim() === '' ? fallback : raw.trim();
      const m = DURATION.exec(text);
      if (!m) {
        ctx.addIssue({ code: 'custom', message: `${option}: must be a duration such as 300, 300s, 5m, 24h or 1d` });
        return z.NEVER;
      }
      return Number(m[1]) * UNIT_SECONDS[m[2] ?? 's']!;
    });
}

const optionalText = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

const schema = z.object({
  ISSUER: z
    .string({ error: 'ISSUER: is required (the public URL of this Worker, e.g. https://issuer.example.com)' })
    .refine((v) => isHttpUrl(v), { message: 'ISSUER: must be an absolute http(s) URL without query or fragment' }),
  ACCESS_TOKEN_TTL: duration('ACCESS_TOKEN_TTL', '300s'),
  AGENT_TOKEN_TTL: duration('AGENT_TOKEN_TTL', '600s'),
  JWKS_MAX_AGE: duration('JWKS_MAX_AGE', '300s'),
  CLOCK_SKEW: duration('CLOCK_SKEW', '30s'),
  ROTATION_PERIOD: duration('ROTATION_PERIOD', '24h'),
  CF_ACCESS_TEAM_DOMAIN: optionalText,
  CF_ACCESS_AUD: optionalText,
  ADMIN_USERS: optionalText,
  ADMIN_ACCESS_AUD: optionalText,
  CREDENTIALS: z.string().optional(),
  SANDBOX_ID: optionalText
    .transform((v) => v ?? 'main')
    .refine((v) => SANDBOX_ID.test(v), {
      message: 'SANDBOX_ID: must be 1 to 63 lowercase letters, digits or hyphens, starting with a letter or digit',
    }),
  GATEWAY_UPSTREAM: optionalText.refine((v) => v === undefined || isHttpUrl(v), {
    message: 'GATEWAY_UPSTREAM: must be an absolute http(s) URL',
  }),
  DEV_USER: optionalText,
  ADMIN_TOKEN: optionalText,
  SIGNING_KEY_KEK: optionalText,
});

/** More admins than this is a group, which belongs in a separate Access application (ADMIN_ACCESS_AUD). */
const MAX_ADMIN_USERS = 100;

/** ADMIN_USERS: comma-separated Access identities (emails, service-token client ids), compared in lower case. */
function parseAdminUsers(raw: string | undefined): string[] {
  if (raw === undefined) return [];
  const users = raw
    .split(',')
    .map((u) => u.trim().toLowerCase())
    .filter((u) => u !== '');
  for (const u of users) {
    if (u.length > 254 || /[\s\x00-\x1f]/.test(u))
      throw new ConfigError(
        'ADMIN_USERS',
        'must be a comma-separated list of emails or service-token client ids, without spaces inside one',
      );
  }
  if (users.length > MAX_ADMIN_USERS)
    throw new ConfigError(
      'ADMIN_USERS',
      `must name at most ${MAX_ADMIN_USERS} identities; use a separate Access application (ADMIN_ACCESS_AUD) for more`,
    );
  return users;
}

function isHttpUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === 'https:' || u.protocol === 'http:') && u.search === '' && u.hash === '';
  } catch {
    return false;
  }
}

/** Checks one rule and throws a ConfigError naming the option when it is broken. */
function rule(ok: boolean, option: string, text: string): void {
  if (!ok) throw new ConfigError(option, text);
}

/** Parses and validates the environment. Pure: the same env always gives the same answer. */
export function parseConfig(env: Partial<Record<string, unknown>>): Config {
  const picked: Record<string, unknown> = {};
  for (const name of OPTIONS) picked[name] = env[name];
  const parsed = schema.safeParse(picked);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const option = String(issue.path[0] ?? 'config');
    // Our own messages start with the option name; zod's generic ones get it prepended.
    const text = issue.message.startsWith(`${option}: `) ? issue.message.slice(option.length + 2) : issue.message;
    throw new ConfigError(option, text);
  }
  const v = parsed.data;
  const timing: Timing = {
    accessTokenTtl: v.ACCESS_TOKEN_TTL,
    agentTokenTtl: v.AGENT_TOKEN_TTL,
    jwksMaxAge: v.JWKS_MAX_AGE,
    clockSkew: v.CLOCK_SKEW,
    rotationPeriod: v.ROTATION_PERIOD,
  };

  for (const [option, ttl] of [
    ['ACCESS_TOKEN_TTL', timing.accessTokenTtl],
    ['AGENT_TOKEN_TTL', timing.agentTokenTtl],
  ] as const) {
    rule(ttl >= MIN_TTL_SECONDS && ttl <= MAX_TTL_SECONDS, option, `must be between ${MIN_TTL_SECONDS}s and ${MAX_TTL_SECONDS}s`);
  }
  rule(timing.clockSkew <= MAX_CLOCK_SKEW_SECONDS, 'CLOCK_SKEW', `must be at most ${MAX_CLOCK_SKEW_SECONDS}s`);
  rule(
    timing.jwksMaxAge >= MIN_JWKS_MAX_AGE_SECONDS && timing.jwksMaxAge <= MAX_JWKS_MAX_AGE_SECONDS,
    'JWKS_MAX_AGE',
    `must be between ${MIN_JWKS_MAX_AGE_SECONDS}s and ${MAX_JWKS_MAX_AGE_SECONDS}s`,
  );
  checkKeyTiming(timing);

  const teamDomain = v.CF_ACCESS_TEAM_DOMAIN;
  const aud = v.CF_ACCESS_AUD;
  rule(!(teamDomain && !aud), 'CF_ACCESS_AUD', 'must be set when CF_ACCESS_TEAM_DOMAIN is set');
  rule(!(aud && !teamDomain), 'CF_ACCESS_TEAM_DOMAIN', 'must be set when CF_ACCESS_AUD is set');
  if (teamDomain) {
    rule(
      /^[a-z0-9-]+(\.[a-z0-9-]+)+$/i.test(teamDomain.replace(/^https:\/\//, '').replace(/\/$/, '')),
      'CF_ACCESS_TEAM_DOMAIN',
      'must be a host name such as myteam.cloudflareaccess.com',
    );
  }
  const adminUsers = parseAdminUsers(v.ADMIN_USERS);
  rule(
    !(adminUsers.length && !teamDomain),
    'ADMIN_USERS',
    'names Cloudflare Access identities: set CF_ACCESS_TEAM_DOMAIN and CF_ACCESS_AUD too',
  );
  rule(
    !(v.ADMIN_ACCESS_AUD && !teamDomain),
    'ADMIN_ACCESS_AUD',
    'is an Access application audience: set CF_ACCESS_TEAM_DOMAIN and CF_ACCESS_AUD too',
  );
  rule(
    !(v.ADMIN_ACCESS_AUD && v.ADMIN_ACCESS_AUD === aud),
    'ADMIN_ACCESS_AUD',
    "must be another Access application than CF_ACCESS_AUD (the gateway's): every gateway user would be an admin",
  );
  if (v.ADMIN_TOKEN !== undefined) {
    rule(v.ADMIN_TOKEN.length >= MIN_SECRET_LENGTH, 'ADMIN_TOKEN', `must be at least ${MIN_SECRET_LENGTH} characters`);
  }
  if (v.SIGNING_KEY_KEK !== undefined) {
    rule(v.SIGNING_KEY_KEK.length >= MIN_SECRET_LENGTH, 'SIGNING_KEY_KEK', `must be at least ${MIN_SECRET_LENGTH} characters`);
  }

  const credentials = parseCredentials(v.CREDENTIALS, env);
  const bound = agentTokenBytesBound(v.ISSUER, credentials);
  rule(
    bound <= TOKEN_MAX_BYTES,
    'CREDENTIALS',
    `the delivered entries could make agent tokens up to ${bound} bytes, over the ${TOKEN_MAX_BYTES}-byte cap; deliver fewer or shorter values (an egress entry's sentinel takes about 600 bytes)`,
  );
  if (v.DEV_USER !== undefined) {
    // A fixed user for every request is for a laptop only: never on a public issuer.
    rule(isLoopbackUrl(v.ISSUER), 'DEV_USER', 'may only be set when ISSUER is a loopback URL (127.0.0.1, localhost)');
    rule(v.DEV_USER.length <= 254 && !/[\s\x00-\x1f]/.test(v.DEV_USER), 'DEV_USER', 'must be a user name or email without spaces');
  }

  return {
    issuer: v.ISSUER.replace(/\/+$/, ''),
    timing,
    admin: {
      access:
        teamDomain && aud
          ? { teamDomain: teamDomain.replace(/^https:\/\//, '').replace(/\/$/, ''), aud, users: adminUsers, adminAud: v.ADMIN_ACCESS_AUD }
          : undefined,
      token: v.ADMIN_TOKEN,
    },
    signingKeyKek: v.SIGNING_KEY_KEK,
    credentials,
    gateway: { sandboxId: v.SANDBOX_ID, upstream: v.GATEWAY_UPSTREAM?.replace(/\/+$/, ''), devUser: v.DEV_USER },
  };
}

const cache = new WeakMap<object, Config | ConfigError>();

/**
 * Parses the env once per env object (one per isolate) and remembers the outcome, so a broken
 * config is reported on every request without being re-parsed.
 */
export function loadConfig(env: object): Config {
  let hit = cache.get(env);
  if (!hit) {
    try {
      hit = parseConfig(env as Record<string, unknown>);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      hit = e;
    }
    cache.set(env, hit);
  }
  if (hit instanceof ConfigError) throw hit;
  return hit;
}
