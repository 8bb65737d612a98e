import { createExecutionContext, env, waitOnExecutionContext } from 'cloudflare:test';
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import type { Env } from '../../src/config.js';
import { adminHeaders, BASE, freshStorage } from './helpers.js';
import { assertion, bootstrap, type ErrorBody, tokenForm } from './token-helpers.js';

beforeEach(freshStorage);

/** Stand-in for the Sandbox namespace's idFromName(id).toString(). */
const containerIdOf = (_env: Env, sandboxId: string) => `container-of-${sandboxId}`;

describe('outbound token endpoint (issuer.internal)', () => {
  const outbound = createApp({ outbound: { containerIdOf } });
  const send = async (jwt: string, containerId?: string) => {
    const ctx = Object.assign(createExecutionContext(), containerId === undefined ? {} : { containerId });
    return outbound.fetch(new Request(`${BASE}/oauth/token`, tokenForm(jwt)), env, ctx);
  };

  it('issues a token when the container is the assertion sandbox', async () => {
    const b = await bootstrap('sb-out');
    expect((await send(await assertion(b), 'container-of-sb-out')).status).toBe(200);
  });

  it('refuses an assertion for another sandbox than the container it came from, and audits it', async () => {
    const victim = await bootstrap('sb-victim');
    await bootstrap('sb-attacker');
    // A stolen bootstrap key used from another sandbox's container.
    const res = await send(await assertion(victim), 'container-of-sb-attacker');
    expect(res.status).toBe(401);
    expect(((await res.json()) as ErrorBody).error_description).toMatch(/^container_mismatch:/);
    // No container id at all: fail closed.
    expect((await send(await assertion(victim))).status).toBe(401);
    const audit = await createApp().fetch(
      new Request(`${BASE}/api/admin/audit?sandbox=sb-victim`, { headers: adminHeaders() }),
      env,
      createExecutionContext(),
    );
    const refusals = ((await audit.json()) as { refusals: { code: string; count: number }[] }).refusals;
    expect(refusals.filter((r) => r.code === 'container_mismatch').reduce((n, r) => n + r.count, 0)).toBe(2);
  });

  it('serves nothing but the token endpoint', async () => {
    for (const path of ['/.well-known/jwks.json', '/api/admin/keys', '/anything']) {
      const res = await outbound.fetch(new Request(`${BASE}${path}`, { headers: adminHeaders() }), env, createExecutionContext());
      expect(res.status, path).toBe(404);
    }
  });
});

describe('push on secret change', () => {
  it('a changed secret triggers exactly one push per sandbox, across isolates and requests', async () => {
    await bootstrap('sb-p1');
    await bootstrap('sb-p2');
    const pushes: string[] = [];
    const push = async (_e: Env, id: string) => void pushes.push(id);
    const isolateA = createApp({ push });
    const isolateB = createApp({ push });
    const hit = async (app: ReturnType<typeof createApp>, master: string) => {
      const ctx = createExecutionContext();
      await app.fetch(new Request(`${BASE}/.well-known/jwks.json`), { ...env, MOLTBOT_GATEWAY_TOKEN: master } as Env, ctx);
      await waitOnExecutionContext(ctx);
    };
    // The first fingerprint ever seen is recorded, with nothing to push.
    await hit(isolateA, 'master-v1-0123456789abcdef');
    await hit(isolateB, 'master-v1-0123456789abcdef');
    expect(pushes).toEqual([]);
    // `wrangler secret put` redeploys: both isolates see the new value, many requests each.
    for (let i = 0; i < 3; i++) {
      await Promise.all([hit(isolateA, 'master-v2-0123456789abcdef'), hit(isolateB, 'master-v2-0123456789abcdef')]);
    }
    expect(pushes.sort()).toEqual(['sb-p1', 'sb-p2']);
    // A secret CREDENTIALS does not name changes nothing.
    const before = pushes.length;
    const ctx = createExecutionContext();
    await createApp({ push }).fetch(
      new Request(`${BASE}/.well-known/jwks.json`),
      { ...env, MOLTBOT_GATEWAY_TOKEN: 'master-v2-0123456789abcdef', OTHER_SECRET: 'x' } as Env,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(pushes.length).toBe(before);
  });
});
