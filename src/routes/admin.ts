/**
 * Operator API, /api/admin/* (DESIGN §4). Every route is behind authenticateAdmin.
 */
import { Hono } from 'hono';
import { authenticateAdmin } from '../admin-auth.js';
import type { AppEnv } from '../app.js';
import { IssuerError } from '../issuer/errors.js';
import { unwrap } from '../issuer/result.js';
import { log } from '../log.js';

/** A kid is an RFC 7638 SHA-256 thumbprint: 32 bytes, base64url without padding. */
const KID = /^[A-Za-z0-9_-]{43}$/;
/** Admin requests carry at most a tiny JSON object. */
export const ADMIN_BODY_LIMIT_BYTES = 1024;

/** Reads an optional JSON object body; empty is `{}`. */
async function optionalJsonObject(req: Request): Promise<Record<string, unknown>> {
  const declared = Number(req.headers.get('Content-Length') ?? '0');
  if (declared > ADMIN_BODY_LIMIT_BYTES) throw new IssuerError('payload_too_large', `the body must be at most ${ADMIN_BODY_LIMIT_BYTES} bytes`);
  const text = await req.text();
  if (text.length > ADMIN_BODY_LIMIT_BYTES) throw new IssuerError('payload_too_large', `the body must be at most ${ADMIN_BODY_LIMIT_BYTES} bytes`);
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new IssuerError('invalid_request', 'the body is not valid JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new IssuerError('invalid_request', 'the body must be a JSON object');
  return parsed as Record<string, unknown>;
}

function parseForce(query: string | undefined, body: Record<string, unknown>): boolean {
  for (const key of Object.keys(body)) if (key !== 'force') throw new IssuerError('invalid_request', `unknown field "${key.slice(0, 40)}"; only "force" is allowed`);
  if (body.force !== undefined && typeof body.force !== 'boolean') throw new IssuerError('invalid_request', '"force" must be a boolean');
  if (query !== undefined && query !== 'true' && query !== 'false') throw new IssuerError('invalid_request', 'force must be "true" or "false"');
  return query === 'true' || body.force === true;
}

export const admin = new Hono<AppEnv>()
  .use('*', async (c, next) => {
    const who = await authenticateAdmin(c.req.raw, c.var.config);
    c.set('admin', who);
    await next();
  })
  .get('/keys', async (c) => c.json(await unwrap(c.var.keyAuthority().list())))
  .post('/keys/rotate', async (c) => {
    const force = parseForce(c.req.query('force'), await optionalJsonObject(c.req.raw));
    const listing = await unwrap(c.var.keyAuthority().rotate(force));
    c.var.jwks.invalidate();
    log('info', 'admin_keys_rotate', { by: c.var.admin.subject, force });
    return c.json(listing);
  })
  .post('/keys/:kid/revoke', async (c) => {
    const kid = c.req.param('kid');
    if (!KID.test(kid)) throw new IssuerError('invalid_kid', 'a kid is 43 base64url characters (an RFC 7638 SHA-256 thumbprint)');
    await optionalJsonObject(c.req.raw);
    const listing = await unwrap(c.var.keyAuthority().revoke(kid));
    c.var.jwks.invalidate();
    log('warn', 'admin_key_revoke', { by: c.var.admin.subject, kid });
    return c.json(listing);
  });
