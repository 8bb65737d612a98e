/**
 * Operator API, /api/admin/* (docs/architecture.md, "Admin API"). Every route is behind authenticateAdmin.
 */
import { Hono } from 'hono';
import {
  AUDIT_MAX_LIMIT,
  type AuditListing,
  KID,
  SANDBOX_ID,
  SANDBOX_PAGE_MAX,
  type SandboxListing,
  type SandboxStatus,
} from '../admin-api.js';
import { authenticateAdmin, checkStateChange } from '../admin-auth.js';
import type { AppEnv, Services } from '../app-env.js';
import { readBodyLimited } from '../http.js';
import { deliveryOf } from '../issuer/credentials.js';
import { IssuerError } from '../issuer/errors.js';
import { decodeCursor, encodeCursor } from '../issuer/registry.js';
import { unwrap } from '../issuer/result.js';
import { log } from '../log.js';
import { forgetEgressState } from '../sandbox/egress-deps.js';
import { pushRefresh, restartGateway } from '../sandbox/gateway.js';
import { issueBootstrapFile, sandboxOrRefuse } from './sandbox-ops.js';
import { NO_STORE } from './token.js';

/** Admin requests carry at most a tiny JSON object. */
const ADMIN_BODY_LIMIT_BYTES = 1024;

/** Reads an optional JSON object body; empty is `{}`. */
async function optionalJsonObject(req: Request): Promise<Record<string, unknown>> {
  const text = await readBodyLimited(req, ADMIN_BODY_LIMIT_BYTES);
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new IssuerError('invalid_request', 'the body is not valid JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new IssuerError('invalid_request', 'the body must be a JSON object');
  return parsed as Record<string, unknown>;
}

function parseForce(query: string | undefined, body: Record<string, unknown>): boolean {
  for (const key of Object.keys(body))
    if (key !== 'force') throw new IssuerError('invalid_request', `unknown field "${key.slice(0, 40)}"; only "force" is allowed`);
  if (body.force !== undefined && typeof body.force !== 'boolean') throw new IssuerError('invalid_request', '"force" must be a boolean');
  if (query !== undefined && query !== 'true' && query !== 'false')
    throw new IssuerError('invalid_request', 'force must be "true" or "false"');
  return query === 'true' || body.force === true;
}

/**
 * A sandbox's status with how CREDENTIALS delivers each entry (the deployment's config, the same
 * for every sandbox): names, kinds and egress hosts, never a value or a sentinel.
 */
function withDeliveries(s: Services, status: SandboxStatus): SandboxStatus {
  return { ...status, credentials: s.config.credentials.map(deliveryOf) };
}

function sandboxId(raw: string): string {
  if (!SANDBOX_ID.test(raw))
    throw new IssuerError(
      'invalid_request',
      'a sandbox id is 1 to 63 lowercase letters, digits or hyphens, starting with a letter or digit',
    );
  return raw;
}

/** A bootstrapped sandbox's id, or 404: an unknown id's authority is never addressed (registry.ts). */
async function knownSandbox(s: Services, raw: string): Promise<string> {
  const id = sandboxId(raw);
  if (!(await s.registry.isKnown(id))) throw new IssuerError('not_found', 'no such sandbox', { sandbox: id });
  return id;
}

/** Default number of audit events returned. */
const AUDIT_DEFAULT_LIMIT = 50;
/** Sandboxes listed per page by default: each is one Durable Object call. */
const SANDBOX_LIST_DEFAULT = 100;
/**
 * Sandboxes whose logs the merged audit view reads (the Worker's own first, then the newest):
 * each is one Durable Object call per request. The answer says how many of how many it read;
 * `?sandbox=` reads any one of them.
 */
const AUDIT_MERGE_MAX_SANDBOXES = 100;

function parseLimit(raw: string | undefined, fallback = AUDIT_DEFAULT_LIMIT, max = AUDIT_MAX_LIMIT): number {
  if (raw === undefined) return fallback;
  if (!/^\d{1,4}$/.test(raw) || Number(raw) < 1 || Number(raw) > max) {
    throw new IssuerError('invalid_request', `limit must be a whole number from 1 to ${max}`);
  }
  return Number(raw);
}

export const admin = new Hono<AppEnv>()
  .use('*', async (c, next) => {
    checkStateChange(c.req.raw, c.var.services.config);
    const who = await authenticateAdmin(c.req.raw, c.var.services.config);
    c.set('admin', who);
    await next();
  })
  .get('/keys', async (c) => c.json(await unwrap(c.var.services.keyAuthority().list())))
  .post('/keys/rotate', async (c) => {
    const force = parseForce(c.req.query('force'), await optionalJsonObject(c.req.raw));
    const listing = await unwrap(c.var.services.keyAuthority().rotate(force, c.var.admin.subject));
    c.var.services.jwks.invalidate();
    c.var.services.signingKey.invalidate();
    log('info', 'admin_keys_rotate', { by: c.var.admin.subject, force });
    return c.json(listing);
  })
  .post('/keys/:kid/revoke', async (c) => {
    const kid = c.req.param('kid');
    if (!KID.test(kid)) throw new IssuerError('invalid_kid', 'a kid is 43 base64url characters (an RFC 7638 SHA-256 thumbprint)');
    await optionalJsonObject(c.req.raw);
    const listing = await unwrap(c.var.services.keyAuthority().revoke(kid, c.var.admin.subject));
    c.var.services.jwks.invalidate();
    c.var.services.signingKey.invalidate();
    log('warn', 'admin_key_revoke', { by: c.var.admin.subject, kid });
    return c.json(listing);
  })
  .post('/sandboxes/:id/bootstrap', async (c) => {
    const id = sandboxId(c.req.param('id'));
    await optionalJsonObject(c.req.raw);
    // The bootstrap file (docs/architecture.md, "Bootstrap file"), returned once: only the public half is kept.
    const file = await issueBootstrapFile(c.var.services, id, c.var.admin.subject);
    forgetEgressState(c.env, id);
    return c.json(file, 200, NO_STORE);
  })
  .post('/sandboxes/:id/refresh', async (c) => {
    const id = sandboxId(c.req.param('id'));
    await pushRefresh(sandboxOrRefuse(c.var.services, id));
    log('info', 'admin_sandbox_refresh', { by: c.var.admin.subject, sandbox: id });
    return c.json({ sandbox: id, refresh: 'requested' });
  })
  .post('/gateway/restart', async (c) => {
    const id = c.var.services.config.gateway.sandboxId;
    await optionalJsonObject(c.req.raw);
    const out = await restartGateway(sandboxOrRefuse(c.var.services, id), c.var.services.config, () =>
      issueBootstrapFile(c.var.services, id, c.var.admin.subject),
    );
    forgetEgressState(c.env, id);
    log('warn', 'admin_gateway_restart', { by: c.var.admin.subject, sandbox: id });
    return c.json({ sandbox: id, ...out });
  })
  .delete('/sandboxes/:id', async (c) => {
    const id = await knownSandbox(c.var.services, c.req.param('id'));
    const status = await unwrap(c.var.services.sandboxAuthority(id).revoke(id, c.var.admin.subject));
    forgetEgressState(c.env, id);
    log('warn', 'admin_sandbox_revoke', { by: c.var.admin.subject, sandbox: id });
    return c.json(withDeliveries(c.var.services, status));
  })
  .get('/sandboxes/:id', async (c) => {
    const id = await knownSandbox(c.var.services, c.req.param('id'));
    const status = await c.var.services.sandboxAuthority(id).status(id);
    if (!status.exists) throw new IssuerError('not_found', 'no such sandbox', { sandbox: id });
    return c.json(withDeliveries(c.var.services, status));
  })
  .get('/sandboxes', async (c) => {
    const limit = parseLimit(c.req.query('limit'), SANDBOX_LIST_DEFAULT, SANDBOX_PAGE_MAX);
    const raw = c.req.query('cursor');
    const cursor = raw === undefined ? undefined : decodeCursor(raw, SANDBOX_ID);
    if (raw !== undefined && !cursor) throw new IssuerError('invalid_request', 'cursor is not a next_cursor this API gave');
    const page = await c.var.services.keyAuthority().sandboxPage(limit, cursor, c.var.services.config.gateway.sandboxId);
    const sandboxes = await Promise.all(
      page.ids.map(async (id) => withDeliveries(c.var.services, await c.var.services.sandboxAuthority(id).status(id))),
    );
    const listing: SandboxListing = { sandboxes, total: page.total };
    if (page.next) listing.next_cursor = encodeCursor(page.next);
    return c.json(listing);
  })
  .get('/audit', async (c) => {
    const limit = parseLimit(c.req.query('limit'));
    const only = c.req.query('sandbox');
    let listing: AuditListing;
    if (only !== undefined) {
      const id = sandboxId(only);
      // A never-bootstrapped id has no events; its authority is not addressed (registry.ts).
      listing = (await c.var.services.registry.isKnown(id))
        ? await c.var.services.sandboxAuthority(id).auditLog(limit)
        : { events: [], refusals: [] };
    } else {
      // Deployment events plus the sandboxes' (the Worker's own first, then the newest), merged
      // newest first; the answer says how many sandboxes it read. Each kind has its own limit,
      // so refusal counts never crowd authenticated events out of the answer.
      const page = await c.var.services
        .keyAuthority()
        .sandboxPage(AUDIT_MERGE_MAX_SANDBOXES, undefined, c.var.services.config.gateway.sandboxId);
      const ids = page.ids;
      const [deployment, ...perSandbox] = await Promise.all([
        c.var.services.keyAuthority().auditLog(limit),
        ...ids.map((id) => c.var.services.sandboxAuthority(id).auditLog(limit)),
      ]);
      const newestFirst =
        <T>(at: (x: T) => string) =>
        (a: T, b: T) =>
          at(a) < at(b) ? 1 : at(a) > at(b) ? -1 : 0;
      listing = {
        events: [...deployment!, ...perSandbox.flatMap((l) => l.events)].sort(newestFirst((e) => e.at)).slice(0, limit),
        refusals: perSandbox
          .flatMap((l) => l.refusals)
          .sort(newestFirst((r) => r.last_at))
          .slice(0, limit),
        sandboxes: { included: ids.length, total: page.total },
      };
    }
    // Which entries are egress-delivered, so `egress:<rule>` refusals read against the config.
    return c.json({ ...listing, credentials: c.var.services.config.credentials.map(deliveryOf) });
  });
