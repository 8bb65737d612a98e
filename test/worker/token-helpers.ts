import { base64url, exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import { expect } from 'vitest';
import { ADMIN_PREFIX, adminPath, type BootstrapFile, checkBootstrapFile, type ErrorAnswer, TOKEN_PATH } from '../../src/admin-api.js';
import { adminHeaders, BASE, call } from './helpers.js';

/** The contract's type, for the test files that import it from here. */
export type { BootstrapFile };

export const TOKEN_URL = `${BASE}${TOKEN_PATH}`;
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** A new bootstrap file for `id`, through the admin API; it must pass the contract's check. */
export async function bootstrap(id: string, envOverride: Record<string, unknown> = {}): Promise<BootstrapFile> {
  const res = await call(`${ADMIN_PREFIX}${adminPath('bootstrap', { id })}`, { method: 'POST', headers: adminHeaders() }, envOverride);
  expect(res.status).toBe(200);
  const body: unknown = await res.json();
  expect(checkBootstrapFile(body)).toMatchObject({ ok: true });
  return body as BootstrapFile;
}

export interface AssertionOpts {
  header?: Record<string, unknown>;
  claims?: Record<string, unknown>;
  /** Claims to delete from the defaults. */
  drop?: string[];
  now?: number;
}

/** A valid assertion for the bootstrap file, with overrides. */
export async function assertion(b: BootstrapFile, o: AssertionOpts = {}): Promise<string> {
  const now = Math.floor((o.now ?? Date.now()) / 1000);
  const claims: Record<string, unknown> = {
    iss: b.client_id,
    sub: b.client_id,
    aud: b.issuer,
    iat: now,
    exp: now + 60,
    jti: crypto.randomUUID(),
    ...o.claims,
  };
  for (const k of o.drop ?? []) delete claims[k];
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'EdDSA', kid: b.key.kid, ...o.header } as { alg: string })
    .sign(await importJWK(b.key, 'EdDSA'));
}

/** Hand-built JWS with any header and signature bytes (for alg confusion and garbage). */
export function rawJws(header: Record<string, unknown>, claims: Record<string, unknown>, signature = ''): string {
  const enc = (o: unknown) => base64url.encode(new TextEncoder().encode(JSON.stringify(o)));
  return `${enc(header)}.${enc(claims)}.${signature}`;
}

export function form(params: Record<string, string>): RequestInit {
  return { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(params).toString() };
}

export function tokenForm(jwt: string, extra: Record<string, string> = {}): RequestInit {
  return form({ grant_type: 'client_credentials', client_assertion_type: JWT_BEARER, client_assertion: jwt, ...extra });
}

export async function requestToken(
  jwt: string,
  extra: Record<string, string> = {},
  envOverride: Record<string, unknown> = {},
): Promise<Response> {
  return call(TOKEN_PATH, tokenForm(jwt, extra), envOverride);
}

/** An agent's X25519 key pair, as the agent would make it. */
export async function agentKeyPair(): Promise<{ publicJwk: JWK; privateKey: CryptoKey }> {
  const { publicKey, privateKey } = await generateKeyPair('ECDH-ES+A256KW', { crv: 'X25519', extractable: true });
  const pub = await exportJWK(publicKey);
  return { publicJwk: { kty: pub.kty, crv: pub.crv, x: pub.x }, privateKey: privateKey as CryptoKey };
}

/** The issuer's error answer, with the description every refusal of the token endpoint carries. */
export type ErrorBody = Required<ErrorAnswer>;
