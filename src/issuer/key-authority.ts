/**
 * KeyAuthority: the Durable Object, one per deployment, that is the only writer of signing keys.
 *
 * Storage (SQLite-backed): the key-value entry `keyset` holds the KeySet of keys.ts, private
 * halves wrapped under SIGNING_KEY_KEK when it is set. SQL tables: `sandboxes(id, created_at)`,
 * the registry of sandboxes ever bootstrapped (for the admin views), and `audit` (audit.ts),
 * the deployment-wide admin events (key rotations and revocations). An alarm fires at the next
 * scheduled rotation or removal. Every change runs inside blockConcurrencyWhile, so concurrent
 * first requests create exactly one pair of keys and two rotations can never interleave.
 */
import { DurableObject } from 'cloudflare:workers';
import type { JWK } from 'jose';
import { type AuditEvent, type KeyListing, SANDBOX_PAGE_MAX } from '../admin-api.js';
import { type Config, type Env, loadConfig } from '../config.js';
import { log } from '../log.js';
import { type AuditInput, appendAudit, ensureAuditTable, readAudit } from './audit.js';
import { IssuerError } from './errors.js';
import { SIGNING_KEY_CACHE_SECONDS } from './key-timing.js';
import { checkKekFits, deriveKek, type Kek, unwrapPrivateKey, wrapPrivateKey } from './key-wrap.js';
import {
  activeKey,
  advance,
  earliestRotation,
  generateKey,
  initialKeySet,
  type KeySet,
  nextWakeUp,
  type PublicJwk,
  revocationNeedsNewKey,
  revoke,
  rotate,
  rotationDue,
  toJwks,
  toView,
} from './keys.js';
import type { RegistryCursor, RegistryPage } from './registry.js';
import { capture, type Result } from './result.js';

const STORAGE_KEY = 'keyset';
/** The one KeyAuthority object of a deployment is addressed by this name. */
export const KEY_AUTHORITY_NAME = 'signing-keys';

export interface PublishedKeys {
  keys: PublicJwk[];
  /** When the published set may next change on schedule (epoch ms). */
  changesAt: number;
}

export interface SigningKey {
  kid: string;
  privateJwk: JWK;
  /** Isolates must not sign with this key after this time (epoch ms); see docs/architecture.md, "Isolate caches". */
  useUntil: number;
}

export class KeyAuthority extends DurableObject<Env> {
  private set: KeySet | undefined;
  private kek: { secret: string; kek: Promise<Kek> } | undefined;
  private parsed: { env: Env; config: Config } | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS sandboxes (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL)');
    ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS settings (k TEXT PRIMARY KEY, v TEXT NOT NULL)');
    ensureAuditTable(ctx.storage.sql);
  }

  /** Remembers a sandbox id for the admin views. */
  async registerSandbox(id: string): Promise<void> {
    this.ctx.storage.sql.exec('INSERT INTO sandboxes (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING', id, Date.now());
  }

  /** Whether a sandbox id was ever bootstrapped (registry.ts): a read, no write. */
  async isSandbox(id: string): Promise<boolean> {
    return this.ctx.storage.sql.exec('SELECT 1 FROM sandboxes WHERE id = ?', id).toArray().length > 0;
  }

  /**
   * One page of sandbox ids, newest first, then by id; `after` continues a listing. `pinned` (the
   * Worker's own sandbox) is put first on the first page and left out of the rest, so the sandbox
   * in use is never the one a page leaves out.
   */
  async sandboxPage(limit: number, after?: RegistryCursor, pinned?: string): Promise<RegistryPage> {
    const sql = this.ctx.storage.sql;
    const n = Math.max(1, Math.min(limit, SANDBOX_PAGE_MAX));
    const total = sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM sandboxes').one().n;
    const head =
      !after && pinned !== undefined && sql.exec('SELECT 1 FROM sandboxes WHERE id = ?', pinned).toArray().length > 0 ? [pinned] : [];
    const rows = sql
      .exec<{ id: string; created_at: number }>(
        `SELECT id, created_at FROM sandboxes WHERE id != ? AND (? IS NULL OR created_at < ? OR (created_at = ? AND id > ?))
         ORDER BY created_at DESC, id LIMIT ?`,
        pinned ?? '',
        after?.createdAt ?? null,
        after?.createdAt ?? 0,
        after?.createdAt ?? 0,
        after?.id ?? '',
        n - head.length + 1,
      )
      .toArray();
    const more = rows.length > n - head.length;
    const page = rows.slice(0, n - head.length);
    const last = page.at(-1);
    // A first page that holds only the pinned id continues from the very start.
    const next = more ? (last ? { createdAt: last.created_at, id: last.id } : { createdAt: Number.MAX_SAFE_INTEGER, id: '' }) : undefined;
    return { ids: [...head, ...page.map((r) => r.id)], total, next };
  }

  /**
   * Compare-and-set of the delivered secrets' fingerprint (push.ts): `changed` is true for exactly
   * one caller per new value, and false for the very first value (nothing to push yet). Synchronous
   * SQL, so no other call interleaves.
   */
  async recordSecretsFingerprint(fingerprint: string): Promise<{ changed: boolean }> {
    const sql = this.ctx.storage.sql;
    const prev = sql.exec<{ v: string }>("SELECT v FROM settings WHERE k = 'secrets_fingerprint'").toArray()[0]?.v;
    if (prev === fingerprint) return { changed: false };
    sql.exec("INSERT INTO settings (k, v) VALUES ('secrets_fingerprint', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", fingerprint);
    if (prev !== undefined) appendAudit(sql, Date.now(), { event: 'secrets_changed', outcome: 'ok', actor: 'deploy' });
    return { changed: prev !== undefined };
  }

  async recordAdmin(event: AuditInput): Promise<void> {
    appendAudit(this.ctx.storage.sql, Date.now(), event);
  }

  async auditLog(limit: number): Promise<AuditEvent[]> {
    return readAudit(this.ctx.storage.sql, limit);
  }

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
  async rotate(force: boolean, actor = 'admin'): Promise<Result<KeyListing>> {
    return capture(() =>
      this.mutate(Date.now(), async (set, now, cfg, kek) => {
        const next = set.keys.find((k) => k.state === 'next');
        const out = rotate(set, await this.newKey(kek), now, cfg.timing, { force });
        log('info', 'key_rotated', {
          reason: force ? 'forced' : 'manual',
          active: next?.kid,
          next: out.keys.find((k) => k.state === 'next')?.kid,
        });
        appendAudit(this.ctx.storage.sql, now, { event: force ? 'key_rotate_forced' : 'key_rotate', outcome: 'ok', kid: next?.kid, actor });
        return out;
      }).then((set) => this.listing(set)),
    );
  }

  /** Removes a key from the JWKS now; a revoked active key is replaced by the next one. */
  async revoke(kid: string, actor = 'admin'): Promise<Result<KeyListing>> {
    return capture(() =>
      this.mutate(Date.now(), async (set, now, cfg, kek) => {
        const replacement = revocationNeedsNewKey(set, kid) ? await this.newKey(kek) : undefined;
        const out = revoke(set, kid, now, cfg.timing, replacement);
        log('warn', 'key_revoked', { kid, active: activeKey(out).kid });
        appendAudit(this.ctx.storage.sql, now, { event: 'key_revoke', outcome: 'ok', kid, actor });
        return out;
      }).then((set) => this.listing(set)),
    );
  }

  /** The active private key, for isolates to sign with (cached by them for a bounded time). */
  async signingKey(): Promise<Result<SigningKey>> {
    return capture(async () => {
      const now = Date.now();
      const set = await this.current(now);
      const kek = await this.currentKek(this.config);
      const active = activeKey(set);
      const privateJwk = await unwrapPrivateKey(active.privateKey!, active.kid, kek);
      // Never beyond the scheduled rotation: after it, the key retires and its retention
      // (key-timing.ts, retentionSeconds) only covers SIGNING_KEY_CACHE_SECONDS of late signing.
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
      if (due) {
        log('info', 'key_rotated', { reason: 'scheduled', active: activeKey(out).kid });
        appendAudit(this.ctx.storage.sql, n, { event: 'key_rotate_scheduled', outcome: 'ok', kid: activeKey(out).kid, actor: 'alarm' });
      }
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

  /**
   * The deployment's config, parsed at first use and kept with the env object it came from (one
   * for the object's life; a new env object is parsed anew). Not in the constructor: a broken
   * config must fail calls with its ConfigError, not the object.
   */
  private get config(): Config {
    if (this.parsed?.env !== this.env) this.parsed = { env: this.env, config: loadConfig(this.env) };
    return this.parsed.config;
  }

  private listing(set: KeySet): KeyListing {
    const t = this.config.timing;
    const earliest = earliestRotation(set, t);
    return {
      keys: toView(set),
      schedule: {
        rotation_period_seconds: t.rotationPeriod,
        next_rotation_at: new Date(set.rotateAt).toISOString(),
        earliest_manual_rotation_at: new Date(Number.isFinite(earliest) ? earliest : set.rotateAt).toISOString(),
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
        const cfg = this.config;
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
  private async mutate(
    now: number,
    change: (set: KeySet, now: number, cfg: Config, kek: Kek | undefined) => Promise<KeySet>,
  ): Promise<KeySet> {
    await this.load(now);
    type Outcome = { ok: true; set: KeySet } | { ok: false; error: unknown };
    let outcome = { ok: false, error: new Error('change did not run') } as Outcome;
    await this.ctx.blockConcurrencyWhile(async () => {
      try {
        const cfg = this.config;
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
