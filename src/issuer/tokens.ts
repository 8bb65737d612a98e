/**
 * Minting access tokens and agent tokens (README, "Token endpoint"): compact JWS as the token
 * profile (src/token-profile.ts) has them: `alg: EdDSA` (the name verifiers everywhere know),
 * header `kid` and `typ: at+jwt` (RFC 9068), `aud: gateway:<sandbox id>`, at most 8 KiB.
 */
import { SignJWT } from 'jose';
import { ACCESS_TOKEN_TYP, gatewayAudience, MAX_TOKEN_BYTES, SENTINEL_AUD, SENTINEL_TYP, SIGNING_ALG } from '../token-profile.js';
import { ConfigError, IssuerError } from './errors.js';

/** The token profile's cap (src/token-profile.ts), under the name the configuration check reads. */
export const TOKEN_MAX_BYTES = MAX_TOKEN_BYTES;
const AGENT_SCOPE = 'agent';
const GATEWAY_SCOPE = 'gateway';

/** A signing key as an isolate holds it. */
export interface ActiveSigningKey {
  kid: string;
  key: CryptoKey;
}

export interface AgentTokenInput {
  signer: ActiveSigningKey;
  issuer: string;
  sandboxId: string;
  /** Seconds. */
  ttl: number;
  /** Epoch ms. */
  now: number;
  jti: string;
  /** Thumbprint of the agent's bootstrap key. */
  jkt: string;
  cred?: { jwe: string; version: string };
  /** Names of the entries in `cred` that are egress sentinels, not values (claim `cred_egress`). */
  egress?: readonly string[];
}

export interface AccessTokenInput {
  signer: ActiveSigningKey;
  issuer: string;
  sandboxId: string;
  /** The user, e.g. the email of a verified Cloudflare Access JWT. */
  subject: string;
  ttl: number;
  now: number;
  jti: string;
  /**
   * The user's client address (claim `client_ip`, docs/architecture.md, "Client address"): an IP literal, see clientIpOf in
   * client-ip.ts. The verifying proxy makes it the gateway's X-Forwarded-For. Absent when the
   * Worker saw no usable address; the claim is then left out, never written empty.
   */
  clientIp?: string;
}

export interface Minted {
  token: string;
  /** Epoch seconds. */
  exp: number;
}

async function sign(signer: ActiveSigningKey, claims: Record<string, unknown>, iat: number, exp: number): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: SIGNING_ALG, kid: signer.kid, typ: ACCESS_TOKEN_TYP })
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(signer.key);
}

/** base64url length of n bytes. */
const b64len = (n: number) => Math.ceil((n * 4) / 3);
/** The longest sandbox id (SANDBOX_ID), a UUID jti, an RFC 7638 thumbprint, a 10-digit epoch time. */
const MAX_ID = 63;
const JTI = 36;
const THUMBPRINT = 43;
const EPOCH = 10;

/**
 * An upper bound on the size of an agent token carrying these credentials, for any sandbox:
 * checked at config load, so an over-large CREDENTIALS is a start-up error rather than a failure
 * of every refresh. Each term is the JSON of what grant.ts and sentinel.ts sign, at its longest.
 */
export function agentTokenBytesBound(
  issuer: string,
  entries: readonly { name: string; value: string; derive: boolean; egress?: { hosts: readonly string[] } }[],
): number {
  // The longer typ of the two, so the bound holds for the agent token's header and a sentinel's.
  const header = b64len(`{"alg":"${SIGNING_ALG}","kid":"","typ":"${SENTINEL_TYP}"}`.length + THUMBPRINT);
  const signature = 86;
  let values = 0;
  for (const e of entries) {
    let value: number;
    if (e.egress) {
      const hosts = e.egress.hosts.reduce((n, h) => n + h.length + 3, 2);
      const claims =
        `{"iss":"","sub":"","aud":"${SENTINEL_AUD}","name":"","hosts":,"cnf":{"jkt":""},"jti":"","iat":,"exp":}`.length +
        issuer.length +
        MAX_ID +
        e.name.length +
        hosts +
        THUMBPRINT +
        JTI +
        2 * EPOCH;
      value = header + 1 + b64len(claims) + 1 + signature;
    } else {
      value = e.derive ? THUMBPRINT : e.value.length * 6; // JSON escapes at worst \u00XX per character
    }
    values += e.name.length + value + 6;
  }
  const plaintext = `{"version":"","values":{}}`.length + 16 + values;
  const jwe = 170 + 1 + 54 + 1 + 22 + 1 + b64len(plaintext) + 1 + 22;
  const egress = entries.filter((e) => e.egress).reduce((n, e) => n + e.name.length + 3, 20);
  const claims =
    `{"iss":"","sub":"","aud":"${gatewayAudience('')}","jti":"","client_id":"","scope":"agent","cnf":{"jkt":""},"cred":"","cred_ver":"","iat":,"exp":}`
      .length +
    issuer.length +
    3 * MAX_ID +
    JTI +
    THUMBPRINT +
    jwe +
    16 +
    2 * EPOCH +
    egress;
  return header + 1 + b64len(claims) + 1 + signature;
}

export async function mintAgentToken(i: AgentTokenInput): Promise<Minted> {
  const iat = Math.floor(i.now / 1000);
  const exp = iat + i.ttl;
  const claims: Record<string, unknown> = {
    iss: i.issuer,
    sub: i.sandboxId,
    aud: gatewayAudience(i.sandboxId),
    jti: i.jti,
    client_id: i.sandboxId,
    scope: AGENT_SCOPE,
    cnf: { jkt: i.jkt },
  };
  if (i.cred) {
    claims.cred = i.cred.jwe;
    claims.cred_ver = i.cred.version;
    if (i.egress && i.egress.length > 0) claims.cred_egress = [...i.egress];
  }
  const token = await sign(i.signer, claims, iat, exp);
  if (token.length > TOKEN_MAX_BYTES) {
    throw new ConfigError(
      'CREDENTIALS',
      `the delivered credentials make agent tokens larger than ${TOKEN_MAX_BYTES} bytes; deliver fewer or shorter values`,
    );
  }
  return { token, exp };
}

export async function mintAccessToken(i: AccessTokenInput): Promise<Minted> {
  const iat = Math.floor(i.now / 1000);
  const exp = iat + i.ttl;
  const claims: Record<string, unknown> = {
    iss: i.issuer,
    sub: i.subject,
    aud: gatewayAudience(i.sandboxId),
    jti: i.jti,
    client_id: i.issuer,
    scope: GATEWAY_SCOPE,
  };
  if (i.clientIp !== undefined) claims.client_ip = i.clientIp;
  const token = await sign(i.signer, claims, iat, exp);
  if (token.length > TOKEN_MAX_BYTES) throw new IssuerError('invalid_request', `the token would exceed ${TOKEN_MAX_BYTES} bytes`);
  return { token, exp };
}
