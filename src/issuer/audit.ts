/**
 * The audit log: a bounded SQLite table inside a Durable Object (each SandboxAuthority keeps its
 * sandbox's events; the KeyAuthority keeps deployment-wide admin events).
 *
 * An event holds identifiers only: time, sandbox, event name, outcome, refusal code, kid, jti,
 * credentials version, actor. Never a token, an assertion, a key or a secret value: the types
 * below have no field that could carry one.
 */

import { AUDIT_MAX_LIMIT, type AuditEvent } from '../admin-api.js';

/** Per table. Oldest events are dropped past this: ~1,000 events is days of refreshes for one sandbox. */
export const AUDIT_MAX_EVENTS = 1000;
/** Trimming runs every this many inserts, so an insert stays one statement in the common case. */
const TRIM_EVERY = 50;
export type AuditInput = Omit<AuditEvent, 'at'>;

/** Inserts per table since its object started; trimming runs on every TRIM_EVERY-th. */
const inserts = new WeakMap<SqlStorage, number>();

export function ensureAuditTable(sql: SqlStorage): void {
  sql.exec(`CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    sandbox TEXT, event TEXT NOT NULL, outcome TEXT NOT NULL,
    code TEXT, kid TEXT, jti TEXT, cred_ver TEXT, actor TEXT)`);
}

export function appendAudit(sql: SqlStorage, now: number, e: AuditInput, max = AUDIT_MAX_EVENTS): void {
  const cursor = sql.exec(
      'INSERT INTO audit (at, sandbox, event, outcome, code, kid, jti, cred_ver, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      now,
      e.sandbox ?? null,
      e.event,
      e.outcome,
      e.code ?? null,
      e.kid ?? null,
      e.jti ?? null,
      e.cred_ver ?? null,
      e.actor ?? null,
    );
  void cursor.rowsWritten; // run the statement to completion
  // Trim on every TRIM_EVERY-th insert (a counter, not a query per insert).
  const n = (inserts.get(sql) ?? 0) + 1;
  inserts.set(sql, n);
  if (n % TRIM_EVERY === 0) {
    const top = sql.exec<{ id: number }>('SELECT MAX(id) AS id FROM audit').one().id;
    sql.exec('DELETE FROM audit WHERE id <= ?', top - max);
  }
}

type Row = { at: number; sandbox: string | null; event: string; outcome: string; code: string | null; kid: string | null; jti: string | null; cred_ver: string | null; actor: string | null };

/** Newest first. */
export function readAudit(sql: SqlStorage, limit: number): AuditEvent[] {
  const rows = sql.exec<Row>('SELECT at, sandbox, event, outcome, code, kid, jti, cred_ver, actor FROM audit ORDER BY id DESC LIMIT ?', Math.min(limit, AUDIT_MAX_LIMIT)).toArray();
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
