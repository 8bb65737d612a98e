/**
 * The client_credentials grant with an RFC 7523 client assertion: from a parsed token request to
 * the token response (docs/architecture.md, "Refresh" and "Token endpoint").
 *
 * The token path makes at most one Durable Object round trip: SandboxAuthority.authorize checks
 * the assertion and records the issuance; the signing key comes from the isolate's cache.
 */

import type { TokenResponse } from '../admin-api.js';
import type { Config } from '../config.js';
import { AssertionError, type AssertionRule, parseAssertion, peekIssuer } from './assertion.js';
import { cachedFixedValuesFor, checkAgentKey, credentialSet, encryptCredentials, type X25519PublicJwk } from './credentials.js';
import type { Authorized, AuthorizeRequest } from './sandbox-authority.js';
import { mintSentinel } from './sentinel.js';
import { type ActiveSigningKey, mintAgentToken } from './tokens.js';

export interface TokenRequest {
  assertion: string;
  clientId?: string;
  encJwk?: X25519PublicJwk;
}

export interface GrantDeps {
  config: Config;
  now: () => number;
  randomId: () => string;
  signingKey: () => Promise<ActiveSigningKey>;
  authorize: (sandboxId: string, req: AuthorizeRequest) => Promise<Authorized>;
  /** Whether the id was ever bootstrapped; an unknown id's authority is never addressed (registry.ts). */
  isKnown: (sandboxId: string) => Promise<boolean>;
  /** Records a refusal decided before the sandbox's authority was asked. */
  refuse: (sandboxId: string, rule: AssertionRule) => Promise<void>;
  /** On the outbound path: whether the container the request came from is this sandbox's. */
  containerMatches?: (sandboxId: string) => boolean;
}

export async function clientCredentialsGrant(req: TokenRequest, deps: GrantDeps): Promise<TokenResponse> {
  const { config } = deps;
  let sandboxId: string;
  let assertionKid: unknown;
  try {
    const parsed = parseAssertion(req.assertion);
    sandboxId = parsed.iss;
    assertionKid = parsed.header.kid;
  } catch (e) {
    const iss = e instanceof AssertionError ? peekIssuer(req.assertion) : undefined;
    if (iss !== undefined && e instanceof AssertionError && (await deps.isKnown(iss)))
      await deps.refuse(iss, e.rule).catch(() => undefined);
    throw e;
  }
  // Logged, not audited: a made-up id must not create anything (README, audit).
  if (!(await deps.isKnown(sandboxId))) throw new AssertionError('unknown_client', 'iss does not name a sandbox');
  // Before anything is stored (the jti, the key): a key no credentials can be encrypted to is refused.
  if (req.encJwk) await checkAgentKey(req.encJwk);
  if (deps.containerMatches && !deps.containerMatches(sandboxId)) {
    await deps.refuse(sandboxId, 'container_mismatch').catch(() => undefined);
    throw new AssertionError('container_mismatch', 'the assertion names another sandbox than the container it came from');
  }
  const signer = await deps.signingKey();
  const now = deps.now();
  const iat = Math.floor(now / 1000);
  const exp = iat + config.timing.agentTokenTtl;
  const egress = config.credentials.filter((e) => e.egress);
  // The sentinels name the bootstrap key the assertion claims (its kid, the key's thumbprint);
  // authorize refuses the assertion unless that is the sandbox's current key (kid_mismatch), so
  // no token ever carries a sentinel bound to another key.
  const sentinels: Record<string, string> = {};
  if (egress.length > 0 && typeof assertionKid === 'string') {
    for (const e of egress) {
      sentinels[e.name] = await mintSentinel({
        signer,
        issuer: config.issuer,
        sandboxId,
        name: e.name,
        hosts: e.egress!.hosts,
        jkt: assertionKid,
        iat,
        exp,
        jti: deps.randomId(),
      });
    }
  }
  const creds =
    config.credentials.length > 0 ? await credentialSet(await cachedFixedValuesFor(config.credentials, sandboxId), sentinels) : undefined;
  const jti = deps.randomId();
  const ok = await deps.authorize(sandboxId, {
    assertion: req.assertion,
    clientId: req.clientId,
    encJwk: req.encJwk,
    issue: { kid: signer.kid, jti, credVer: creds?.version },
  });
  const cred = ok.encKey && creds ? { jwe: await encryptCredentials(creds, ok.encKey), version: creds.version } : undefined;
  const minted = await mintAgentToken({
    signer,
    issuer: config.issuer,
    sandboxId: ok.sandboxId,
    ttl: config.timing.agentTokenTtl,
    now,
    jti,
    jkt: ok.jkt,
    cred,
    egress: cred && egress.length > 0 ? egress.map((e) => e.name) : undefined,
  });
  const out: TokenResponse = { access_token: minted.token, token_type: 'Bearer', expires_in: config.timing.agentTokenTtl };
  if (cred) out.credentials_version = cred.version;
  return out;
}
