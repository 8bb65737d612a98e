/**
 * Who may call /api/admin/* (docs/architecture.md, "Admin API").
 *
 * - Cloudflare Access configured (team domain and audience): a valid Access JWT from the
 *   `Cf-Access-Jwt-Assertion` header or the `CF_Authorization` cookie, verified with jose
 *   against the team's certs, whose identity is on the admin allow-list: named in ADMIN_USERS,
 *   or admitted by a separate Access application for /api/admin (its audience ADMIN_ACCESS_AUD).
 *   Access admits every gateway user, so Access alone never makes an admin: with no allow-list,
 *   no Access identity is one. ADMIN_TOKEN is then ignored: Access is the stronger gate.
 * - Otherwise ADMIN_TOKEN: `Authorization: Bearer <token>`, compared in constant time.
 * - Neither: 403 for everyone. The admin API is never open.
 *
 * State-changing requests must also pass checkStateChange (cross-site request forgery).
 */
import { createRemoteJWKSet, type JWTVerifyGetKey, jwtVerify } from 'jose';
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
function accessKeySet(teamDomain: string): JWTVerifyGetKey {
  let set = remoteSets.get(teamDomain);
  if (!set) {
    set = createRemoteJWKSet(new URL(`https://${teamDomain}/cdn-cgi/access/certs`));
    remoteSets.set(teamDomain, set);
  }
  return set;
}

function cookie(header: string | null, name: string): string | undefined {
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
async function safeEqual(a: string, b: string): Promise<boolean> {
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
  return (await accessIdentity(req, { teamDomain: access.teamDomain, audiences: [access.aud] }, keySet)).subject;
}

/** The Access identity of a request, and the audiences its JWT was issued for. */
async function accessIdentity(
  req: Request,
  access: { teamDomain: string; audiences: string[] },
  keySet: (teamDomain: string) => JWTVerifyGetKey,
): Promise<{ subject: string; aud: string[] }> {
  const jwt = req.headers.get('Cf-Access-Jwt-Assertion') ?? cookie(req.headers.get('Cookie'), 'CF_Authorization');
  if (!jwt) throw new IssuerError('unauthorized', 'a Cloudflare Access token is required');
  try {
    const { payload } = await jwtVerify(jwt, keySet(access.teamDomain), {
      issuer: `https://${access.teamDomain}`,
      audience: access.audiences,
      algorithms: ACCESS_ALGS,
      clockTolerance: ACCESS_CLOCK_TOLERANCE_SECONDS,
    });
    const subject =
      typeof payload.email === 'string'
        ? payload.email
        : typeof payload.common_name === 'string'
          ? payload.common_name
          : String(payload.sub ?? 'access');
    const aud = typeof payload.aud === 'string' ? [payload.aud] : Array.isArray(payload.aud) ? payload.aud : [];
    return { subject, aud };
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
  if (access) {
    if (access.users.length === 0 && !access.adminAud) {
      throw new IssuerError(
        'forbidden',
        'no Cloudflare Access identity is an admin: name them in ADMIN_USERS, or set ADMIN_ACCESS_AUD to a separate Access application for /api/admin',
      );
    }
    const audiences = access.adminAud ? [access.adminAud, access.aud] : [access.aud];
    const who = await accessIdentity(req, { teamDomain: access.teamDomain, audiences }, keySet);
    // The admin application's own policy is its allow-list; the gateway's admits every bot user.
    const viaAdminApp = access.adminAud !== undefined && who.aud.includes(access.adminAud);
    if (!viaAdminApp && !access.users.includes(who.subject.toLowerCase())) {
      throw new IssuerError('forbidden', `${who.subject.slice(0, 254)} is not an admin (ADMIN_USERS does not name it)`);
    }
    return { method: 'access', subject: who.subject };
  }
  if (token) {
    const header = req.headers.get('Authorization');
    const m = header ? /^Bearer +(\S+)\s*$/i.exec(header) : null;
    if (!m) throw new IssuerError('unauthorized', 'an admin bearer token is required');
    if (!(await safeEqual(m[1]!, token))) throw new IssuerError('unauthorized', 'the admin token is not valid');
    return { method: 'token', subject: 'admin-token' };
  }
  throw new IssuerError(
    'forbidden',
    'the admin API is disabled: set ADMIN_TOKEN or Cloudflare Access (CF_ACCESS_TEAM_DOMAIN, CF_ACCESS_AUD)',
  );
}

/** Methods that change state: they must pass checkStateChange. */
const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/**
 * A browser sends these cross-site only after a CORS preflight, which this API never grants:
 * their presence shows the request is not a form post or a simple fetch from another site.
 */
const NON_SIMPLE_CONTENT_TYPE = 'application/json';

/**
 * Cross-site request forgery. A state-changing admin request must be one a browser cannot send
 * cross-site without a preflight: `Content-Type: application/json`, or an `Authorization` header
 * (ADMIN_TOKEN, never attached by a browser on its own). A request that carries cookies (the
 * Access cookie is sent by the browser on its own) must also come from this issuer's own origin:
 * `Origin` equal to the ISSUER origin, and no `Sec-Fetch-Site` other than same-origin.
 */
export function checkStateChange(req: Request, config: Config): void {
  if (!STATE_CHANGING.has(req.method)) return;
  const type = (req.headers.get('Content-Type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== NON_SIMPLE_CONTENT_TYPE && !req.headers.has('Authorization')) {
    throw new IssuerError('forbidden', `a state-changing admin request must be sent with Content-Type: ${NON_SIMPLE_CONTENT_TYPE}`);
  }
  if (req.headers.has('Cookie')) {
    const origin = req.headers.get('Origin');
    const site = req.headers.get('Sec-Fetch-Site');
    if (origin !== new URL(config.issuer).origin || (site !== null && site !== 'same-origin')) {
      throw new IssuerError(
        'forbidden',
        "a state-changing admin request with cookies must come from the issuer's own origin (Origin header)",
      );
    }
  }
}
