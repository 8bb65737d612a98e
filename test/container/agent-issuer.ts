/**
 * An issuer-like server on loopback for agent process tests that need faults the real Worker
 * cannot produce on demand (its clock set apart from the agent's, a Date header or none).
 * Real HTTP, real Ed25519 tokens, credentials really encrypted to the X25519 key the agent
 * registered (kept across requests, like the issuer's `enc_key`), and the issuer's time rules for
 * the client assertion (README "Token endpoint": `expired`, `iat_in_future`, `nbf_in_future`).
 */
import { createServer, type Server } from 'node:http';
import { CompactEncrypt, exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import { credentialsVersion } from '../../container/agent/restore.js';
import type { BootstrapFile, CredentialsFile, TokenResponse } from '../../src/admin-api.js';

export interface LoopbackIssuerOptions {
  /** Token lifetime (the issuer's AGENT_TOKEN_TTL). */
  ttlS: number;
  /** The issuer's clock minus the real one, e.g. -20_000 for an agent 20 s ahead. */
  clockOffsetMs?: number;
  /** The issuer's CLOCK_SKEW. */
  skewS?: number;
  /** Send a Date header (the Worker in workerd sends none; Cloudflare's edge adds one). */
  dateHeader?: boolean;
  /** The delivered credentials and their version (default: one value, its version computed as the issuer does). */
  credentials?: CredentialsFile;
}

export interface LoopbackIssuer {
  url: string;
  /** Token requests seen, in order. */
  requests: { at: number; encJwk: boolean; outcome: string }[];
  /** Writes a bootstrap file body for this issuer. */
  bootstrapFile(clientId: string): Promise<string>;
  set(o: Partial<LoopbackIssuerOptions>): void;
  close(): Promise<void>;
}

export async function startLoopbackIssuer(initial: LoopbackIssuerOptions): Promise<LoopbackIssuer> {
  const values = { GATEWAY_TOKEN: 'gateway-token-value' };
  // The version as the issuer computes it (a hash over names and values), which the agent checks at start.
  const opts: LoopbackIssuerOptions = {
    skewS: 30,
    dateHeader: false,
    clockOffsetMs: 0,
    credentials: { version: credentialsVersion(values), values },
    ...initial,
  };
  const signer = await generateKeyPair('EdDSA');
  let encKey: JWK | undefined;
  const requests: LoopbackIssuer['requests'] = [];
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const now = Date.now() + (opts.clockOffsetMs ?? 0);
    const headers: Record<string, string> = { 'content-type': 'application/json', 'cache-control': 'no-store' };
    if (opts.dateHeader) headers.date = new Date(now).toUTCString();
    const form = new URLSearchParams(Buffer.concat(chunks).toString());
    const answer = (status: number, body: unknown, outcome: string) => {
      requests.push({ at: Date.now(), encJwk: form.has('enc_jwk'), outcome });
      res.sendDate = false; // node:http adds a Date of the real clock by default
      res.writeHead(status, headers).end(JSON.stringify(body));
    };
    let claims: Record<string, unknown>;
    try {
      claims = JSON.parse(Buffer.from((form.get('client_assertion') ?? '').split('.')[1] ?? '', 'base64url').toString()) as Record<
        string,
        unknown
      >;
    } catch {
      return answer(400, { error: 'invalid_request', error_description: 'malformed_assertion' }, 'malformed');
    }
    const nowS = now / 1000;
    const skew = opts.skewS ?? 30;
    const refuse = (code: string, text: string) => answer(401, { error: 'invalid_client', error_description: `${code}: ${text}` }, code);
    // The issuer's order (src/issuer/assertion.ts checkClaims): expired, then iat, then nbf.
    if ((claims.exp as number) + skew <= nowS) return refuse('expired', 'the assertion has expired');
    if ((claims.iat as number) > nowS + skew) return refuse('iat_in_future', 'iat is in the future beyond the allowed clock skew');
    if (claims.nbf !== undefined && (claims.nbf as number) > nowS + skew)
      return refuse('nbf_in_future', 'nbf is in the future beyond the allowed clock skew');
    const enc = form.get('enc_jwk');
    if (enc) encKey = JSON.parse(enc) as JWK;
    const iat = Math.floor(nowS);
    const out: Record<string, unknown> = {
      sub: String(claims.iss),
      client_id: String(claims.iss),
      jti: `t${requests.length + 1}`,
      scope: 'agent',
    };
    if (encKey && opts.credentials) {
      out.cred = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(opts.credentials)))
        .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM' })
        .encrypt(await importJWK(encKey, 'ECDH-ES+A256KW'));
      out.cred_ver = opts.credentials.version;
    }
    const token = await new SignJWT(out)
      .setProtectedHeader({ alg: 'EdDSA', kid: 'loopback-1', typ: 'at+jwt' })
      .setIssuer('http://issuer.test')
      .setIssuedAt(iat)
      .setExpirationTime(iat + opts.ttlS)
      .sign(signer.privateKey);
    const body: TokenResponse = {
      access_token: token,
      token_type: 'Bearer',
      expires_in: opts.ttlS,
      credentials_version: opts.credentials?.version,
    };
    answer(200, body, 'issued');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return {
    url,
    requests,
    async bootstrapFile(clientId) {
      const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
      const file: BootstrapFile = {
        client_id: clientId,
        issuer: url,
        token_endpoint: `${url}/oauth/token`,
        key: { ...(await exportJWK(privateKey)), kid: 'boot-1' },
      };
      return JSON.stringify(file);
    },
    set(o) {
      Object.assign(opts, o);
    },
    close: () => new Promise((r) => server.close(() => r())),
  };
}
