/**
 * KeyAuthority: the Durable Object, one per deployment, that is the only writer of signing keys.
 *
 * Storage (SQLite-backed, key-value API): one value, `keyset`, holding the KeySet of keys.ts,
 * private halves wrapped under SIGNING_KEY_KEK when it is set. An alarm fires at the next
 * scheduled rotation or removal. Every change runs inside blockConcurrencyWhile, so concurrent
 * first requests create exactly one pair of keys and two rotations can never interleave.
 */
import { DurableObject } from 'cloudflare:workers';
import type { JWK } from 'jose';
import { loadConfig, SIGNING_KEY_CACHE_SECONDS, type Config, type Env } from '../config.js';
import { log } from '../log.js';
import { IssuerError } from './errors.js';
import { checkKekFits, deriveKek, unwrapPrivateKey, wrapPrivateKey, type Kek } from './key-wrap.js';
import {
  activeKey,
  advance,
  generateKey,
  initialKeySet,
  nextWakeUp,
  revocationNeedsNewKey,
  revoke,
  rotate,
  rotationDue,
  toJwks,
  toView,
  type KeySet,
  type KeyView,
  type PublicJwk,
} from './keys.js';
import { capture, type Result } from './result.js';

const STORAGE_KEY = 'keyset';
/** The one KeyAuthority object of a deployment is addressed by this name. */
export const KEY_AUTHORITY_NAME = 'signing-keys';

export interface PublishedKeys {
  keys: PublicJwk[];
  /** When the published set may next change on schedule (epoch ms). */
  changesAt: number;
}

export interface KeyListing {
  keys: KeyView[];
  schedule: {
    rotation_period_seconds: number;
    next_rotation_at: string;
    earliest_manual_rotation_at: string;
  };
}

export interface SigningKey {
  kid: string;
  privateJwk: JWK;
  /** Isolates must not sign with this key after this time (epoch ms); see DESIGN §5. */
  useUntil: number;
}

export class KeyAuthority extends DurableObject<Env> {
  private set: KeySet | undefined;
  private kek: { secret: string; kek: Promise<Kek> } | undefined;

  /** The published JWKS. Works even when the KEK is wrong: it needs no private key. */
  async published(): Promise<Result<PublishedKeys>> {
    return capture(async () => {
      const set = await this.current(Date.now());
      return { keys: toJwks(set).keys, changesAt: nextWakeUp(set) };
    });
  }

  /** Every key with its state and times, and the rotation schedule. */
  async list(): Promise<Result<KeyListing>> {
    return capture(async () => {
      const set = await this.current(Date.now());
      return this.listing(set);
    });
  }

  /** Rotates now; refuses while the next key is too new for verifiers to know, unless forced. */
  async rotate(force: boolean): Promise<Result<KeyListing>> {
    return capture(() =>
      this.mutate(Date.now(), async (set, now, cfg, kek) => {
        const next = set.keys.find((k) => k.state === 'next');
        const out = rotate(set, await this.newKey(kek), now, cfg.timing, { force });
        log('info', 'key_rotated', { reason: force ? 'forced' : 'manual', active: next?.kid, next: out.keys.find((k) => k.state === 'next')?.kid });
        return out;
      }).then((set) => this.listing(set)),
    );
  }

  /** Removes a key from the JWKS now; a revoked active key is replaced by the next one. */
  async revoke(kid: string): Promise<Result<KeyListing>> {
    return capture(() =>
      this.mutate(Date.now(), async (set, now, cfg, kek) => {
        const replacement = revocationNeedsNewKey(set, kid) ? await this.newKey(kek) : undefined;
        const out = revoke(set, kid, now, cfg.timing, replacement);
        log('warn', 'key_revoked', { kid, active: activeKey(out).kid });
        return out;
      }).then((set) => this.listing(set)),
    );
  }

  /** The active private key, for isolates to sign with (cached by them for a bounded time). */
  async signingKey(): Promise<Result<SigningKey>> {
    return capture(async () => {
      const now = Date.now();
      const set = await this.current(now);
      const kek = await this.currentKek(loadConfig(this.env));
      const active = activeKey(set);
      const privateJwk = await unwrapPrivateKey(active.privateKey!, active.kid, kek);
      // Never beyond the scheduled rotation: after it, the key retires and its retention
      // (config.retentionSeconds) only covers SIGNING_KEY_CACHE_SECONDS of late signing.
      return { kid: active.kid, privateJwk, useUntil: Math.min(now + SIGNING_KEY_CACHE_SECONDS * 1000, set.rotateAt) };
    });
  }

  /** Applies what is due at `now` (rotation, removals). The alarm calls it; tests call it with their own clock. */
  async advanceTo(now: number): Promise<KeySet> {
    const set = await this.load(now);
    if (nextWakeUp(set) > now) {
      await this.ctx.storage.setAlarm(nextWakeUp(set));
      return set;
    }
    return this.mutate(now, async (s, n, cfg, kek) => {
      const due = rotationDue(s, n);
      const out = advance(s, n, cfg.timing, due ? await this.newKey(kek) : undefined);
      if (due) log('info', 'key_rotated', { reason: 'scheduled', active: activeKey(out).kid });
      for (const k of out.keys) {
        if (k.state === 'removed' && !s.keys.some((o) => o.kid === k.kid && o.state === 'removed')) {
          log('info', 'key_removed', { kid: k.kid, reason: k.removedReason });
        }
      }
      return out;
    });
  }

  override async alarm(): Promise<void> {
    try {
      await this.advanceTo(Date.now());
    } catch (e) {
      // The alarm retries on a throw; log which rule failed (never key material) and let it.
      log('error', 'key_alarm_failed', { code: e instanceof IssuerError ? e.code : 'internal_error' });
      throw e;
    }
  }

  // --- internals ---

  private listing(set: KeySet): KeyListing {
    const t = loadConfig(this.env).timing;
    const next = set.keys.find((k) => k.state === 'next');
    return {
      keys: toView(set),
      schedule: {
        rotation_period_seconds: t.rotationPeriod,
        next_rotation_at: new Date(set.rotateAt).toISOString(),
        earliest_manual_rotation_at: new Date(next ? next.createdAt + (t.jwksMaxAge + t.clockSkew) * 1000 : set.rotateAt).toISOString(),
      },
    };
  }

  /** The key set as of `now`, applying a due rotation or removal if the alarm has not yet. */
  private async current(now: number): Promise<KeySet> {
    const set = await this.load(now);
    return nextWakeUp(set) <= now ? this.advanceTo(now) : set;
  }

  private async load(now: number): Promise<KeySet> {
    if (this.set) return this.set;
    let failure: unknown;
    await this.ctx.blockConcurrencyWhile(async () => {
      if (this.set) return;
      try {
      const stored = await this.ctx.storage.get<KeySet>(STORAGE_KEY);
      if (stored) {
        this.set = stored;
        return;
      }
      const cfg = loadConfig(this.env);
      const kek = await this.currentKek(cfg);
      const [a, n] = await Promise.all([this.newKey(kek), this.newKey(kek)]);
      const set = initialKeySet(a, n, now, cfg.timing);
      await this.persist(set);
      log('info', 'keys_created', { active: a.key.kid, next: n.key.kid, wrapped: kek !== undefined });
      } catch (e) {
        failure = e;
      }
    });
    if (failure !== undefined) throw failure;
    return this.set!;
  }

  /**
   * Runs one change to the key set with no other event interleaved, then stores it and re-arms
   * the alarm. A refusal is carried out of blockConcurrencyWhile and thrown after it: a throw
   * inside would reset the whole object (workerd treats it as a broken input gate).
   */
  private async mutate(now: number, change: (set: KeySet, now: number, cfg: Config, kek: Kek | undefined) => Promise<KeySet>): Promise<KeySet> {
    await this.load(now);
    type Outcome = { ok: true; set: KeySet } | { ok: false; error: unknown };
    let outcome = { ok: false, error: new Error('change did not run') } as Outcome;
    await this.ctx.blockConcurrencyWhile(async () => {
      try {
        const cfg = loadConfig(this.env);
        const kek = await this.currentKek(cfg);
        const set = this.set!;
        for (const k of set.keys) if (k.privateKey) checkKekFits(k.privateKey, kek);
        const out = await change(set, now, cfg, kek);
        await this.persist(out);
        outcome = { ok: true, set: out };
      } catch (error) {
        outcome = { ok: false, error };
      }
    });
    if (!outcome.ok) throw outcome.error;
    return outcome.set;
  }

  private async persist(set: KeySet): Promise<void> {
    await this.ctx.storage.put(STORAGE_KEY, set);
    await this.ctx.storage.setAlarm(nextWakeUp(set));
    this.set = set;
  }

  private async newKey(kek: Kek | undefined) {
    const key = await generateKey();
    return { key, privateKey: await wrapPrivateKey(key.privateJwk, kek) };
  }

  private async currentKek(cfg: Config): Promise<Kek | undefined> {
    const secret = cfg.signingKeyKek;
    if (secret === undefined) return undefined;
    if (this.kek?.secret !== secret) this.kek = { secret, kek: deriveKek(secret) };
    return this.kek.kek;
  }
}
