#!/usr/bin/env node
import { createLogger } from './agent/log.js';
/**
 * The verifying reverse proxy (docs/architecture.md, "Verifying proxy") in front of a gateway that cannot verify JWTs.
 *
 * Every request and every WebSocket upgrade needs `Authorization: Bearer <jwt>` that passes the
 * verifier (src/verifier: EdDSA only, pinned iss, one aud, typ at+jwt, exp/iat/sub/jti required,
 * keys from the issuer's JWKS), and it must be a user access token: `scope` naming `gateway`, never
 * `agent` (the agent's own token is refused). Accepted requests go to --upstream with
 * `Authorization` replaced by `Bearer <value>` of the --upstream-token entry of the agent's
 * credentials.json (re-read whenever the file changes) and `X-Forwarded-User: <sub>`, plus
 * X-Forwarded-For (the token's `client_ip`, none without one; never the TCP peer), and -Proto and
 * -Host (the --issuer URL's: the Worker's public origin). Hop-by-hop fields and every identity or
 * address field a client sends (X-Forwarded-*, Forwarded, X-Real-IP, Remote-User, Cf-Access-*,
 * Cf-Connecting-IP, x-openclaw-*, also spelt with `_`) are not forwarded.
 *
 * Answers of the proxy itself, never forwarded:
 *   401  bad or missing token, or not a user token (`insufficient_scope`): `WWW-Authenticate:
 *        Bearer error="invalid_token", error_description="<code>"` (RFC 6750), body
 *        `{"error":"invalid_token","error_description":"<code>"}`
 *   400  an Upgrade other than a complete WebSocket handshake, or an upgrade with a body
 *        (426 for a Sec-WebSocket-Version other than 13)
 *   431  a request head over 64 KiB; 408 a head not complete within 10 s
 *   503  no usable JWKS yet (`Retry-After`), or no upstream credential in credentials.json
 *   502  the gateway is unreachable
 *   GET /healthz  JWKS age and freshness, whether the upstream credential is present (and its
 *        version); 200 when both are usable, else 503. The gateway's own /healthz is not reachable
 *        through the proxy.
 * The token is never echoed, logged or forwarded. Log: one JSON line per event on stdout
 * (refusals with their code, JWKS fetches, credential changes), identifiers only.
 *
 * WebSocket: only `Upgrade: websocket` (GET, HTTP/1.1, Connection: upgrade, Sec-WebSocket-Key,
 * version 13, no body) is tunnelled; h2c and every other protocol are refused before the gateway
 * sees anything. The upgrade request is verified like any request, then the connection is piped
 * both ways. A connection whose token expires stays open (the token admits the connection, like a
 * login); every new upgrade needs a valid token. The token is taken from `Authorization` only, not
 * from `Sec-WebSocket-Protocol`: the proxy's only client is the Worker, which sets `Authorization`
 * on upgrades too (docs/architecture.md, "Gateway traffic and verification"), and browsers never reach the proxy directly. A subprotocol token
 * would also be echoed back in the handshake answer and kept by logs along the way.
 *
 * Exit codes: 0 stopped by SIGTERM or SIGINT; 2 bad flag or cannot listen.
 */
import { type ProxyConfig, parseProxyConfig, USAGE, UsageError } from './lib/proxy/config.js';
import { startGatewayProxy } from './lib/proxy/start.js';

function die(code: number, message: string): never {
  process.stderr.write(`gateway-proxy: ${message}\n`);
  process.exit(code);
}

async function main(cfg: ProxyConfig): Promise<void> {
  const log = createLogger();
  let proxy: Awaited<ReturnType<typeof startGatewayProxy>>;
  try {
    proxy = await startGatewayProxy(cfg, { log });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    die(2, `error: cannot listen on ${cfg.host}:${cfg.port} (${err.code ?? err.message})`);
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log('info', 'proxy_stopping', { signal });
    proxy.close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

let cfg: ProxyConfig;
try {
  cfg = parseProxyConfig(process.argv.slice(2), process.env);
} catch (e) {
  if (e instanceof UsageError) {
    if (e.message === USAGE) {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    }
    die(2, `error: ${e.message}`);
  }
  throw e;
}
await main(cfg);
