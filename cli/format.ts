/**
 * Human output: durations, relative times, aligned tables, and the key timeline. Pure functions
 * of the API's answers and `now`, so every screen is reproducible in a test. Text that came from
 * the issuer goes through oneLine before it reaches a terminal.
 */
import type { AuditEvent, CredentialDelivery, KeyListing, KeyView, RefusalCount, SandboxStatus } from '../src/admin-api.js';
import { oneLine } from './errors.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** Characters of a kid shown where the full 43 would crowd the screen; enough to tell keys apart. */
const SHORT_KID = 12;
/** Columns of the timeline's bars. */
const TIMELINE_WIDTH = 48;
/** The timeline runs this much past its last event, so what follows the event shows too. */
const TIMELINE_TAIL = 0.15;
/** Removed keys `status` lists before it just counts them. */
const STATUS_REMOVED_SHOWN = 0;

/** 45s, 12m, 3h 5m, 2d 4h: two units at most, rounded down. */
export function duration(ms: number): string {
  const a = Math.abs(ms);
  if (a < MINUTE) return `${Math.floor(a / SECOND)}s`;
  if (a < HOUR) return `${Math.floor(a / MINUTE)}m`;
  if (a < DAY) {
    const h = Math.floor(a / HOUR);
    const m = Math.floor((a % HOUR) / MINUTE);
    return m ? `${h}h ${m}m` : `${h}h`;
  }
  const d = Math.floor(a / DAY);
  const h = Math.floor((a % DAY) / HOUR);
  return h ? `${d}d ${h}h` : `${d}d`;
}

/** "in 5m", "5m ago", "now". */
export function relative(at: number, now: number): string {
  const d = at - now;
  if (Math.abs(d) < SECOND) return 'now';
  return d > 0 ? `in ${duration(d)}` : `${duration(d)} ago`;
}

/** ISO 8601 to the second, UTC. */
function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** "2026-05-01T12:00:00Z (in 5m)"; a missing or unreadable time is "-". */
export function when(iso: string | undefined, now: number): string {
  const t = iso === undefined ? NaN : Date.parse(iso);
  return Number.isFinite(t) ? `${isoSeconds(t)} (${relative(t, now)})` : '-';
}

function rel(iso: string | undefined, now: number): string {
  const t = iso === undefined ? NaN : Date.parse(iso);
  return Number.isFinite(t) ? relative(t, now) : '-';
}

export function shortKid(kid: string | undefined): string {
  if (!kid) return '-';
  return kid.length > SHORT_KID ? kid.slice(0, SHORT_KID) : kid;
}

/** Columns padded to their widest cell; the last column is not padded. */
function table(headers: string[], rows: string[][], indent = '  '): string[] {
  const cells = [headers, ...rows.map((r) => r.map((c) => oneLine(c)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map(
    (r) =>
      indent +
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
  );
}

function keyWindow(k: KeyView, now: number, nextRotation: string): string {
  switch (k.state) {
    case 'active':
      return `signing since ${rel(k.activated_at ?? k.created_at, now)}; retires at the next rotation (${rel(nextRotation, now)})`;
    case 'next':
      return `published, not signing; signs from the next rotation (${rel(nextRotation, now)})`;
    case 'retiring':
      return `stopped signing ${rel(k.retired_at, now)}; leaves the JWKS ${rel(k.remove_at, now)}`;
    case 'removed':
      return `left the JWKS ${rel(k.removed_at, now)}${k.removed_reason ? ` (${k.removed_reason})` : ''}`;
    default:
      return '-';
  }
}

/** The key table: state, kid (full or short), age, and what the key does when. */
export function keyTable(listing: KeyListing, now: number, opts: { fullKid: boolean; removedShown?: number }): string[] {
  const removed = listing.keys.filter((k) => k.state === 'removed');
  const shownRemoved = removed.slice(0, opts.removedShown ?? removed.length);
  const keys = [...listing.keys.filter((k) => k.state !== 'removed'), ...shownRemoved];
  const rows = keys.map((k) => [
    k.state,
    opts.fullKid ? k.kid : shortKid(k.kid),
    duration(now - Date.parse(k.created_at)),
    keyWindow(k, now, listing.schedule.next_rotation_at),
  ]);
  const out = table(['STATE', 'KID', 'AGE', 'WINDOW'], rows);
  const hidden = removed.length - shownRemoved.length;
  if (hidden > 0) out.push(`  (${hidden} removed key${hidden === 1 ? '' : 's'} not shown: credctl keys list)`);
  return out;
}

export function scheduleLine(listing: KeyListing, now: number): string {
  const s = listing.schedule;
  const earliest = Date.parse(s.earliest_manual_rotation_at);
  const manual = !Number.isFinite(earliest)
    ? 'no manual rotation possible (no next key)'
    : earliest <= now
      ? 'a manual rotation is possible now'
      : `a manual rotation is possible ${relative(earliest, now)} (or with --force)`;
  return `every ${duration(s.rotation_period_seconds * SECOND)}; next ${when(s.next_rotation_at, now)}; ${manual}`;
}

/**
 * The published keys on one time axis, from now to a little past the last scheduled change:
 *
 *             now                       rotation in 23h 59m
 *   active    =========================|-------
 *   next      -------------------------|=======
 *   retiring  ------x
 *
 * `=` signs, `-` published (verifies only), `|` the scheduled rotation, `x` leaves the JWKS.
 * After the rotation the active key retires; it stays published for the retention the issuer
 * applied to the current retiring key, when there is one to measure.
 */
export function timeline(listing: KeyListing, now: number): string[] {
  const rotation = Date.parse(listing.schedule.next_rotation_at);
  if (!Number.isFinite(rotation) || rotation <= now) return [];
  const live = listing.keys.filter((k) => k.state !== 'removed');
  const retiring = live.filter((k) => k.state === 'retiring');
  const removals = retiring.map((k) => Date.parse(k.remove_at ?? '')).filter(Number.isFinite);
  const sample = retiring.find((k) => k.retired_at && k.remove_at);
  const retention = sample ? Date.parse(sample.remove_at!) - Date.parse(sample.retired_at!) : undefined;
  const last = Math.max(rotation, ...removals);
  const end = now + (last - now) * (1 + TIMELINE_TAIL);
  const col = (t: number) => Math.min(TIMELINE_WIDTH - 1, Math.max(0, Math.round(((t - now) / (end - now)) * (TIMELINE_WIDTH - 1))));
  const timeAt = (c: number) => now + (c / (TIMELINE_WIDTH - 1)) * (end - now);
  const rotCol = col(rotation);

  const bar = (k: KeyView): string => {
    let s = '';
    for (let c = 0; c < TIMELINE_WIDTH; c++) {
      const t = timeAt(c);
      if (k.state === 'retiring') {
        const rm = Date.parse(k.remove_at ?? '');
        // At least one column of '-': a removal minutes away still reads as "later", not "now".
        const rmCol = Number.isFinite(rm) ? Math.max(rm > now ? 1 : 0, col(rm)) : TIMELINE_WIDTH;
        s += c < rmCol ? '-' : c === rmCol ? 'x' : ' ';
      } else if (c === rotCol) {
        s += '|';
      } else if (k.state === 'active') {
        const gone = retention !== undefined && t > rotation + retention;
        s += t < rotation ? '=' : gone ? ' ' : '-';
      } else {
        s += t < rotation ? '-' : '=';
      }
    }
    return s.trimEnd();
  };

  // "now" over the first column, the rotation's label ending over its '|' (or starting there).
  const label = `rotation ${relative(rotation, now)}`;
  const pad = 10; // the width of "retiring  "
  const start = rotCol + 1 - label.length;
  const axis = start > 'now'.length + 1 ? 'now'.padEnd(start) + label : `${'now'.padEnd(rotCol)}${label}`;
  const lines = [`  ${' '.repeat(pad)}${axis}`];
  for (const k of live) lines.push(`  ${k.state.padEnd(pad)}${bar(k)}`);
  lines.push(`  ${' '.repeat(pad)}= signs  - published, verifies only  | scheduled rotation  x leaves the JWKS`);
  return lines;
}

function sandboxState(s: SandboxStatus): string {
  if (!s.exists) return 'unknown';
  if (s.revoked) return 'revoked';
  return s.last_issued_at ? 'active' : 'bootstrapped';
}

function expiry(iso: string | undefined, now: number): string {
  const t = iso === undefined ? NaN : Date.parse(iso);
  if (!Number.isFinite(t)) return '-';
  return t <= now ? `expired ${duration(now - t)} ago` : `in ${duration(t - now)}`;
}

export function sandboxTable(list: SandboxStatus[], now: number): string[] {
  if (list.length === 0) return ['  (none: credctl sandbox bootstrap <id> creates one)'];
  const rows = list.map((s) => [
    s.sandbox,
    sandboxState(s),
    rel(s.last_issued_at, now),
    expiry(s.token_expires_at, now),
    s.credentials_version ?? '-',
    s.agent_key_registered ? 'yes' : 'no',
    shortKid(s.bootstrap_kid),
  ]);
  return table(['SANDBOX', 'STATE', 'LAST REFRESH', 'TOKEN EXPIRES', 'CREDENTIALS', 'AGENT KEY', 'BOOTSTRAP KID'], rows);
}

/**
 * How one CREDENTIALS entry reaches the sandbox: `GATEWAY_TOKEN derived`, `API_KEY value`,
 * `PROVIDER_API_KEY egress -> api.example.com eu.api.example.com (authorization)`. Names, kinds
 * and hosts only: the admin API never sends a value or a sentinel.
 */
function deliveryText(d: CredentialDelivery): string {
  const name = oneLine(String(d.name), 64);
  if (d.delivery !== 'egress') return `${name} ${oneLine(String(d.delivery), 20)}`;
  const hosts = Array.isArray(d.hosts) && d.hosts.length > 0 ? d.hosts.map((h) => oneLine(String(h), 253)).join(' ') : '?';
  return `${name} egress -> ${hosts}${d.header ? ` (${oneLine(String(d.header), 40)})` : ''}`;
}

/** Every entry, comma-separated; `undefined` when the issuer did not say (an older Worker). */
export function deliveriesText(list: CredentialDelivery[] | undefined): string | undefined {
  if (!Array.isArray(list)) return undefined;
  return list.length === 0 ? '(none: CREDENTIALS is empty)' : list.map(deliveryText).join(', ');
}

/** One sandbox, one field a line. */
export function sandboxDetail(s: SandboxStatus, now: number): string[] {
  const deliveries = deliveriesText(s.credentials);
  return (
    [
      `sandbox           ${s.sandbox}`,
      `state             ${sandboxState(s)}${s.revoked ? ` (revoked ${rel(s.revoked_at, now)})` : ''}`,
      `bootstrap kid     ${s.bootstrap_kid ?? '-'}`,
      `bootstrapped      ${when(s.bootstrapped_at, now)}`,
      `agent key         ${s.agent_key_registered ? 'registered' : 'not registered'}`,
      `last refresh      ${when(s.last_issued_at, now)}`,
      `token expires     ${when(s.token_expires_at, now)}`,
      `credentials       ${s.credentials_version ?? '-'}`,
    ]
      .map((l) => oneLine(l))
      // Each piece is already one line (deliveryText); the whole is not cut at oneLine's bound.
      .concat(deliveries === undefined ? [] : [`delivery          ${deliveries}`])
  );
}

/** An `egress:<rule>` code is the outbound handler's refusal of a sentinel, not a token request's. */
const EGRESS_CODE_PREFIX = 'egress:';

/** A refusal or event code as shown: `egress:host_not_bound` reads `egress refused: host_not_bound`. */
function codeLabel(code: string | undefined): string {
  if (code === undefined) return '-';
  return code.startsWith(EGRESS_CODE_PREFIX) ? `egress refused: ${code.slice(EGRESS_CODE_PREFIX.length)}` : code;
}

export function auditTable(events: AuditEvent[]): string[] {
  if (events.length === 0) return ['  (no events)'];
  const rows = events.map((e) => {
    const t = Date.parse(e.at);
    return [
      Number.isFinite(t) ? isoSeconds(t) : e.at,
      e.sandbox ?? '-',
      e.event,
      e.outcome,
      codeLabel(e.code),
      shortKid(e.kid),
      e.cred_ver ?? '-',
      e.actor ?? '-',
    ];
  });
  return table(['TIME', 'SANDBOX', 'EVENT', 'OUTCOME', 'CODE', 'KID', 'CREDENTIALS', 'ACTOR'], rows, '');
}

/**
 * Refusal counters: SIGNED says whether the refused assertion (or, for an egress refusal, the
 * sentinel) verified under the issuer's keys. Egress refusals (`egress:<rule>`) are labelled as
 * such, and a line after the table says what they are.
 */
export function refusalTable(refusals: RefusalCount[]): string[] {
  const rows = refusals.map((r) => {
    const t = Date.parse(r.minute);
    return [Number.isFinite(t) ? isoSeconds(t) : r.minute, r.sandbox, codeLabel(r.code), String(r.count), r.authenticated ? 'yes' : 'no'];
  });
  const out = table(['MINUTE', 'SANDBOX', 'CODE', 'COUNT', 'SIGNED'], rows, '');
  if (refusals.some((r) => typeof r.code === 'string' && r.code.startsWith(EGRESS_CODE_PREFIX))) {
    out.push(
      'egress refused: the outbound handler refused a sentinel in a request from the sandbox to an egress host (the rule after the colon; README, "Egress delivery")',
    );
  }
  return out;
}

/**
 * The `status` screen. The credentials line is the deployment's CREDENTIALS as every sandbox
 * status carries it (the same for all); without a sandbox there is none to read it from.
 */
export function statusScreen(issuer: string, listing: KeyListing, sandboxes: SandboxStatus[], now: number): string[] {
  const deliveries = deliveriesText(sandboxes.find((s) => Array.isArray(s.credentials))?.credentials);
  return [
    `issuer     ${oneLine(issuer)}`,
    `rotation   ${oneLine(scheduleLine(listing, now))}`,
    // Each piece is already one line (deliveryText); the whole is not cut at oneLine's bound.
    ...(deliveries === undefined ? [] : [`credentials  ${deliveries}`]),
    '',
    'signing keys',
    ...keyTable(listing, now, { fullKid: false, removedShown: STATUS_REMOVED_SHOWN }),
    '',
    ...timeline(listing, now),
    '',
    'sandboxes',
    ...sandboxTable(sandboxes, now),
  ];
}
