/**
 * The verifying proxy's flags, each with an environment twin (DESIGN §4), parsed once into
 * ProxyConfig. A bad or missing value is one clear line naming the flag.
 */
import { parseArgs } from 'node:util';

export interface ProxyConfig {
  jwksUrl: string;
  issuer: string;
  audience: string;
  /** Origin (and optional path prefix) of the gateway, e.g. http://127.0.0.1:18789. */
  upstream: URL;
  credentialsFile: string;
  upstreamTokenName: string;
  host: string;
  port: number;
  clockSkew: number;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

export const USAGE = `usage: gateway-proxy --jwks URL --issuer URL --audience AUD --upstream URL --credentials FILE [options]
  --jwks URL             the issuer's JWKS                          (JWKS_URL)
  --issuer URL           the one accepted iss                       (EXPECTED_ISSUER)
  --audience AUD         the one accepted aud, e.g. gateway:main    (EXPECTED_AUDIENCE)
  --upstream URL         the gateway, e.g. http://127.0.0.1:18789   (UPSTREAM_URL)
  --credentials FILE     the agent's credentials.json               (CREDENTIALS_FILE)
  --upstream-token NAME  value presented upstream, default GATEWAY_TOKEN (UPSTREAM_TOKEN_NAME)
  --port N               listen port, default 8789                  (PROXY_PORT)
  --host ADDR            listen address, default 127.0.0.1          (PROXY_HOST)
  --clock-skew S         seconds of skew on exp/nbf/iat, default 30 (CLOCK_SKEW_SECONDS)`;

export const DEFAULT_PORT = 8789;
export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_UPSTREAM_TOKEN = 'GATEWAY_TOKEN';
export const DEFAULT_CLOCK_SKEW_S = 30;
/** The verifier's own ceiling: more is not skew but longer-lived tokens. */
const MAX_CLOCK_SKEW_S = 300;
/** Credential names as the issuer's CREDENTIALS var allows them. */
const CREDENTIAL_NAME = /^[A-Z0-9_]{1,64}$/;

function httpUrl(flag: string, raw: string, example: string): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(`${flag}: must be an absolute http(s) URL such as ${example}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`${flag}: must be an http(s) URL such as ${example}`);
  if (u.username || u.password) throw new UsageError(`${flag}: must not carry credentials`);
  return u;
}

export function parseProxyConfig(argv: string[], env: NodeJS.ProcessEnv): ProxyConfig {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        jwks: { type: 'string' },
        issuer: { type: 'string' },
        audience: { type: 'string' },
        upstream: { type: 'string' },
        credentials: { type: 'string' },
        'upstream-token': { type: 'string' },
        port: { type: 'string' },
        host: { type: 'string' },
        'clock-skew': { type: 'string' },
        help: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]!);
  }
  if (values.help) throw new UsageError(USAGE);
  const pick = (flag: string, envName: string) => (values[flag] as string | undefined) ?? (env[envName] || undefined);
  const required = (flag: string, envName: string) => {
    const v = pick(flag, envName);
    if (v === undefined || v.trim() === '') throw new UsageError(`--${flag} (or ${envName}) is required`);
    return v.trim();
  };

  const jwksUrl = httpUrl('--jwks', required('jwks', 'JWKS_URL'), 'https://issuer.example/.well-known/jwks.json').href;
  // iss is compared as a string, exactly as the issuer writes it: no URL normalization here.
  const issuer = required('issuer', 'EXPECTED_ISSUER');
  const audience = required('audience', 'EXPECTED_AUDIENCE');
  const upstream = httpUrl('--upstream', required('upstream', 'UPSTREAM_URL'), 'http://127.0.0.1:18789');
  if (upstream.search || upstream.hash) throw new UsageError('--upstream: must not have a query or a fragment');
  const credentialsFile = required('credentials', 'CREDENTIALS_FILE');
  const upstreamTokenName = pick('upstream-token', 'UPSTREAM_TOKEN_NAME') ?? DEFAULT_UPSTREAM_TOKEN;
  if (!CREDENTIAL_NAME.test(upstreamTokenName)) throw new UsageError('--upstream-token: must be a credential name (A-Z, 0-9, _)');

  const portRaw = pick('port', 'PROXY_PORT');
  const port = portRaw === undefined ? DEFAULT_PORT : /^\d+$/.test(portRaw.trim()) ? Number(portRaw) : NaN;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError('--port: must be a port number (0-65535)');

  const skewRaw = pick('clock-skew', 'CLOCK_SKEW_SECONDS');
  const clockSkew = skewRaw === undefined ? DEFAULT_CLOCK_SKEW_S : /^\d+$/.test(skewRaw.trim()) ? Number(skewRaw) : NaN;
  if (!Number.isInteger(clockSkew) || clockSkew > MAX_CLOCK_SKEW_S) throw new UsageError(`--clock-skew: must be whole seconds from 0 to ${MAX_CLOCK_SKEW_S}`);

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
