/**
 * What each command does: one admin call (two for `status`), then the API's body for --json or
 * a screen for people. Arguments are checked here before anything is sent.
 */
import { open, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import {
  AUDIT_MAX_LIMIT,
  checkBootstrapFile,
  type KeyListing,
  KID,
  SANDBOX_ID,
  SANDBOX_PAGE_MAX,
  type SandboxListing,
} from '../src/admin-api.js';
import type { IssuerClient } from './client.js';
import { CliError, EXIT, oneLine, usageError } from './errors.js';
import {
  auditTable,
  deliveriesText,
  keyTable,
  refusalTable,
  sandboxDetail,
  sandboxTable,
  scheduleLine,
  shortKid,
  statusScreen,
} from './format.js';
import { inspectionLines, inspectToken } from './inspect.js';
import type { GlobalOptions } from './options.js';

/** The process around a command: output, terminal, stdin, clock and working directory. */
export interface Io {
  out(line: string): void;
  err(line: string): void;
  /** Whether stdout is a terminal. */
  isTTY: boolean;
  readStdin(): Promise<string>;
  now(): number;
  cwd: string;
}

export interface Context {
  globals: GlobalOptions;
  client: IssuerClient;
  io: Io;
}

export type Flags = { force?: boolean; out?: string; sandbox?: string; limit?: string; cursor?: string };

function json(ctx: Context, value: unknown): void {
  ctx.io.out(JSON.stringify(value, null, 2));
}

function sandboxArg(raw: string | undefined): string {
  if (raw === undefined || !SANDBOX_ID.test(raw)) {
    throw usageError('a sandbox id is 1 to 63 lowercase letters, digits or hyphens, starting with a letter or digit');
  }
  return raw;
}

export async function status(ctx: Context): Promise<void> {
  const [keys, list] = await Promise.all([ctx.client.call('listKeys'), ctx.client.call('listSandboxes')]);
  if (ctx.globals.json) {
    json(ctx, { issuer: ctx.globals.issuerText, keys, sandboxes: list.sandboxes, sandboxes_total: list.total });
    return;
  }
  for (const l of statusScreen(ctx.globals.issuerText, keys, list.sandboxes, ctx.io.now())) ctx.io.out(l);
  for (const l of pageNote(list)) ctx.io.out(l);
}

function printListing(ctx: Context, listing: KeyListing, headline?: string): void {
  if (ctx.globals.json) {
    json(ctx, listing);
    return;
  }
  const now = ctx.io.now();
  if (headline) ctx.io.out(headline);
  for (const l of keyTable(listing, now, { fullKid: true })) ctx.io.out(l);
  ctx.io.out(`rotation: ${oneLine(scheduleLine(listing, now))}`);
}

export async function keysList(ctx: Context): Promise<void> {
  printListing(ctx, await ctx.client.call('listKeys'));
}

export async function keysRotate(ctx: Context, flags: Flags): Promise<void> {
  const listing = await ctx.client.call('rotateKeys', {}, new URLSearchParams({ force: String(flags.force === true) }));
  const active = listing.keys.find((k) => k.state === 'active');
  printListing(ctx, listing, `rotated${flags.force ? ' (forced)' : ''}: ${shortKid(active?.kid)} is now the active key`);
}

export async function keysRevoke(ctx: Context, kid: string | undefined): Promise<void> {
  if (kid === undefined || !KID.test(kid)) throw usageError('a kid is 43 base64url characters; credctl keys list shows them');
  const listing = await ctx.client.call('revokeKey', { kid });
  printListing(ctx, listing, `revoked ${shortKid(kid)}: it has left the JWKS`);
}

/** Says how much of the registry a page shows, and how to get the rest: a listing never leaves sandboxes out silently. */
function pageNote(list: SandboxListing): string[] {
  if (!list.next_cursor && list.sandboxes.length >= list.total) return [];
  const more = list.next_cursor ? `; next page: credctl sandbox list --cursor ${oneLine(list.next_cursor)}` : '';
  return ['', `${list.sandboxes.length} of ${list.total} sandboxes shown${more}`];
}

export async function sandboxList(ctx: Context, flags: Flags): Promise<void> {
  const q = new URLSearchParams();
  if (flags.limit !== undefined) {
    const n = /^\d{1,4}$/.test(flags.limit) ? Number(flags.limit) : NaN;
    if (!(n >= 1 && n <= SANDBOX_PAGE_MAX)) throw usageError(`--limit: must be a whole number from 1 to ${SANDBOX_PAGE_MAX}`);
    q.set('limit', String(n));
  }
  if (flags.cursor !== undefined) {
    if (!/^[A-Za-z0-9_-]{1,200}$/.test(flags.cursor)) throw usageError('--cursor: must be the next_cursor a previous page printed');
    q.set('cursor', flags.cursor);
  }
  const list = await ctx.client.call('listSandboxes', {}, q);
  if (ctx.globals.json) {
    json(ctx, list);
    return;
  }
  for (const l of sandboxTable(list.sandboxes, ctx.io.now())) ctx.io.out(l);
  for (const l of pageNote(list)) ctx.io.out(l);
}

export async function sandboxStatus(ctx: Context, id: string | undefined): Promise<void> {
  const s = await ctx.client.call('sandboxStatus', { id: sandboxArg(id) });
  if (ctx.globals.json) {
    json(ctx, s);
    return;
  }
  for (const l of sandboxDetail(s, ctx.io.now())) ctx.io.out(l);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * A new bootstrap file. It holds a private key, so it goes to a new file created 0600, or to a
 * stdout that is not a terminal; both are checked before asking, because asking replaces the
 * sandbox's previous key.
 */
export async function sandboxBootstrap(ctx: Context, id: string | undefined, flags: Flags): Promise<void> {
  const sandbox = sandboxArg(id);
  const out = flags.out;
  if (out !== undefined) {
    if (out.trim() === '') throw usageError('--out: must name a file');
    if (await exists(resolve(ctx.io.cwd, out)))
      throw usageError(`${oneLine(out, 200)} exists: not overwritten (a bootstrap file holds a private key); choose a new path`);
  } else if (ctx.io.isTTY) {
    throw usageError(
      'the bootstrap file holds a private key and is not printed on a terminal: use --out FILE or redirect stdout (> boot.json)',
    );
  }
  const file = await ctx.client.call('bootstrap', { id: sandbox });
  // Checked before it is kept: a file the agent would refuse is worth nothing on disk. Kept as answered.
  const check = checkBootstrapFile(file);
  if (!check.ok)
    throw new CliError(
      EXIT.unreachable,
      `the issuer's answer is not a bootstrap file (${check.problem}); nothing was written; check --issuer`,
    );
  const text = `${JSON.stringify(file, null, 2)}\n`;
  if (out === undefined) {
    ctx.io.out(text.trimEnd());
    return;
  }
  const path = resolve(ctx.io.cwd, out);
  try {
    // `wx`: created here or not at all, so a file that appeared meanwhile is never replaced.
    const fh = await open(path, 'wx', 0o600);
    try {
      await fh.writeFile(text);
    } finally {
      await fh.close();
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw usageError(
      `cannot write ${oneLine(out, 200)} (${code}); the sandbox's new key was issued but not saved: run the command again with another --out`,
    );
  }
  const kid = typeof file.key?.kid === 'string' ? file.key.kid : undefined;
  if (ctx.globals.json) {
    json(ctx, { sandbox, kid, file: out });
    return;
  }
  ctx.io.out(
    `sandbox ${sandbox}: bootstrap key ${shortKid(kid)} written to ${oneLine(out, 200)} (mode 0600); the previous bootstrap key no longer works`,
  );
}

export async function sandboxRevoke(ctx: Context, id: string | undefined): Promise<void> {
  const s = await ctx.client.call('revokeSandbox', { id: sandboxArg(id) });
  if (ctx.globals.json) {
    json(ctx, s);
    return;
  }
  ctx.io.out(`sandbox ${oneLine(s.sandbox)} revoked: its bootstrap key and every refresh are refused until a new bootstrap`);
}

export async function sandboxRefresh(ctx: Context, id: string | undefined): Promise<void> {
  const r = await ctx.client.call('refreshSandbox', { id: sandboxArg(id) });
  if (ctx.globals.json) {
    json(ctx, r);
    return;
  }
  ctx.io.out(`sandbox ${oneLine(r.sandbox)}: refresh ${oneLine(r.refresh)}`);
}

export async function gatewayRestart(ctx: Context): Promise<void> {
  const r = await ctx.client.call('restartGateway');
  if (ctx.globals.json) {
    json(ctx, r);
    return;
  }
  ctx.io.out(
    `sandbox ${oneLine(r.sandbox)}: gateway ${r.started ? 'restarted with a new bootstrap key (the previous key is refused from now on)' : 'already running'}`,
  );
}

export async function audit(ctx: Context, flags: Flags): Promise<void> {
  const q = new URLSearchParams();
  if (flags.sandbox !== undefined) q.set('sandbox', sandboxArg(flags.sandbox));
  if (flags.limit !== undefined) {
    const n = /^\d{1,4}$/.test(flags.limit) ? Number(flags.limit) : NaN;
    if (!(n >= 1 && n <= AUDIT_MAX_LIMIT)) throw usageError(`--limit: must be a whole number from 1 to ${AUDIT_MAX_LIMIT}`);
    q.set('limit', String(n));
  }
  const body = await ctx.client.call('audit', {}, q);
  if (ctx.globals.json) {
    json(ctx, body);
    return;
  }
  for (const l of auditTable(body.events)) ctx.io.out(l);
  if (body.sandboxes && body.sandboxes.included < body.sandboxes.total) {
    ctx.io.out('');
    ctx.io.out(
      `events of ${body.sandboxes.included} of ${body.sandboxes.total} sandboxes read (the Worker's own first, then the newest); credctl audit --sandbox ID reads any other`,
    );
  }
  // Refusals are counted per rule per minute (README, audit); shown after the events they cannot displace.
  if ((body.refusals ?? []).length > 0) {
    ctx.io.out('');
    ctx.io.out('refusals, counted per rule per minute');
    for (const l of refusalTable(body.refusals)) ctx.io.out(l);
  }
  // Which entries are egress-delivered (the deployment's config), to read egress refusals against.
  const deliveries = deliveriesText(body.credentials);
  if (deliveries !== undefined) {
    ctx.io.out('');
    ctx.io.out(`credentials  ${deliveries}`);
  }
}

export async function tokenInspect(ctx: Context, arg: string | undefined): Promise<void> {
  if (arg === undefined) throw usageError('token inspect needs the token, or - to read it from stdin');
  const input = arg === '-' ? await ctx.io.readStdin() : arg;
  const now = ctx.io.now();
  const r = await inspectToken(input, ctx.client, now);
  if (ctx.globals.json) json(ctx, r);
  else for (const l of inspectionLines(r, ctx.globals.issuerText, now)) ctx.io.out(l);
  if (!r.valid) throw new CliError(EXIT.invalid, `the token does not verify (${r.reason}: ${r.reason_description})`);
}
