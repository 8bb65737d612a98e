/**
 * The Worker's services, built once per env object (one per isolate and deployment) instead of on
 * every request: the config, the Durable Object stubs, the isolate caches (JWKS, signing key,
 * user tokens, known sandboxes), whether sandboxes are reachable, and the push to them.
 *
 * The app (app.ts) keeps one set per env for each app it creates, as its caches always were; the
 * egress handler's dependencies (src/sandbox/egress-deps.ts) build their stubs, JWKS copy and
 * registry with authorityServices too.
 */
import type { AuthorityServices, Services } from './app-env.js';
import { type Config, type Env, loadConfig } from './config.js';
import { createPublishedKeysCache } from './issuer/jwks-cache.js';
import { KEY_AUTHORITY_NAME, type KeyAuthority } from './issuer/key-authority.js';
import { createSandboxRegistry } from './issuer/registry.js';
import { unwrap } from './issuer/result.js';
import type { SandboxAuthority } from './issuer/sandbox-authority.js';
import { createSigningKeyCache } from './issuer/signing-key-cache.js';
import { mintAccessToken } from './issuer/tokens.js';
import { createUserTokenCache } from './issuer/user-tokens.js';
import { pushRefresh, type SandboxApi } from './sandbox/gateway.js';

export interface ServiceOptions {
  /** Asks a sandbox's agent to refresh now; defaults to pushRefresh through `sandbox`. */
  push?: (env: Env, sandboxId: string) => Promise<void>;
  /** The Sandbox SDK's sandbox for an id (src/sandbox); absent where there is no Sandbox binding. */
  sandbox?: (env: Env, sandboxId: string) => SandboxApi | undefined;
}

/**
 * The stubs of an env's two authorities, with a JWKS copy and a registry read through them. The
 * namespaces get their classes' types here (config.ts, which declares Env, names no class of issuer/).
 */
export function authorityServices(env: Env): AuthorityServices {
  const keys = env.KEY_AUTHORITY as DurableObjectNamespace<KeyAuthority>;
  const sandboxes = env.SANDBOX_AUTHORITY as DurableObjectNamespace<SandboxAuthority>;
  const keyAuthority = () => keys.get(keys.idFromName(KEY_AUTHORITY_NAME));
  return {
    keyAuthority,
    sandboxAuthority: (id) => sandboxes.get(sandboxes.idFromName(id)),
    jwks: createPublishedKeysCache(() => unwrap(keyAuthority().published())),
    registry: createSandboxRegistry((id) => keyAuthority().isSandbox(id)),
  };
}

function build(env: Env, config: Config, options: ServiceOptions): Services {
  const authorities = authorityServices(env);
  const signingKey = createSigningKeyCache(() => unwrap(authorities.keyAuthority().signingKey()));
  // One token per (user, client address): the address is a claim (client_ip), see user-tokens.ts.
  const mintFor = async (user: string, clientIp: string | undefined) => {
    const signer = await signingKey.get();
    const minted = await mintAccessToken({
      signer,
      issuer: config.issuer,
      sandboxId: config.gateway.sandboxId,
      subject: user,
      clientIp,
      ttl: config.timing.accessTokenTtl,
      now: Date.now(),
      jti: crypto.randomUUID(),
    });
    return { ...minted, kid: signer.kid };
  };
  // The one place that decides whether sandboxes are reachable: with GATEWAY_UPSTREAM the gateway
  // runs elsewhere, and a declared Sandbox binding runs nothing of this Worker's (the local stack).
  const sandboxOf = options.sandbox;
  const sandboxApi = sandboxOf && !config.gateway.upstream ? (id: string) => sandboxOf(env, id) : undefined;
  const pushOption = options.push;
  const push = pushOption
    ? (id: string) => pushOption(env, id)
    : sandboxApi
      ? async (id: string) => {
          const sb = sandboxApi(id);
          if (sb) await pushRefresh(sb);
        }
      : undefined;
  return {
    config,
    ...authorities,
    signingKey,
    userTokens: createUserTokenCache(mintFor, config.timing.accessTokenTtl),
    sandboxApi,
    push,
  };
}

/**
 * The services of an env, built at its first request and kept for the env object's life. A broken
 * config throws its ConfigError on every request (loadConfig keeps the outcome) and builds nothing.
 */
export function createServices(options: ServiceOptions = {}): (env: Env) => Services {
  const byEnv = new WeakMap<object, Services>();
  return (env) => {
    let services = byEnv.get(env);
    if (!services) {
      services = build(env, loadConfig(env), options);
      byEnv.set(env, services);
    }
    return services;
  };
}
