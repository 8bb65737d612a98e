/**
 * EgressDeps from a Worker env: the published keys, the sandboxes' state and refusal counters
 * (Durable Objects), the env's secrets and the global fetch. Built once per env object (one per
 * isolate and deployment) and shared by the SDK's outbound handler (index.ts) and the local
 * stack's egress route (routes/local-egress.ts), so both run the same handler with the same caches.
 * The stubs, the JWKS copy and the registry are built as the app's are (services.ts).
 */
import { type Env, loadConfig } from '../config.js';
import type { EgressState } from '../issuer/sandbox-authority.js';
import { authorityServices } from '../services.js';
import { EGRESS_STATE_CACHE_MS, type EgressDeps } from './egress.js';

/** Imported public keys kept per isolate; the JWKS holds at most a handful. */
const MAX_IMPORTED_KEYS = 32;
/** Sandbox states kept per isolate; past this the oldest half is dropped. */
const MAX_STATES = 1024;

interface EgressServices {
  deps: Omit<EgressDeps, 'containerIdOf' | 'fetch' | 'now'>;
  forget(sandboxId: string): void;
}

const byEnv = new WeakMap<object, EgressServices>();

function build(env: Env): EgressServices {
  const { sandboxAuthority, jwks, registry } = authorityServices(env);
  const imported = new Map<string, { x: string; key: Promise<CryptoKey> }>();
  // Resolved values only, each with its deadline: no promise is shared between requests, so a
  // request that ends early cannot leave a load behind that every later request waits on.
  const states = new Map<string, { value: EgressState | undefined; until: number }>();

  async function publicKey(kid: string): Promise<CryptoKey | undefined> {
    const jwk = (await jwks.get()).keys.find((k) => k.kid === kid);
    if (!jwk) return undefined;
    let hit = imported.get(kid);
    if (!hit || hit.x !== jwk.x) {
      if (imported.size >= MAX_IMPORTED_KEYS) imported.clear();
      hit = {
        x: jwk.x,
        key: crypto.subtle.importKey('jwk', { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, { name: 'Ed25519' }, false, [
          'verify',
        ]) as Promise<CryptoKey>,
      };
      imported.set(kid, hit);
    }
    return hit.key;
  }

  async function sandboxState(id: string): Promise<EgressState | undefined> {
    const now = Date.now();
    const hit = states.get(id);
    if (hit && now < hit.until) return hit.value;
    // An id never bootstrapped has no authority to ask (registry.ts): addressing one would create it.
    const value = (await registry.isKnown(id)) ? await sandboxAuthority(id).egressState(id) : undefined;
    if (states.size >= MAX_STATES) for (const k of [...states.keys()].slice(0, MAX_STATES / 2)) states.delete(k);
    states.set(id, { value, until: now + EGRESS_STATE_CACHE_MS });
    return value;
  }

  return {
    deps: {
      get config() {
        return loadConfig(env);
      },
      secretOf: (name) => {
        const v = (env as unknown as Record<string, unknown>)[name];
        return typeof v === 'string' ? v : undefined;
      },
      publicKey,
      sandboxState,
      refuse: async (id, rule, authenticated) => {
        if (await registry.isKnown(id)) await sandboxAuthority(id).egressRefused(id, rule, authenticated);
      },
    },
    forget: (id) => {
      states.delete(id);
    },
  };
}

function servicesOf(env: Env): EgressServices {
  let s = byEnv.get(env);
  if (!s) byEnv.set(env, (s = build(env)));
  return s;
}

/** The handler's dependencies for this env; `containerIdOf` and `fetch` are the caller's (platform or local hop). */
export function egressDeps(env: Env, platform: Pick<EgressDeps, 'containerIdOf' | 'fetch'>): EgressDeps {
  const { deps } = servicesOf(env);
  return {
    get config() {
      return deps.config;
    },
    secretOf: deps.secretOf,
    publicKey: deps.publicKey,
    sandboxState: deps.sandboxState,
    refuse: deps.refuse,
    now: Date.now,
    ...platform,
  };
}

/**
 * Drops this isolate's cached state of a sandbox, after a revocation or a new bootstrap made
 * through it: its egress then sees the change at once. Other isolates see it within
 * EGRESS_STATE_CACHE_MS.
 */
export function forgetEgressState(env: Env, sandboxId: string): void {
  byEnv.get(env)?.forget(sandboxId);
}

/** The platform's container id of a sandbox: its Sandbox Durable Object id (index.ts, app.ts). */
export function sandboxContainerId(env: Env, sandboxId: string): string {
  const ns = env.Sandbox as unknown as DurableObjectNamespace | undefined;
  // Without the binding (a Worker whose gateway runs elsewhere) there is no container to match.
  if (!ns) return `no-sandbox-binding:${sandboxId}`;
  return ns.idFromName(sandboxId).toString();
}
