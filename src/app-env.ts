/**
 * The app's Hono environment and the services a request reads, in a module of their own: routes
 * import this, never app.ts (which imports the routes). services.ts builds the services.
 */
import type { AdminIdentity } from './admin-auth.js';
import type { Config, Env } from './config.js';
import type { JwksCache } from './issuer/jwks-cache.js';
import type { KeyAuthority } from './issuer/key-authority.js';
import type { SandboxRegistry } from './issuer/registry.js';
import type { SandboxAuthority } from './issuer/sandbox-authority.js';
import type { SigningKeyCache } from './issuer/signing-key-cache.js';
import type { UserTokenCache } from './issuer/user-tokens.js';
import type { SandboxApi } from './sandbox/gateway.js';

/** The Durable Objects of an env, with the isolate's JWKS copy and registry of known sandboxes. */
export interface AuthorityServices {
  /** The deployment's one KeyAuthority. */
  keyAuthority: () => DurableObjectStub<KeyAuthority>;
  sandboxAuthority: (sandboxId: string) => DurableObjectStub<SandboxAuthority>;
  jwks: JwksCache;
  registry: SandboxRegistry;
}

/** What the app's requests use, built once per env object (one per isolate and deployment). */
export interface Services extends AuthorityServices {
  config: Config;
  signingKey: SigningKeyCache;
  userTokens: UserTokenCache;
  /**
   * The sandbox a gateway runs in, where this Worker reaches one: a Sandbox binding and no
   * GATEWAY_UPSTREAM. Absent otherwise.
   */
  sandboxApi?: (sandboxId: string) => SandboxApi | undefined;
  /**
   * Asks a sandbox's agent to refresh now, for push on secret change: the app's push option, else
   * pushRefresh into a reachable sandbox. Absent when there is neither.
   */
  push?: (sandboxId: string) => Promise<void>;
}

export interface AppEnv {
  Bindings: Env;
  Variables: {
    services: Services;
    /** Set by the admin routes' authentication. */
    admin: AdminIdentity;
    /** Set on the outbound path only: whether the requesting container is this sandbox's. */
    containerMatches?: (sandboxId: string) => boolean;
  };
}
