// A second verifying proxy beside the stack's, so the bench can send requests to a proxy with a
// valid bearer token of its own: the stack's proxy trusts only the Worker's signing key, which
// never leaves the Worker (there is no route that mints a user token for a caller). This one is the
// same program started the same way as scripts/dev.ts starts the stack's (container/gateway-proxy.ts
// from source, the same issuer, audience, upstream, credentials file and upstream token name), in
// front of the same gateway; only its JWKS is the bench's: one Ed25519 key, served from this
// process, which signs the one token the bench sends. Per request it does what the stack's proxy
// does with the Worker's token: a verified-token cache hit, the same headers to the same gateway.
// startBenchProxy also starts the proxy of bench:chain's workerd chain, the same way, with that
// Worker's JWKS and issuer instead of the bench's.
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnTracked, stop } from './processes.mjs';
import { tail } from './workerd.mjs';

/** The bench token's lifetime: longer than any run, so the proxy never sees it expire. */
const TOKEN_TTL_S = 24 * 3600;
/** The proxy fetches the JWKS once; it must not refetch during the run. */
const JWKS_MAX_AGE_S = 3600;
/** The proxy's first JWKS fetch and credentials read (scripts/dev.ts allows 30 s for the stack's). */
const PROXY_START_MS = 30_000;
const POLL_MS = 100;
/** The stack's upstream credential name (scripts/dev.ts TOKEN_NAME). */
const UPSTREAM_TOKEN_NAME = 'GATEWAY_TOKEN';

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

/** A JWKS server on `host` and a signer for user access tokens shaped as src/issuer/tokens.ts mints them. */
export async function startBenchIssuer(src, host) {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const kid = `bench-${randomUUID()}`;
  const body = JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid, alg: src.SIGNING_ALG, use: 'sig' }] });
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': `max-age=${JWKS_MAX_AGE_S}` });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, host, resolve));
  return {
    jwksUrl: `http://${host}:${server.address().port}${src.JWKS_PATH}`,
    /** mintAccessToken's claims: what the Worker sends the stack's proxy for DEV_USER. */
    token({ issuer, sandbox, user, clientIp }) {
      const iat = Math.floor(Date.now() / 1000);
      const claims = {
        iss: issuer,
        sub: user,
        aud: src.gatewayAudience(sandbox),
        jti: randomUUID(),
        client_id: issuer,
        scope: 'gateway',
        client_ip: clientIp,
        iat,
        exp: iat + TOKEN_TTL_S,
      };
      const input = `${b64({ alg: src.SIGNING_ALG, kid, typ: src.ACCESS_TOKEN_TYP })}.${b64(claims)}`;
      return `${input}.${sign(null, Buffer.from(input), privateKey).toString('base64url')}`;
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/**
 * Starts a proxy in `dir` (the stack's copy) on `port`, trusting `jwksUrl`; resolves once its
 * /healthz is 200. `name` is what its errors call it.
 */
export async function startBenchProxy({
  dir,
  host,
  port,
  jwksUrl,
  issuer,
  audience,
  upstream,
  credentialsFile,
  logFile,
  name = "the bench's proxy",
}) {
  const fd = openSync(logFile, 'w', 0o600);
  const args = ['--jwks', jwksUrl, '--issuer', issuer, '--audience', audience, '--upstream', upstream];
  args.push('--credentials', credentialsFile, '--upstream-token', UPSTREAM_TOKEN_NAME, '--host', host, '--port', String(port));
  const child = spawnTracked(process.execPath, ['--import', './scripts/register-ts.mjs', 'container/gateway-proxy.ts', ...args], {
    cwd: dir,
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const url = `http://${host}:${port}`;
  const deadline = Date.now() + PROXY_START_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited at start:\n${await tail(logFile)}`);
    try {
      const res = await fetch(`${url}/healthz`);
      await res.arrayBuffer();
      if (res.ok) return { url, child };
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop(child);
      throw new Error(`${name} was not healthy within ${PROXY_START_MS / 1000} s:\n${await tail(logFile)}`);
    }
    await sleep(POLL_MS);
  }
}
