/**
 * SandboxAuthority: the Durable Object, one per sandbox id, that authenticates the sandbox's agent.
 *
 * Storage (SQLite):
 *   meta(k, v)                 JSON values: `sandbox` (id, bootstrap public JWK and kid, created,
 *                              revoked), `enc_key` (the agent's X25519 public JWK)
 *   jti(jti, expires_at)       assertion ids seen, each kept until the assertion could no longer
 *                              be accepted (exp + skew), then swept
 *   audit(...)                 see audit.ts: issuances and admin actions, at most AUDIT_MAX_EVENTS
 *   refusals(...)              see audit.ts: refusals counted per rule per minute
 * Only the public half of a bootstrap key is ever stored: the private half is returned once.
 * The tables are created by the first bootstrap, not before: an object for an id that was never
 * bootstrapped writes nothing at all (the Worker does not even address one, see registry.ts).
 *
 * One token costs one call here (`authorize`): the kid and signature check, the claim rules,
 * the replay check-and-insert, the agent key registration and the audit event. The replay
 * insert runs synchronously after the signature check, with no await in between, so two copies
 * of one assertion arriving together cannot both pass (the object runs one event at a time).
 */
import { DurableObject } from 'cloudflare:workers';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { type AuditListing, type SandboxStatus, TOKEN_PATH } from '../admin-api.js';
import { type Config, type Env, loadConfig } from '../config.js';
import { AssertionError, type AssertionRule, checkClaims, checkKid, parseAssertion, verifySignature } from './assertion.js';
import { appendAudit, countRefusal, ensureAuditTable, ensureRefusalTable, readAudit, readRefusals } from './audit.js';
import { checkAgentKey, type X25519PublicJwk } from './credentials.js';
import { IssuerError } from './errors.js';
import { capture, type Result } from './result.js';

interface SandboxRecord {
  id: string;
  kid: string;
  publicJwk: { kty: 'OKP'; crv: 'Ed25519'; x: string };
  bootstrappedAt: number;
  revokedAt?: number;
}

interface EncKeyRecord {
  jwk: X25519PublicJwk;
  thumbprint: string;
  registeredAt: number;
}

export interface AuthorizeRequest {
  assertion: string;
  /** The `client_id` form parameter, if the client sent one. */
  clientId?: string;
  encJwk?: X25519PublicJwk;
  /** What the Worker will issue on success, recorded in the audit event before it signs. */
  issue: { kid: string; jti: string; credVer?: string };
}

export interface EgressState {
  /** Thumbprint of the current bootstrap key: a sentinel's cnf.jkt must equal it. */
  jkt: string;
  revoked: boolean;
}

export interface Authorized {
  sandboxId: string;
  /** RFC 7638 thumbprint of the bootstrap key: the token's cnf.jkt. */
  jkt: string;
  /** The agent's registered X25519 key, if any: credentials are encrypted to it. */
  encKey?: X25519PublicJwk;
}

/** How often expired jti entries are swept while requests flow, and when idle (by alarm). */
const JTI_SWEEP_INTERVAL_MS = 60_000;

export class SandboxAuthority extends DurableObject<Env> {
  private record: SandboxRecord | undefined | null = null; // null: not loaded yet
  private encKey: EncKeyRecord | undefined | null = null;
  private verifyKey: { kid: string; key: Promise<CryptoKey> } | undefined;
  private lastSweep = 0;
  private tablesReady = false;
  /** Thumbprint of the stored agent key once checked usable (usableAgentKey). */
  private checkedEncKey: string | undefined;
  private parsed: { env: Env; config: Config } | undefined;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
  }

  /** New bootstrap key pair: the public half replaces the previous one at once; the private half is returned once. */
  async bootstrap(sandboxId: string, actor: string): Promise<Result<{ privateJwk: JWK; kid: string }>> {
    return capture(async () => {
      this.ensureTables();
      const pair = (await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify'])) as CryptoKeyPair;
      const priv = (await crypto.subtle.exportKey('jwk', pair.privateKey)) as JsonWebKey;
      const publicJwk = { kty: 'OKP' as const, crv: 'Ed25519' as const, x: priv.x! };
      const kid = await calculateJwkThumbprint(publicJwk, 'sha256');
      const now = Date.now();
      this.putMeta('sandbox', { id: sandboxId, kid, publicJwk, bootstrappedAt: now } satisfies SandboxRecord);
      // A new bootstrap key means a new agent: its X25519 key comes with its first request.
      this.ctx.storage.sql.exec("DELETE FROM meta WHERE k = 'enc_key'");
      this.record = undefined;
      this.encKey = undefined;
      this.verifyKey = undefined;
      appendAudit(this.ctx.storage.sql, now, { sandbox: sandboxId, event: 'bootstrap', outcome: 'ok', kid, actor });
      return { privateJwk: { kty: 'OKP', crv: 'Ed25519', x: priv.x!, d: priv.d!, kid, alg: 'EdDSA' }, kid };
    });
  }

  /** Revokes the sandbox: its bootstrap key and every later refresh fail until a new bootstrap. */
  async revoke(sandboxId: string, actor: string): Promise<Result<SandboxStatus>> {
    return capture(async () => {
      const rec = this.sandbox();
      if (!rec) throw new IssuerError('not_found', 'no such sandbox', { sandbox: sandboxId });
      const now = Date.now();
      if (rec.revokedAt === undefined) {
        this.putMeta('sandbox', { ...rec, revokedAt: now } satisfies SandboxRecord);
        this.record = undefined;
      }
      appendAudit(this.ctx.storage.sql, now, { sandbox: sandboxId, event: 'revoke', outcome: 'ok', kid: rec.kid, actor });
      return this.statusReport(sandboxId);
    });
  }

  /** Checks an assertion (every rule after the key-free ones) and records the issuance. One round trip per token. */
  async authorize(req: AuthorizeRequest): Promise<Result<Authorized>> {
    return capture(async () => {
      const now = Date.now();
      const cfg = this.config;
      const a = parseAssertion(req.assertion);
      const rec = this.sandbox();
      // Unknown: nothing is written, so arbitrary ids cannot fill storage.
      if (!rec || rec.id !== a.iss) throw new AssertionError('unknown_client', 'iss does not name a sandbox');
      // Whether the bootstrap key signed this assertion: refusals before that are anyone's junk.
      let authenticated = false;
      try {
        if (req.clientId !== undefined && req.clientId !== a.iss)
          throw new AssertionError('client_id_mismatch', 'client_id must equal the assertion iss');
        if (rec.revokedAt !== undefined) throw new AssertionError('client_revoked', 'the sandbox is revoked');
        checkKid(a, rec.kid);
        await verifySignature(a, await this.bootstrapKey(rec));
        authenticated = true;
        const { jti, rememberUntil } = checkClaims(a, now, {
          audiences: [cfg.issuer, `${cfg.issuer}${TOKEN_PATH}`],
          clockSkewSeconds: cfg.timing.clockSkew,
        });
        // Check-and-insert in one synchronous statement: no other event runs in between.
        const inserted = this.ctx.storage.sql.exec(
          'INSERT INTO jti (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING',
          jti,
          rememberUntil,
        ).rowsWritten;
        if (inserted === 0) throw new AssertionError('jti_replayed', 'this assertion jti has been used before');
        this.maybeSweep(now);

        // A new key was checked usable by the grant; a stored one is checked once (usableAgentKey).
        const enc = req.encJwk ? await this.registerEncKey(req.encJwk, now) : await this.usableAgentKey();
        const credVer = enc ? req.issue.credVer : undefined;
        appendAudit(this.ctx.storage.sql, now, {
          sandbox: rec.id,
          event: 'token_issued',
          outcome: 'ok',
          kid: req.issue.kid,
          jti: req.issue.jti,
          cred_ver: credVer,
        });
        return { sandboxId: rec.id, jkt: rec.kid, encKey: enc?.jwk };
      } catch (e) {
        if (e instanceof AssertionError) this.refused(now, rec.id, e.rule, authenticated);
        throw e;
      }
    });
  }

  /** Records a refusal decided before this object was asked (malformed request for a known sandbox). */
  async refuse(sandboxId: string, rule: AssertionRule | string): Promise<void> {
    const rec = this.sandbox();
    if (rec && rec.id === sandboxId) this.refused(Date.now(), sandboxId, rule, false);
  }

  /**
   * What the egress handler checks a sentinel against: the current bootstrap key's thumbprint and
   * whether the sandbox is revoked. A read: an id never bootstrapped gets undefined, and nothing is created.
   */
  async egressState(sandboxId: string): Promise<EgressState | undefined> {
    const rec = this.sandbox();
    if (!rec || rec.id !== sandboxId) return undefined;
    return { jkt: rec.kid, revoked: rec.revokedAt !== undefined };
  }

  /** Counts an egress refusal (code `egress:<rule>`) in the bounded refusal counters, never as an event. */
  async egressRefused(sandboxId: string, rule: string, authenticated: boolean): Promise<void> {
    const rec = this.sandbox();
    if (rec && rec.id === sandboxId) this.refused(Date.now(), sandboxId, `egress:${rule}`, authenticated);
  }

  async status(sandboxId: string): Promise<SandboxStatus> {
    return this.statusReport(sandboxId);
  }

  /** Authenticated events and refusal counts, each newest first, each at most `limit`. */
  async auditLog(limit: number): Promise<AuditListing> {
    if (!this.hasTables()) return { events: [], refusals: [] };
    return { events: readAudit(this.ctx.storage.sql, limit), refusals: readRefusals(this.ctx.storage.sql, limit) };
  }

  /** Sweeps expired jti entries when idle; re-arms while entries remain. */
  override async alarm(): Promise<void> {
    if (this.hasTables()) this.sweep(Date.now());
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

  private refused(now: number, sandbox: string, code: string, authenticated: boolean): void {
    countRefusal(this.ctx.storage.sql, now, { sandbox, code, authenticated });
  }

  /** Whether this object was ever bootstrapped (its tables exist). A read: it creates nothing. */
  private hasTables(): boolean {
    if (!this.tablesReady) {
      this.tablesReady =
        this.ctx.storage.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").toArray().length > 0;
    }
    return this.tablesReady;
  }

  private ensureTables(): void {
    if (this.tablesReady) return;
    const sql = this.ctx.storage.sql;
    sql.exec('CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)');
    sql.exec('CREATE TABLE IF NOT EXISTS jti (jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL)');
    ensureAuditTable(sql);
    ensureRefusalTable(sql);
    this.tablesReady = true;
  }

  private statusReport(sandboxId: string): SandboxStatus {
    const rec = this.sandbox();
    // The last issuance is the newest token_issued audit event: no extra write per token.
    const last = rec
      ? this.ctx.storage.sql
          .exec<{ at: number; cred_ver: string | null }>(
            "SELECT at, cred_ver FROM audit WHERE event = 'token_issued' ORDER BY id DESC LIMIT 1",
          )
          .toArray()[0]
      : undefined;
    const ttl = this.config.timing.agentTokenTtl;
    const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
    return {
      sandbox: sandboxId,
      exists: rec !== undefined,
      revoked: rec?.revokedAt !== undefined,
      bootstrap_kid: rec?.kid,
      bootstrapped_at: iso(rec?.bootstrappedAt),
      revoked_at: iso(rec?.revokedAt),
      agent_key_registered: this.agentKey() !== undefined,
      last_issued_at: iso(last?.at),
      token_expires_at: last ? new Date((Math.floor(last.at / 1000) + ttl) * 1000).toISOString() : undefined,
      credentials_version: last?.cred_ver ?? undefined,
    };
  }

  /** `jwk` passed checkAgentKey in the grant (grant.ts), before anything was stored. */
  private async registerEncKey(jwk: X25519PublicJwk, now: number): Promise<EncKeyRecord> {
    const current = this.agentKey();
    const thumbprint = await calculateJwkThumbprint({ kty: 'OKP', crv: 'X25519', x: jwk.x }, 'sha256');
    this.checkedEncKey = thumbprint;
    if (current?.thumbprint === thumbprint) return current;
    const rec: EncKeyRecord = { jwk: { kty: 'OKP', crv: 'X25519', x: jwk.x }, thumbprint, registeredAt: now };
    this.putMeta('enc_key', rec);
    this.encKey = rec;
    return rec;
  }

  /**
   * The registered agent key, if it can be encrypted to. A key stored before low-order keys were
   * refused could poison every later refresh: it is dropped, and the agent sends its key again
   * when a token comes back without credentials.
   */
  private async usableAgentKey(): Promise<EncKeyRecord | undefined> {
    const k = this.agentKey();
    if (!k || this.checkedEncKey === k.thumbprint) return k;
    try {
      await checkAgentKey(k.jwk);
    } catch {
      this.ctx.storage.sql.exec("DELETE FROM meta WHERE k = 'enc_key'");
      this.encKey = undefined;
      return undefined;
    }
    this.checkedEncKey = k.thumbprint;
    return k;
  }

  private sandbox(): SandboxRecord | undefined {
    if (!this.hasTables()) return undefined;
    if (this.record === null || this.record === undefined) this.record = this.getMeta<SandboxRecord>('sandbox') ?? undefined;
    return this.record;
  }

  private agentKey(): EncKeyRecord | undefined {
    if (!this.hasTables()) return undefined;
    if (this.encKey === null || this.encKey === undefined) this.encKey = this.getMeta<EncKeyRecord>('enc_key') ?? undefined;
    return this.encKey;
  }

  private bootstrapKey(rec: SandboxRecord): Promise<CryptoKey> {
    if (this.verifyKey?.kid !== rec.kid) {
      this.verifyKey = {
        kid: rec.kid,
        key: crypto.subtle.importKey('jwk', rec.publicJwk, { name: 'Ed25519' }, false, ['verify']) as Promise<CryptoKey>,
      };
    }
    return this.verifyKey.key;
  }

  private maybeSweep(now: number): void {
    if (now - this.lastSweep < JTI_SWEEP_INTERVAL_MS) return;
    this.sweep(now);
  }

  private sweep(now: number): void {
    this.lastSweep = now;
    const sql = this.ctx.storage.sql;
    sql.exec('DELETE FROM jti WHERE expires_at <= ?', now);
    const left = sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM jti').one().n;
    if (left > 0) void this.ctx.storage.setAlarm(now + JTI_SWEEP_INTERVAL_MS);
  }

  private getMeta<T>(k: string): T | undefined {
    const rows = this.ctx.storage.sql.exec<{ v: string }>('SELECT v FROM meta WHERE k = ?', k).toArray();
    return rows.length ? (JSON.parse(rows[0]!.v) as T) : undefined;
  }

  private putMeta(k: string, v: unknown): void {
    this.ctx.storage.sql.exec('INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v', k, JSON.stringify(v));
  }
}
