/**
 * Who may call /api/admin/* (DESIGN §4).
 *
 * - Cloudflare Access configured (team domain and audience): a valid Access JWT from the
 *   `Cf-Access-Jwt-Assertion` header or the `CF_Authorization` cookie, verified with jose
 *   against the team's certs. ADMIN_TOKEN is then ignored: Access is the stronger gate.
 * - Otherwise ADMIN_TOKEN: `Authorization: Bearer <token>`, compared in constant time.
 * - Neither: 403 for everyone. The admin API is never open.
 */
import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { Config } from './config.js';
import { IssuerError } from './issuer/errors.js';

export interface AdminIdentity {
  method: 'access' | 'token';
  /** Who, for the audit log: the Access email or service-token client id, or "admin-token". */
  subject: string;
}

/** Access signs its JWTs with RS256. */
const ACCESS_ALGS = ['RS256'];
/** Tolerance for Access JWT times: Access and Workers clocks are both synchronised. */
const ACCESS_CLOCK_TOLERANCE_SECONDS = 30;

const remoteSets = new Map<string, JWTVerifyGetKey>();

/** The team's signing keys, one jose remote set per team domain per isolate (jose caches and refetches). */
export function accessKeySet(teamDomain: string): JWTVerifyGetKey {
  let set = remoteSets.get(teamDomain);
  if (!set) {
    set = createRemoteJWKSet(new URL(`https://${teamDomain}/cdn-cgi/access/certs`));
    remoteSets.set(teamDomain, set);
  }
  return set;
}

export function cookie(header: string | null, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
}

/** Constant-time equality: compares fixed-length digests with no early exit. */
export async function safeEqual(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([digest(a), digest(b)]);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ y[i]!;
  return diff === 0;
}

/**
 * Verifies the Cloudflare Access JWT of a request (header, else cookie) against the team's certs.
 * Returns who it is (email, or a service token's common name). Used by the admin API and the
 * gateway path alike.
 */
export async function verifyAccess(
  req: Request,
  access: { teamDomain: string; aud: string },
  keySet: (teamDomain: string) => JWTVerifyGetKey = accessKeySet,
): Promise<string> {
  const jwt = req.headers.get('Cf-Access-Jwt-Assertion') ?? cookie(req.headers.get('Cookie'), 'CF_Authorization');
  if (!jwt) throw new IssuerError('unauthorized', 'a Cloudflare Access token is required');
  try {
    const { payload } = await jwtVerify(jwt, keySet(access.teamDomain), {
      issuer: `https://${access.teamDomain}`,
      audience: access.aud,
      algorithms: ACCESS_ALGS,
      clockTolerance: ACCESS_CLOCK_TOLERANCE_SECONDS,
    });
    return typeof payload.email === 'string' ? payload.email : typeof payload.common_name === 'string' ? payload.common_name : String(payload.sub ?? 'access');
  } catch {
    throw new IssuerError('unauthorized', 'the Cloudflare Access token is not valid for this application');
  }
}

export async function authenticateAdmin(
  req: Request,
  config: Config,
  keySet: (teamDomain: string) => JWTVerifyGetKey = accessKeySet,
): Promise<AdminIdentity> {
  const { access, token } = config.admin;
  if (access) return { method: 'access', subject: await verifyAccess(req, access, keySet) };
  if (token) {
    const header = req.headers.get('Authorization');
    const m = header ? /^Bearer +(\S+)\s*$/i.exec(header) : null;
    if (!m) throw new IssuerError('unauthorized', 'an admin bearer token is required');
    if (!(await safeEqual(m[1]!, token))) throw new IssuerError('unauthorized', 'the admin token is not valid');
    return { method: 'token', subject: 'admin-token' };
  }
  throw new IssuerError('forbidden', 'the admin API is disabled: set ADMIN_TOKEN or Cloudflare Access (CF_ACCESS_TEAM_DOMAIN, CF_ACCESS_AUD)');
}
