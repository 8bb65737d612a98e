/**
 * The Hono app: loads the config once per isolate, wires the routes, and maps every error to
 * HTTP in one place (errors.ts). Routes stay thin: parse, call one function, map the result.
 */
import { Hono } from 'hono';
import type { AdminIdentity } from './admin-auth.js';
import { loadConfig, type Config, type Env } from './config.js';
import { ConfigError, ERRORS, IssuerError, toErrorResponse } from './issuer/errors.js';
import { createJwksCache, type JwksCache } from './issuer/jwks-cache.js';
import { KEY_AUTHORITY_NAME, type KeyAuthority } from './issuer/key-authority.js';
import { unwrap } from './issuer/result.js';
import type { SandboxAuthority } from './issuer/sandbox-authority.js';
import { createSigningKeyCache, type SigningKeyCache } from './issuer/signing-key-cache.js';
import { mintAccessToken } from './issuer/tokens.js';
import { createUserTokenCache, type UserTokenCache } from './issuer/user-tokens.js';
import { createSandboxRegistry, type SandboxRegistry } from './issuer/registry.js';
import { log } from './log.js';
import { pushOnSecretChange } from './issuer/push.js';
import { pushRefresh, type SandboxApi } from './sandbox/gateway.js';
import { admin } from './routes/admin.js';
import { gateway } from './routes/gateway.js';
import { LOCAL_EGRESS_PATH, localEgress } from './routes/local-egress.js';
import { token } from './routes/token.js';
import { wellKnown } from './routes/well-known.js';

export interface AppEnv {
  Bindings: Env;
  Variables: {
    config: Config;
    jwks: JwksCache;
    signingKey: SigningKeyCache;
    userTokens: UserTokenCache;
    registry: SandboxRegistry;
    keyAuthority: () => DurableObjectStub<KeyAuthority>;
    sandboxAuthority: (sandboxId: string) => DurableObjectStub<SandboxAuthority>;
    admin: AdminIdentity;
    /** Set on the outbound path only: whether the requesting container is this sandbox's. */
    containerMatches?: (sandboxId: string) => boolean;
    /** The sandbox a gateway runs in, when the Worker has the Sandbox binding. */
    sandboxApi?: (sandboxId: string) => SandboxApi | undefined;
  };
}

export interface AppOptions {
  /**
   * Serve only the token endpoint, for requests a container makes through the Sandbox outbound
   * handler (`issuer.internal`). The platform's container id (`ctx.containerId`, which code in
   * the container cannot forge) must be the Sandbox Durable Object id of the assertion's sandbox.
   */
  outbound?: { containerIdOf: (env: Env, sandboxId: string) => string };
  /** Asks a sandbox's agent to refresh now; defaults to pushRefresh through `sandbox`. */
  push?: (env: Env, sandboxId: string) => Promise<void>;
  /** The Sandbox SDK's sandbox for an id (src/sandbox); absent where there is no Sandbox binding. */
  sandbox?: (env: Env, sandboxId: string) => SandboxApi | undefined;
}

export function createApp(options: AppOptions = {}) {
  // Isolate caches, one set per env object (i.e. per isolate and deployment).
  const caches = new WeakMap<object, { jwks: JwksCache; signingKey: SigningKeyCache; userTokens: UserTokenCache; registry: SandboxRegistry }>();
  const app = new Hono<AppEnv>();
  // Configs whose secrets fingerprint this isolate has checked: the hash and the Durable Object
  // call run once per deployment, not per request.
  const pushChecked = new WeakSet<Config>();
  const sandboxOf = options.sandbox;

  app.use('*', async (c, next) => {
    c.set('config', loadConfig(c.env));
    const keyAuthority = () => c.env.KEY_AUTHORITY.get(c.env.KEY_AUTHORITY.idFromName(KEY_AUTHORITY_NAME));
    c.set('keyAuthority', keyAuthority);
    c.set('sandboxAuthority', (id) => c.env.SANDBOX_AUTHORITY.get(c.env.SANDBOX_AUTHORITY.idFromName(id)));
    let mine = caches.get(c.env);
    if (!mine) {
      const cfg = c.var.config;
      const signingKey = createSigningKeyCache(() => unwrap(keyAuthority().signingKey()));
      // One token per (user, client address): the address is a claim (client_ip), see user-tokens.ts.
      const mintFor = async (user: string, clientIp: string | undefined) => {
        const signer = await signingKey.get();
        const minted = await mintAccessToken({ signer, issuer: cfg.issuer, sandboxId: cfg.gateway.sandboxId, subject: user, clientIp, ttl: cfg.timing.accessTokenTtl, now: Date.now(), jti: crypto.randomUUID() });
        return { ...minted, kid: signer.kid };
      };
      mine = {
        jwks: createJwksCache(() => unwrap(keyAuthority().published())),
        signingKey,
        userTokens: createUserTokenCache(mintFor, cfg.timing.accessTokenTtl),
        registry: createSandboxRegistry((id) => keyAuthority().isSandbox(id)),
      };
      caches.set(c.env, mine);
    }
    c.set('jwks', mine.jwks);
    c.set('signingKey', mine.signingKey);
    c.set('userTokens', mine.userTokens);
    c.set('registry', mine.registry);
    if (options.outbound) {
      const { containerIdOf } = options.outbound;
      let containerId: unknown;
      try {
        containerId = (c.executionCtx as unknown as { containerId?: unknown }).containerId;
      } catch {
        containerId = undefined; // no execution context: no container id
      }
      // Fail closed: without the platform's container id, no sandbox matches.
      c.set('containerMatches', (id) => typeof containerId === 'string' && containerId === containerIdOf(c.env, id));
    }
    // The one place that decides whether sandboxes are reachable: with GATEWAY_UPSTREAM the gateway
    // runs elsewhere, and a declared Sandbox binding runs nothing of this Worker's (the local stack).
    const sandboxApi = sandboxOf && !c.var.config.gateway.upstream ? (id: string) => sandboxOf(c.env, id) : undefined;
    if (sandboxApi) c.set('sandboxApi', sandboxApi);
    const env = c.env;
    const push = options.push
      ? (id: string) => options.push!(env, id)
      : sandboxApi
        ? async (id: string) => {
            const sb = sandboxApi(id);
            if (sb) await pushRefresh(sb);
          }
        : undefined;
    if (push && !pushChecked.has(c.var.config)) {
      pushChecked.add(c.var.config);
      waitUntil(c, pushOnSecretChange(c.var.config, {
        record: (fp) => keyAuthority().recordSecretsFingerprint(fp),
        sandboxes: (limit, cursor) => keyAuthority().sandboxPage(limit, cursor),
        push,
      }));
    }
    await next();
  });

  app.route('/oauth', token);
  if (!options.outbound) {
    app.route('/.well-known', wellKnown);
    app.route('/api/admin', admin);
    app.route(LOCAL_EGRESS_PATH, localEgress);
    app.route('/', gateway);
  }

  app.notFound((c) => c.json({ error: 'not_found', error_description: 'no such route' }, 404));

  app.onError((err, c) => {
    if (err instanceof ConfigError) {
      log('error', 'configuration_error', { option: err.option, rule: err.rule });
    } else if (err instanceof IssuerError) {
      log(ERRORS[err.code].level, 'request_refused', { code: err.code, path: new URL(c.req.url).pathname, ...err.details });
    } else {
      // Unknown errors: the name only; messages of foreign errors are not trusted to be free of secrets.
      log('error', 'internal_error', { path: new URL(c.req.url).pathname, error: err instanceof Error ? err.name : typeof err });
    }
    const r = toErrorResponse(err);
    return new Response(JSON.stringify(r.body), { status: r.status, headers: r.headers });
  });

  return app;
}

/** Runs `p` after the response when the runtime allows (Workers), else lets it run on its own. */
function waitUntil(c: { executionCtx: { waitUntil(p: Promise<unknown>): void } }, p: Promise<unknown>): void {
  const guarded = p.catch(() => undefined);
  try {
    c.executionCtx.waitUntil(guarded);
  } catch {
    /* no execution context (plain app.request in tests) */
  }
}
