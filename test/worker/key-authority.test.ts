import { env, listDurableObjectIds, runDurableObjectAlarm, runInDurableObject, SELF } from 'cloudflare:test';
import { beforeEach, describe, expect, it } from 'vitest';
import type { KeyAuthority } from '../../src/issuer/key-authority.js';
import type { KeySet } from '../../src/issuer/keys.js';
import { adminHeaders, captureLogs, freshStorage, keyAuthority } from './helpers.js';

const S = 1000;

async function storedSet(): Promise<KeySet> {
  return runInDurableObject(keyAuthority(), async (_i, state) => (await state.storage.get<KeySet>('keyset'))!);
}

/** Opens every stored private key with the configured KEK (through the authority's own code). */
async function privateDs(): Promise<string[]> {
  const { unwrapPrivateKey, deriveKek } = await import('../../src/issuer/key-wrap.js');
  const kek = await deriveKek(env.SIGNING_KEY_KEK!);
  const set = await storedSet();
  const ds: string[] = [];
  for (const k of set.keys) if (k.privateKey) ds.push((await unwrapPrivateKey(k.privateKey, k.kid, kek)).d!);
  return ds;
}

beforeEach(freshStorage);

describe('KeyAuthority', () => {
  it('50 concurrent first requests create exactly two keys', async () => {
    const stub = keyAuthority();
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        i % 2 === 0
          ? stub.published().then((r) => (r.ok ? r.value.keys.map((k) => k.kid) : []))
          : SELF.fetch('http://127.0.0.1:8787/api/admin/keys', { headers: adminHeaders() })
              .then((r) => r.json() as Promise<{ keys: { kid: string }[] }>)
              .then((b) => b.keys.map((k) => k.kid)),
      ),
    );
    const set = await storedSet();
    expect(set.keys).toHaveLength(2);
    const kids = set.keys.map((k) => k.kid).sort();
    for (const a of answers) expect([...a].sort()).toEqual(kids);
    expect(await listDurableObjectIds(env.KEY_AUTHORITY)).toHaveLength(1);
  });

  it('stores private keys wrapped under the KEK, never in the clear', async () => {
    await keyAuthority().published();
    const set = await storedSet();
    const raw = JSON.stringify(set);
    for (const k of set.keys) expect(k.privateKey?.format).toBe('wrapped');
    for (const d of await privateDs()) expect(raw).not.toContain(d);
  });

  it('arms an alarm at the next rotation and rotates when it fires', async () => {
    const stub = keyAuthority();
    const first = await storedSet().catch(() => undefined);
    expect(first).toBeUndefined();
    await stub.published();
    const before = await storedSet();
    const alarmAt = await runInDurableObject(stub, (_i, s) => s.storage.getAlarm());
    expect(alarmAt).toBe(before.rotateAt);

    // The alarm handler applies what is due at its clock; drive it with a clock one period ahead.
    const after = await runInDurableObject(stub, (i: KeyAuthority) => i.advanceTo(before.rotateAt));
    const stateOf = (s: KeySet, kid: string) => s.keys.find((k) => k.kid === kid)?.state;
    const oldActive = before.keys.find((k) => k.state === 'active')!.kid;
    const oldNext = before.keys.find((k) => k.state === 'next')!.kid;
    expect(stateOf(after, oldActive)).toBe('retiring');
    expect(stateOf(after, oldNext)).toBe('active');
    expect(after.keys.filter((k) => k.state === 'next')).toHaveLength(1);
    const retiring = after.keys.find((k) => k.state === 'retiring')!;
    expect(await runInDurableObject(stub, (_i, s) => s.storage.getAlarm())).toBe(retiring.removeAt);

    // At removeAt - 1 nothing changes; at removeAt the retiring key leaves.
    const early = await runInDurableObject(stub, (i: KeyAuthority) => i.advanceTo(retiring.removeAt! - 1));
    expect(stateOf(early, oldActive)).toBe('retiring');
    const late = await runInDurableObject(stub, (i: KeyAuthority) => i.advanceTo(retiring.removeAt!));
    expect(stateOf(late, oldActive)).toBe('removed');
    expect((await storedSet()).keys.find((k) => k.kid === oldActive)!.privateKey).toBeUndefined();

    // The real alarm handler runs with the real clock: nothing is due, so nothing changes.
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await storedSet()).keys.map((k) => k.state)).toEqual(late.keys.map((k) => k.state));
  });

  it('a wrong KEK is a clear error, not garbage keys; the JWKS still serves', async () => {
    const stub = keyAuthority();
    await stub.published();
    const outcome = await runInDurableObject(stub, async (i: KeyAuthority) => {
      (i as unknown as { env: unknown }).env = { ...env, SIGNING_KEY_KEK: 'another-kek-of-enough-length-0123456789' };
      return { sign: await i.signingKey(), rotate: await i.rotate(true), jwks: await i.published() };
    });
    expect(outcome.sign).toMatchObject({ ok: false, error: { code: 'kek_mismatch' } });
    expect(outcome.rotate).toMatchObject({ ok: false, error: { code: 'kek_mismatch' } });
    expect(outcome.jwks.ok).toBe(true);
    expect((await storedSet()).keys).toHaveLength(2); // nothing was written under the wrong KEK
  });

  it('keys wrapped under a KEK that is no longer set: kek_missing', async () => {
    const stub = keyAuthority();
    await stub.published();
    const r = await runInDurableObject(stub, async (i: KeyAuthority) => {
      (i as unknown as { env: unknown }).env = { ...env, SIGNING_KEY_KEK: undefined };
      return i.signingKey();
    });
    expect(r).toMatchObject({ ok: false, error: { code: 'kek_missing' } });
  });

  it('hands out the active key for at most a minute and never past the scheduled rotation', async () => {
    const stub = keyAuthority();
    const r = await stub.signingKey();
    if (!r.ok) throw new Error(r.error.code);
    const set = await storedSet();
    expect(r.value.kid).toBe(set.keys.find((k) => k.state === 'active')!.kid);
    expect(r.value.useUntil - Date.now()).toBeLessThanOrEqual(60 * S);
    expect(r.value.useUntil).toBeLessThanOrEqual(set.rotateAt);
  });

  it('no private key material in any response or log line over a full rotation cycle', async () => {
    const stub = keyAuthority();
    const bodies: string[] = [];
    const seenDs = new Set<string>();
    const { lines } = await captureLogs(async () => {
      const get = async (path: string, init: RequestInit = {}) => {
        const r = await SELF.fetch(`http://127.0.0.1:8787${path}`, init);
        bodies.push(await r.text(), JSON.stringify([...r.headers]));
      };
      await get('/.well-known/jwks.json');
      for (const d of await privateDs()) seenDs.add(d);
      const start = (await storedSet()).rotateAt;
      // Scheduled rotation, removal of the retiring key, manual rotation, revocation.
      await runInDurableObject(stub, (i: KeyAuthority) => i.advanceTo(start));
      for (const d of await privateDs()) seenDs.add(d);
      const removeAt = (await storedSet()).keys.find((k) => k.state === 'retiring')!.removeAt!;
      await runInDurableObject(stub, (i: KeyAuthority) => i.advanceTo(removeAt));
      await get('/api/admin/keys/rotate?force=true', { method: 'POST', headers: adminHeaders() });
      for (const d of await privateDs()) seenDs.add(d);
      const active = (await storedSet()).keys.find((k) => k.state === 'active')!.kid;
      await get(`/api/admin/keys/${active}/revoke`, { method: 'POST', headers: adminHeaders() });
      for (const d of await privateDs()) seenDs.add(d);
      await get('/api/admin/keys', { headers: adminHeaders() });
      await get('/.well-known/jwks.json');
      await get('/api/admin/keys/rotate', { method: 'POST', headers: adminHeaders() }); // 409
    });
    expect(seenDs.size).toBeGreaterThanOrEqual(5);
    expect(lines.some((l) => l.includes('key_rotated'))).toBe(true);
    expect(lines.some((l) => l.includes('key_removed'))).toBe(true);
    expect(lines.some((l) => l.includes('key_revoked'))).toBe(true);
    const everything = [...bodies, ...lines].join('\n');
    for (const d of seenDs) expect(everything).not.toContain(d);
    expect(everything).not.toContain(env.SIGNING_KEY_KEK!);
    expect(everything).not.toContain(env.ADMIN_TOKEN!);
  });
});
