/**
 * The verifying proxy's flags, each with an environment twin (docs/architecture.md, "Container environment and flags"), parsed once into
 * ProxyConfig. A bad or missing value is one clear line naming the flag.
 */
import { CONTAINER_PORTS, CREDENTIALS_FILE } from '../../../src/admin-api.js';
import { httpUrl, readFlags, UsageError } from '../flags.js';

export { UsageError };

export interface ProxyConfig {
  jwksUrl: string;
  issuer: string;
  audience: string;
  /** Origin (and optional path prefix) of the gateway, e.g. http://127.0.0.1:18789 (CONTAINER_PORTS.gateway). */
  upstream: URL;
  credentialsFile: string;
  upstreamTokenName: string;
  host: string;
  port: number;
  clockSkew: number;
}

/** The container's proxy port, where the Worker's containerFetch reaches it. */
const DEFAULT_PORT = CONTAINER_PORTS.proxy;
const DEFAULT_HOST = '127.0.0.1';
/** The gateway in the container, as the examples name it. */
const EXAMPLE_UPSTREAM = `http://127.0.0.1:${CONTAINER_PORTS.gateway}`;

export const USAGE = `usage: gateway-proxy --jwks URL --issuer URL --audience AUD --upstream URL --credentials FILE [options]
  --jwks URL             the issuer's JWKS                          (JWKS_URL)
  --issuer URL           the one accepted iss, the Worker's URL     (EXPECTED_ISSUER)
  --audience AUD         the one accepted aud, e.g. gateway:main    (EXPECTED_AUDIENCE)
  --upstream URL         the gateway, e.g. ${EXAMPLE_UPSTREAM}   (UPSTREAM_URL)
  --credentials FILE     the agent's ${CREDENTIALS_FILE}               (CREDENTIALS_FILE)
  --upstream-token NAME  value presented upstream, default GATEWAY_TOKEN (UPSTREAM_TOKEN_NAME)
  --port N               listen port, default ${DEFAULT_PORT}                  (PROXY_PORT)
  --host ADDR            listen address, default ${DEFAULT_HOST}          (PROXY_HOST)
  --clock-skew S         seconds of skew on exp/nbf/iat, default 30 (CLOCK_SKEW_SECONDS)`;

const DEFAULT_UPSTREAM_TOKEN = 'GATEWAY_TOKEN';
const DEFAULT_CLOCK_SKEW_S = 30;
/** The verifier's own ceiling: more is not skew but longer-lived tokens. */
const MAX_CLOCK_SKEW_S = 300;
/** Credential names as the issuer's CREDENTIALS var allows them. */
const CREDENTIAL_NAME = /^[A-Z0-9_]{1,64}$/;

export function parseProxyConfig(argv: string[], env: NodeJS.ProcessEnv): ProxyConfig {
  const flags = readFlags(
    argv,
    env,
    {
      jwks: { type: 'string' },
      issuer: { type: 'string' },
      audience: { type: 'string' },
      upstream: { type: 'string' },
      credentials: { type: 'string' },
      'upstream-token': { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'clock-skew': { type: 'string' },
    },
    USAGE,
  );
  const { pick, required } = flags;

  const jwksUrl = httpUrl('--jwks', required('jwks', 'JWKS_URL'), 'https://issuer.example/.well-known/jwks.json').href;
  // iss is compared as a string, exactly as the issuer writes it: no URL normalization here. It
  // must still be the Worker's http(s) URL, as the issuer's ISSUER is: its scheme and host are the
  // X-Forwarded-Proto and -Host the gateway is told (ProxyOptions.publicOrigin).
  const issuer = required('issuer', 'EXPECTED_ISSUER');
  httpUrl('--issuer', issuer, 'https://issuer.example');
  const audience = required('audience', 'EXPECTED_AUDIENCE');
  const upstream = httpUrl('--upstream', required('upstream', 'UPSTREAM_URL'), EXAMPLE_UPSTREAM);
  if (upstream.search || upstream.hash) throw new UsageError('--upstream: must not have a query or a fragment');
  const credentialsFile = required('credentials', 'CREDENTIALS_FILE');
  const upstreamTokenName = pick('upstream-token', 'UPSTREAM_TOKEN_NAME') ?? DEFAULT_UPSTREAM_TOKEN;
  if (!CREDENTIAL_NAME.test(upstreamTokenName)) throw new UsageError('--upstream-token: must be a credential name (A-Z, 0-9, _)');

  const port = flags.port('port', 'PROXY_PORT', DEFAULT_PORT);

  const skewRaw = pick('clock-skew', 'CLOCK_SKEW_SECONDS');
  const clockSkew = skewRaw === undefined ? DEFAULT_CLOCK_SKEW_S : /^\d+$/.test(skewRaw.trim()) ? Number(skewRaw) : NaN;
  if (!Number.isInteger(clockSkew) || clockSkew > MAX_CLOCK_SKEW_S)
    throw new UsageError(`--clock-skew: must be whole seconds from 0 to ${MAX_CLOCK_SKEW_S}`);

  return {
    jwksUrl,
    issuer,
    audience,
    upstream,
    credentialsFile,
    upstreamTokenName,
    host: pick('host', 'PROXY_HOST') ?? DEFAULT_HOST,
    port,
    clockSkew,
  };
}
