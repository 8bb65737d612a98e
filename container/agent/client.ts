/**
 * The agent's side of the token endpoint: read the bootstrap file, sign a client assertion with
 * the bootstrap key (RFC 7523), send the agent's X25519 public key, and decrypt the credentials
 * the token carries. Time and the HTTP client come in as parameters.
 */
import { randomUUID } from 'node:crypto';
import { compactDecrypt, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import { type BootstrapFile, type CredentialsFile, checkBootstrapFile, type ErrorAnswer, type TokenResponse } from '../../src/admin-api.js';
import { ASSUMED_ISSUER_CLOCK_SKEW_S, describeSkew, type IssuerClock, MAX_CLOCK_CORRECTION_MS, parseDateHeader } from './clock.js';
import { AgentError } from './errors.js';
import type { Post, SimpleResponse } from './http-client.js';

export { AgentError } from './errors.js';

/** Assertions live 60 s, the most the issuer accepts (exp - iat). */
const ASSERTION_LIFETIME_SECONDS = 60;
/** A token request that has not answered in 10 s is a failure to retry, not a hang. */
const REQUEST_TIMEOUT_MS = 10_000;
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export function parseBootstrapFile(text: string, path: string): BootstrapFile {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new AgentError('bootstrap_malformed', `bootstrap file ${path} is not JSON`);
  }
  const check = checkBootstrapFile(v);
  if (!check.ok) throw new AgentError('bootstrap_malformed', `bootstrap file ${path} is malformed: ${check.problem}`);
  return check.file;
}

/** The token endpoint to call: the file's, or its path on the `--issuer` override (e.g. http://issuer.internal). */
export function tokenEndpoint(file: BootstrapFile, override?: string): string {
  if (!override) return file.token_endpoint;
  return new URL(new URL(file.token_endpoint).pathname, override).toString();
}

export interface AgentKeys {
  signing: CryptoKey;
  kid?: string;
  /** X25519, made in memory at start and never written anywhere. */
  encPublic: JWK;
  encPrivate: CryptoKey;
}

export async function prepareKeys(file: BootstrapFile): Promise<AgentKeys> {
  let signing: CryptoKey;
  try {
    signing = (await importJWK(file.key, 'EdDSA')) as CryptoKey;
  } catch {
    throw new AgentError('bootstrap_malformed', 'the bootstrap key cannot be imported as an Ed25519 private key');
  }
  const { publicKey, privateKey } = await generateKeyPair('ECDH-ES+A256KW', { crv: 'X25519' });
  const pub = await exportJWK(publicKey);
  return {
    signing,
    kid: typeof file.key.kid === 'string' ? file.key.kid : undefined,
    encPublic: { kty: 'OKP', crv: 'X25519', x: pub.x },
    encPrivate: privateKey as CryptoKey,
  };
}

export interface IssuedToken {
  token: string;
  /** The agent's clock (epoch ms) when the request left and when its answer was read. */
  sentAt: number;
  arrivedAt: number;
  iat: number;
  exp: number;
  kid?: string;
  jti?: string;
  credentials?: CredentialsFile;
}

export interface RequestOptions {
  file: BootstrapFile;
  endpoint: string;
  keys: AgentKeys;
  sendEncKey: boolean;
  /** The agent's clock (epoch ms). */
  now: () => number;
  /** The estimate of the issuer's clock: fed by every answer, used to date the assertion. */
  clock: IssuerClock;
  post: Post;
}

/**
 * The issuer's rules on the assertion's times (README "Token endpoint"). A refusal for one of
 * them with an assertion made a moment ago is a clock difference, which a new bootstrap key would
 * not change.
 */
const TIME_RULES = new Set(['expired', 'iat_in_future', 'nbf_in_future']);

function clockRefusal(rule: string, clock: IssuerClock, status: number): AgentError {
  const ahead = clock.agentAheadS();
  const agentAhead = rule !== 'expired';
  let message: string;
  if (ahead !== undefined && (agentAhead ? ahead > 0 : ahead < 0)) {
    message = `${describeSkew(ahead)}; the issuer refused the assertion (${rule}); ${clock.correcting() ? "retrying with assertions on the issuer's time" : `too far to follow (over ${MAX_CLOCK_CORRECTION_MS / 60_000} min): set the agent's clock`}`;
  } else if (ahead !== undefined) {
    message = `the issuer refused the assertion (${rule}) though ${describeSkew(ahead)}; retrying`;
  } else {
    message = `the issuer refused the assertion (${rule}): the agent's clock is probably ${agentAhead ? 'ahead of' : 'behind'} the issuer's by more than the allowed ${ASSUMED_ISSUER_CLOCK_SKEW_S} s; the issuer's answers carry no Date header to measure by how much; retrying`;
  }
  return new AgentError('clock_skew', message, { status, rule });
}

export async function requestToken(o: RequestOptions): Promise<IssuedToken> {
  const sentAt = o.now();
  // On the issuer's time as far as it is measured: a skewed agent still passes the issuer's checks.
  const iat = Math.floor(o.clock.issuerTime(sentAt) / 1000);
  const assertion = await new SignJWT({})
    .setProtectedHeader(o.keys.kid ? { alg: 'EdDSA', kid: o.keys.kid } : { alg: 'EdDSA' })
    .setIssuer(o.file.client_id)
    .setSubject(o.file.client_id)
    .setAudience(o.file.issuer)
    .setIssuedAt(iat)
    .setExpirationTime(iat + ASSERTION_LIFETIME_SECONDS)
    .setJti(randomUUID())
    .sign(o.keys.signing);
  const form = new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: JWT_BEARER, client_assertion: assertion });
  if (o.sendEncKey) form.set('enc_jwk', JSON.stringify(o.keys.encPublic));

  let res: SimpleResponse;
  try {
    res = await o.post(o.endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
      body: form.toString(),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (e) {
    const err = e as { name?: string; cause?: { code?: string; name?: string; message?: string } };
    const cause =
      err.name === 'TimeoutError' || err.cause?.name === 'AbortError'
        ? 'timeout'
        : (err.cause?.code ?? err.cause?.message ?? err.name ?? 'error');
    throw new AgentError('issuer_unreachable', `issuer unreachable at ${new URL(o.endpoint).origin} (${cause})`);
  }
  const text = await res.text().catch(() => '');
  const arrivedAt = o.now();
  const date = parseDateHeader(res.headers?.get('date'));
  if (date !== undefined) o.clock.sample(date, sentAt, arrivedAt, 'Date header');
  /** The token endpoint's answer (TokenResponse, or an ErrorAnswer), as JSON arrives: every member checked before use. */
  let json: { [K in keyof (TokenResponse & ErrorAnswer)]?: unknown } = {};
  try {
    json = JSON.parse(text) as typeof json;
  } catch {
    /* handled below */
  }
  if (!res.ok) {
    // error and error_description are the issuer's RFC 6749 fields: codes and reasons, no secrets.
    const why =
      typeof json.error === 'string'
        ? `${json.error}${typeof json.error_description === 'string' ? `: ${json.error_description.slice(0, 200)}` : ''}`
        : `HTTP ${res.status}`;
    const rule = typeof json.error_description === 'string' ? /^([a-z_]+):/.exec(json.error_description)?.[1] : undefined;
    if (res.status === 401 && rule !== undefined && TIME_RULES.has(rule)) throw clockRefusal(rule, o.clock, res.status);
    if (res.status === 401)
      throw new AgentError('bootstrap_refused', `bootstrap key refused by the issuer (${why})`, { status: res.status });
    if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
      throw new AgentError('request_rejected', `token request rejected by the issuer (${why})`, { status: res.status });
    }
    throw new AgentError('issuer_error', `issuer answered ${res.status} (${why})`, { status: res.status });
  }
  const out = await parseTokenResponse(json, o.keys.encPrivate, sentAt, arrivedAt);
  o.clock.sample(out.iat, sentAt, arrivedAt, 'token iat');
  return out;
}

async function parseTokenResponse(
  json: { access_token?: unknown },
  encPrivate: CryptoKey,
  sentAt: number,
  arrivedAt: number,
): Promise<IssuedToken> {
  const token = json.access_token;
  if (typeof token !== 'string') throw new AgentError('bad_response', 'the issuer answered without an access_token');
  let claims: ReturnType<typeof decodeJwt>;
  let kid: string | undefined;
  try {
    claims = decodeJwt(token);
    kid = decodeProtectedHeader(token).kid;
  } catch {
    throw new AgentError('bad_response', 'the access_token is not a JWT');
  }
  if (typeof claims.iat !== 'number' || typeof claims.exp !== 'number' || claims.exp <= claims.iat) {
    throw new AgentError('bad_response', 'the access_token has no usable iat/exp');
  }
  const out: IssuedToken = { token, sentAt, arrivedAt, iat: claims.iat, exp: claims.exp, kid, jti: claims.jti };
  if (typeof claims.cred === 'string') {
    let plaintext: Uint8Array;
    try {
      ({ plaintext } = await compactDecrypt(claims.cred, encPrivate));
    } catch {
      // The issuer encrypted to another X25519 key: another agent process registered its own with
      // the same bootstrap file (a `--once` run does). The refresher re-sends this agent's key.
      throw new AgentError(
        'credentials_undecryptable',
        "the credentials in the token do not decrypt with this agent's key: the issuer holds another encryption key for this sandbox",
      );
    }
    let creds: CredentialsFile;
    try {
      creds = JSON.parse(new TextDecoder().decode(plaintext)) as CredentialsFile;
    } catch {
      throw new AgentError('bad_response', 'the credentials in the token are not JSON');
    }
    if (
      !creds ||
      typeof creds.version !== 'string' ||
      !creds.values ||
      typeof creds.values !== 'object' ||
      creds.version !== claims.cred_ver
    ) {
      throw new AgentError('bad_response', 'the credentials in the token are malformed');
    }
    out.credentials = { version: creds.version, values: creds.values };
  }
  return out;
}
