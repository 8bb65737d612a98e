/**
 * The audit log: a bounded SQLite table inside a Durable Object (each SandboxAuthority keeps its
 * sandbox's events; the KeyAuthority keeps deployment-wide admin events).
 *
 * An event holds identifiers only: time, sandbox, event name, outcome, refusal code, kid, jti,
 * credentials version, actor. Never a token, an assertion, a key or a secret value: the types
 * below have no field that could carry one.
 */

import { AUDIT_MAX_LIMIT, type AuditEvent, type RefusalCount } from '../admin-api.js';

/**
 * Per table. Oldest events are dropped past this: ~1,000 events is days of refreshes for one
 * sandbox. Only authenticated events go here (issuances, admin actions): refusals are counted in
 * `refusals` instead, so no unauthenticated request can push an event out.
 */
export const AUDIT_MAX_EVENTS = 1000;
/**
 * Trimming runs when the new row's id is a multiple of this, so an insert stays one statement in
 * the common case. The row id persists, so the bound (AUDIT_MAX_EVENTS + TRIM_EVERY - 1 rows)
 * holds across restarts of the object; an in-memory counter restarted at 0 and let it drift.
 */
export const TRIM_EVERY = 50;
/**
 * Refusal counters, one row per (minute, rule, authenticated), kept newest first. A flood of any
 * size adds at most one row per rule per minute; 1,000 rows is at least 40 hours of refusals at
 * the usual one or two rules a minute, and never less than the last hour even if every rule
 * fired every minute.
 */
export const REFUSAL_MAX_ROWS = 1000;
/** Refusals are counted per this period (docs/architecture.md, "Audit tables": counts per rule per minute). */
export const REFUSAL_BUCKET_MS = 60_000;
export type AuditInput = Omit<AuditEvent, 'at'>;

export function ensureAuditTable(sql: SqlStorage): void {
  sql.exec(`CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    sandbox TEXT, event TEXT NOT NULL, outcome TEXT NOT NULL,
    code TEXT, kid TEXT, jti TEXT, cred_ver TEXT, actor TEXT)`);
}

export function ensureRefusalTable(sql: SqlStorage): void {
  sql.exec(`CREATE TABLE IF NOT EXISTS refusals (
    minute INTEGER NOT NULL, sandbox TEXT NOT NULL, code TEXT NOT NULL, authenticated INTEGER NOT NULL,
    count INTEGER NOT NULL, last_at INTEGER NOT NULL,
    PRIMARY KEY (minute, sandbox, code, authenticated))`);
}

/**
 * Counts one refusal. `authenticated`: the assertion's signature verified under the sandbox's
 * key (a misbehaving agent, or a replayed copy), as opposed to junk anyone can send.
 */
export function countRefusal(
  sql: SqlStorage,
  now: number,
  r: { sandbox: string; code: string; authenticated: boolean },
  max = REFUSAL_MAX_ROWS,
): void {
  const minute = now - (now % REFUSAL_BUCKET_MS);
  const { count } = sql
    .exec<{ count: number }>(
      `INSERT INTO refusals (minute, sandbox, code, authenticated, count, last_at) VALUES (?, ?, ?, ?, 1, ?)
       ON CONFLICT (minute, sandbox, code, authenticated) DO UPDATE SET count = count + 1, last_at = excluded.last_at
       RETURNING count`,
      minute,
      r.sandbox,
      r.code,
      r.authenticated ? 1 : 0,
      now,
    )
    .one();
  // A new row (count 1) is at most one per rule per minute: the only time the bound can be passed.
  if (count === 1) {
    sql.exec('DELETE FROM refusals WHERE rowid IN (SELECT rowid FROM refusals ORDER BY minute DESC, last_at DESC LIMIT -1 OFFSET ?)', max);
  }
}

type RefusalRow = { minute: number; sandbox: string; code: string; authenticated: number; count: number; last_at: number };

/** Newest minute first. */
export function readRefusals(sql: SqlStorage, limit: number): RefusalCount[] {
  return sql
    .exec<RefusalRow>(
      'SELECT minute, sandbox, code, authenticated, count, last_at FROM refusals ORDER BY minute DESC, last_at DESC LIMIT ?',
      Math.min(limit, AUDIT_MAX_LIMIT),
    )
    .toArray()
    .map((r) => ({
      minute: new Date(r.minute).toISOString(),
      last_at: new Date(r.last_at).toISOString(),
      sandbox: r.sandbox,
      code: r.code,
      authenticated: r.authenticated === 1,
      count: r.count,
    }));
}

export function appendAudit(sql: SqlStorage, now: number, e: AuditInput, max = AUDIT_MAX_EVENTS): void {
  const { id } = sql
    .exec<{ id: number }>(
      'INSERT INTO audit (at, sandbox, event, outcome, code, kid, jti, cred_ver, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id',
      now,
      e.sandbox ?? null,
      e.event,
      e.outcome,
      e.code ?? null,
      e.kid ?? null,
      e.jti ?? null,
      e.cred_ver ?? null,
      e.actor ?? null,
    )
    .one();
  if (id % TRIM_EVERY === 0) sql.exec('DELETE FROM audit WHERE id <= ?', id - max);
}

type Row = {
  at: number;
  sandbox: string | null;
  event: string;
  outcome: string;
  code: string | null;
  kid: string | null;
  jti: string | null;
  cred_ver: string | null;
  actor: string | null;
};

/** Newest first. */
export function readAudit(sql: SqlStorage, limit: number): AuditEvent[] {
  const rows = sql
    .exec<Row>(
      'SELECT at, sandbox, event, outcome, code, kid, jti, cred_ver, actor FROM audit ORDER BY id DESC LIMIT ?',
      Math.min(limit, AUDIT_MAX_LIMIT),
    )
    .toArray();
  return rows.map((r) => {
    const e: AuditEvent = { at: new Date(r.at).toISOString(), event: r.event, outcome: r.outcome as AuditEvent['outcome'] };
    if (r.sandbox !== null) e.sandbox = r.sandbox;
    if (r.code !== null) e.code = r.code;
    if (r.kid !== null) e.kid = r.kid;
    if (r.jti !== null) e.jti = r.jti;
    if (r.cred_ver !== null) e.cred_ver = r.cred_ver;
    if (r.actor !== null) e.actor = r.actor;
    return e;
  });
}
