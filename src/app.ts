/**
 * The Hono app: the services of an env built once (services.ts), the routes, and every error mapped
 * to HTTP in one place (issuer/errors.ts). Routes stay thin: parse, call one function, map the result.
 */
import { Hono, type MiddlewareHandler } from 'hono';
import type { AppEnv, Services } from './app-env.js';
import type { Env } from './config.js';
import { ConfigError, ERRORS, IssuerError, toErrorResponse } from './issuer/errors.js';
import { pushOnSecretChange } from './issuer/push.js';
import { log } from './log.js';
import { admin } from './routes/admin.js';
import { gateway } from './routes/gateway.js';
import { LOCAL_EGRESS_PATH, localEgress } from './routes/local-egress.js';
import { token } from './routes/token.js';
import { wellKnown } from './routes/well-known.js';
import { createServices, type ServiceOptions } from './services.js';

export interface AppOptions extends ServiceOptions {
  /**
   * Serve only the token endpoint, for requests a container makes through the Sandbox outbound
   * handler (`issuer.internal`). The platform's container id (`ctx.containerId`, which code in
   * the container cannot forge) must be the Sandbox Durable Object id of the assertion's sandbox.
   */
  outbound?: { containerIdOf: (env: Env, sandboxId: string) => string };
}

/**
 * The outbound path's container check: whether the requesting container is a sandbox's, by the
 * platform's container id. Fails closed: without one, no sandbox matches.
 */
function outboundContainerCheck(containerIdOf: (env: Env, sandboxId: string) => string): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    let containerId: unknown;
    try {
      containerId = (c.executionCtx as unknown as { containerId?: unknown }).containerId;
    } catch {
      containerId = undefined; // no execution context: no container id
    }
    c.set('containerMatches', (id) => typeof containerId === 'string' && containerId === containerIdOf(c.env, id));
    await next();
  };
}

/**
 * Push on secret change, started after the response once per set of services (one config per env
 * object): the hash and the Durable Object call run once per deployment, not per request.
 */
function pushOnSecretChangeOnce(): MiddlewareHandler<AppEnv> {
  const checked = new WeakSet<Services>();
  return async (c, next) => {
    const s = c.var.services;
    if (s.push && !checked.has(s)) {
      checked.add(s);
      waitUntil(
        c,
        pushOnSecretChange(s.config, {
          record: (fp) => s.keyAuthority().recordSecretsFingerprint(fp),
          sandboxes: (limit, cursor) => s.keyAuthority().sandboxPage(limit, cursor),
          push: s.push,
        }),
      );
    }
    await next();
  };
}

export function createApp(options: AppOptions = {}) {
  const app = new Hono<AppEnv>();
  const servicesOf = createServices({ push: options.push, sandbox: options.sandbox });

  app.use('*', async (c, next) => {
    c.set('services', servicesOf(c.env));
    await next();
  });
  if (options.outbound) app.use('*', outboundContainerCheck(options.outbound.containerIdOf));
  app.use('*', pushOnSecretChangeOnce());

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
