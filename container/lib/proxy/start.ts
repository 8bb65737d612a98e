/**
 * Wires the verifying proxy together: verifier (src/verifier), credential source, HTTP server.
 * Used by container/gateway-proxy.ts and, in-process, by the tests (which may inject a clock or
 * JWKS bounds through `verifierOverrides`).
 */
import type { AddressInfo } from 'node:net';
import { createVerifier, type VerifierEvent, type VerifierOptions } from '../../../src/verifier/verify.js';
import { createLogger, type Logger } from '../../agent/log.js';
import type { ProxyConfig } from './config.js';
import { createCredentialSource } from './credentials.js';
import { createProxyServer } from './server.js';

export interface RunningProxy {
  url: string;
  port: number;
  close(): Promise<void>;
}

function logEvent(log: Logger, e: VerifierEvent): void {
  const { event, ...fields } = e;
  const level = event === 'jwks_fetch_failed' || event === 'jwks_key_ignored' || event === 'verify_fault' ? 'warn' : 'info';
  log(level, event, fields as Record<string, string | number | boolean | undefined>);
}

export async function startGatewayProxy(
  config: ProxyConfig,
  opts: { log?: Logger; verifierOverrides?: Partial<VerifierOptions> } = {},
): Promise<RunningProxy> {
  const log = opts.log ?? createLogger();
  const verifier = createVerifier({
    jwksUrl: config.jwksUrl,
    issuer: config.issuer,
    audience: config.audience,
    clockSkew: config.clockSkew,
    onEvent: (e) => logEvent(log, e),
    ...opts.verifierOverrides,
  });
  const credentials = createCredentialSource(config.credentialsFile, config.upstreamTokenName, (code) =>
    log('warn', 'credentials_watch_unavailable', { code }),
  );
  const proxy = createProxyServer({
    upstream: config.upstream,
    // parseProxyConfig made sure the issuer is an http(s) URL: the Worker's own, see ProxyOptions.
    publicOrigin: new URL(config.issuer),
    upstreamTokenName: config.upstreamTokenName,
    verifier,
    credentials,
    log,
  });
  await new Promise<void>((resolve, reject) => {
    proxy.server.once('error', reject);
    proxy.server.listen(config.port, config.host, () => {
      proxy.server.off('error', reject);
      resolve();
    });
  });
  const { port } = proxy.server.address() as AddressInfo;
  log('info', 'proxy_listening', { host: config.host, port, upstream: config.upstream.origin, audience: config.audience });
  // Fetch the keys now so the first request does not wait; a failure is logged and retried on demand.
  void verifier.refresh();
  credentials.read();
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  return { url: `http://${host}:${port}`, port, close: () => proxy.close() };
}
