/**
 * The egress handler: what the Sandbox outbound interception does with a container's request to a
 * host an egress entry of CREDENTIALS is bound to (README, "Egress delivery").
 *
 * A request whose bound header carries a sentinel is checked (the rules of SentinelRule, in
 * order), the sentinel is replaced with the real secret read from the Worker's env at that moment,
 * and the request goes on; the sentinel itself is removed from every header and from the body.
 * Any failed check is `403 egress_refused` naming the rule, a refusal counted for the sandbox, and
 * nothing forwarded. A request without a sentinel goes out unchanged: it carries nothing of ours.
 *
 * Written against EgressDeps (time, keys, sandbox state, env and fetch as parameters) so the same
 * code serves the SDK's outbound handler (index.ts) and the local stack's egress hop (app.ts),
 * and is tested in workerd with a recording fetch. Nothing here imports the Sandbox SDK.
 */
import type { Config } from '../config.js';
import { type CredentialEntry, EGRESS_HEADERS, type EgressHeader, egressEntriesFor } from '../issuer/credentials.js';
import type { EgressState } from '../issuer/sandbox-authority.js';
import { checkSentinel, looksLikeJws, SentinelRefusal, type SentinelRule } from '../issuer/sentinel.js';
import { log } from '../log.js';
import { parseJsonSegment, SENTINEL_TYP, tokenTypeOf } from '../token-profile.js';

export interface EgressDeps {
  config: Config;
  /** Epoch ms. */
  now: () => number;
  /** A Worker secret's value as the env holds it now (so a rotated secret applies to the next request). */
  secretOf: (secretName: string) => string | undefined;
  /** The published signing key with this kid, for Ed25519 verification; undefined when none is published. */
  publicKey: (kid: string) => Promise<CryptoKey | undefined>;
  /** The sandbox's bootstrap key thumbprint and revocation; cached at most EGRESS_STATE_CACHE_MS. */
  sandboxState: (sandboxId: string) => Promise<EgressState | undefined>;
  /** The platform's container id of a sandbox (the Sandbox Durable Object id). */
  containerIdOf: (sandboxId: string) => string;
  /** Counts a refusal for a sandbox (the audit's refusal counters). */
  refuse: (sandboxId: string, rule: SentinelRule, authenticated: boolean) => Promise<void>;
  fetch: (request: Request) => Promise<Response>;
}

/**
 * How long an isolate keeps a sandbox's bootstrap key and revocation. A revoked sandbox's
 * sentinels must be refused within 5 s of the revocation; 4 s leaves a second for the request
 * that finds the entry expired and asks the sandbox's authority again.
 */
export const EGRESS_STATE_CACHE_MS = 4_000;

type EgressDecision =
  | { action: 'pass' }
  | { action: 'substitute'; sandbox: string; substitutions: { header: EgressHeader; sentinel: string; entry: CredentialEntry }[] }
  | { action: 'refuse'; rule: SentinelRule; authenticated: boolean; sandbox?: string };

/** The value in `header` that could be a sentinel: the raw `x-api-key`, or the Bearer credential. */
function presented(request: Request, header: EgressHeader): string | undefined {
  const raw = request.headers.get(header);
  if (raw === null) return undefined;
  const value = header === 'authorization' ? /^Bearer[ ]+(\S+)[ ]*$/i.exec(raw)?.[1] : raw.trim();
  return value !== undefined && looksLikeJws(value) ? value : undefined;
}

/** One segment of a JWS-shaped value as JSON (the token profile's strict reading), unverified; undefined when it is not. */
function peekSegment(token: string, index: number): Record<string, unknown> | undefined {
  try {
    return parseJsonSegment(token.split('.')[index] ?? '', 'segment');
  } catch {
    return undefined;
  }
}

/** The `sub` a JWS-shaped value claims, unverified: only to tell which container sent junk. */
function claimedSub(token: string): string | undefined {
  const sub = peekSegment(token, 1)?.sub;
  return typeof sub === 'string' ? sub : undefined;
}

/**
 * The values to check as sentinels: whatever is JWS-shaped in a header an entry of this host is
 * bound to, and a sentinel (by its typ) in the other egress header, so that one sent in the wrong
 * header is refused rather than forwarded.
 */
function candidates(request: Request, bound: readonly EgressHeader[]): { header: EgressHeader; sentinel: string }[] {
  const out: { header: EgressHeader; sentinel: string }[] = [];
  for (const header of EGRESS_HEADERS) {
    const sentinel = presented(request, header);
    if (sentinel === undefined) continue;
    if (bound.includes(header) || tokenTypeOf(peekSegment(sentinel, 0)?.typ) === SENTINEL_TYP) out.push({ header, sentinel });
  }
  return out;
}

/**
 * Decides what happens to one request, making no change and forwarding nothing. `containerId` is
 * the platform's (ctx.containerId): code in the container cannot choose it.
 */
async function decideEgress(request: Request, containerId: string, deps: EgressDeps): Promise<EgressDecision> {
  const host = new URL(request.url).hostname;
  const bound = egressEntriesFor(deps.config.credentials, host);
  const found = candidates(
    request,
    bound.map((e) => e.egress!.header),
  );
  if (found.length === 0) return { action: 'pass' };

  const substitutions: { header: EgressHeader; sentinel: string; entry: CredentialEntry }[] = [];
  let sandbox: string | undefined;
  for (const { header, sentinel } of found) {
    try {
      const claims = await checkSentinel(sentinel, {
        issuer: deps.config.issuer,
        clockSkewSeconds: deps.config.timing.clockSkew,
        now: deps.now(),
        publicKey: deps.publicKey,
      });
      const refuse = (rule: SentinelRule) => new SentinelRefusal(rule, true, claims.sub);
      if (deps.containerIdOf(claims.sub) !== containerId) throw refuse('wrong_sandbox');
      const state = await deps.sandboxState(claims.sub);
      if (!state || state.jkt !== claims.jkt) throw refuse('stale_bootstrap');
      if (state.revoked) throw refuse('revoked');
      // The entry as configured now: renamed, unbound or moved to another header, it no longer applies.
      const entry = deps.config.credentials.find((e) => e.name === claims.name && e.egress);
      if (!claims.hosts.includes(host) || !entry || !entry.egress!.hosts.includes(host) || entry.egress!.header !== header)
        throw refuse('host_not_bound');
      if (sandbox !== undefined && sandbox !== claims.sub) throw refuse('wrong_sandbox');
      sandbox = claims.sub;
      substitutions.push({ header, sentinel, entry });
    } catch (e) {
      if (!(e instanceof SentinelRefusal)) throw e;
      if (e.authenticated) return { action: 'refuse', rule: e.rule, authenticated: true, sandbox: e.sub };
      // Unverified: counted for the requesting container's own sandbox, when one of the names at
      // hand is it (the platform's container id decides, not the junk).
      const candidates = [claimedSub(sentinel), deps.config.gateway.sandboxId].filter((c): c is string => c !== undefined);
      const requester = candidates.find((c) => safeContainerIdOf(deps, c) === containerId);
      return { action: 'refuse', rule: e.rule, authenticated: false, sandbox: requester };
    }
  }
  return { action: 'substitute', sandbox: sandbox!, substitutions };
}

function safeContainerIdOf(deps: EgressDeps, sandboxId: string): string | undefined {
  try {
    return deps.containerIdOf(sandboxId);
  } catch {
    return undefined; // not a name the namespace takes
  }
}

function egressRefusal(rule: SentinelRule): Response {
  return new Response(JSON.stringify({ error: 'egress_refused', error_description: rule }), {
    status: 403,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
  });
}

/** Decides, then refuses, forwards unchanged, or substitutes and forwards. */
export async function handleEgress(request: Request, containerId: string, deps: EgressDeps): Promise<Response> {
  const host = new URL(request.url).hostname;
  const d = await decideEgress(request, containerId, deps);
  if (d.action === 'pass') return deps.fetch(request);
  if (d.action === 'refuse') {
    // Identifiers only: never the sentinel, never a value.
    log('info', 'egress_refused', { rule: d.rule, host, sandbox: d.sandbox, authenticated: d.authenticated });
    if (d.sandbox !== undefined) await deps.refuse(d.sandbox, d.rule, d.authenticated).catch(() => undefined);
    return egressRefusal(d.rule);
  }
  const headers = new Headers(request.headers);
  const sentinels = d.substitutions.map((s) => s.sentinel);
  // The sentinel goes nowhere: out of every header it appears in, the bound one replaced below.
  for (const [name, value] of [...headers]) if (sentinels.some((s) => value.includes(s))) headers.delete(name);
  for (const s of d.substitutions) {
    const value = deps.secretOf(s.entry.secret);
    if (value === undefined || value === '') throw new Error(`egress: secret ${s.entry.secret} is not set`);
    headers.set(s.header, s.header === 'authorization' ? `Bearer ${value}` : value);
  }
  const body = request.body === null ? null : scrubbed(request.body, sentinels, request.headers.get('content-length'));
  return deps.fetch(new Request(request.url, { method: request.method, headers, body, redirect: 'manual' }));
}

/**
 * The body with every occurrence of a sentinel overwritten by as many `x` bytes, streamed: the
 * length stays what Content-Length says, and at most the longest sentinel's length minus one byte
 * is held back between chunks, so a sentinel split across chunks is found too.
 */
function scrubbed(body: ReadableStream<Uint8Array>, sentinels: string[], contentLength: string | null): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  const needles = sentinels.map((s) => enc.encode(s));
  const keep = Math.max(...needles.map((n) => n.length)) - 1;
  const X = 0x78;
  let tail = new Uint8Array(0);
  const scrub = (buf: Uint8Array) => {
    for (const n of needles) {
      for (let i = buf.indexOf(n[0]!); i >= 0 && i + n.length <= buf.length; i = buf.indexOf(n[0]!, i + 1)) {
        let j = 1;
        while (j < n.length && buf[i + j] === n[j]) j++;
        if (j === n.length) buf.fill(X, i, i + n.length);
      }
    }
  };
  const transform = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      const buf = new Uint8Array(tail.length + chunk.length);
      buf.set(tail);
      buf.set(chunk, tail.length);
      scrub(buf);
      const cut = Math.max(0, buf.length - keep);
      if (cut > 0) controller.enqueue(buf.slice(0, cut));
      tail = buf.slice(cut);
    },
    flush(controller) {
      if (tail.length > 0) controller.enqueue(tail);
    },
  });
  const length = contentLength === null ? NaN : Number(contentLength);
  if (Number.isSafeInteger(length) && length >= 0 && typeof FixedLengthStream === 'function') {
    // Keeps the request's framing (Content-Length, not chunked): providers see what was sent.
    const fixed = new FixedLengthStream(length);
    void body
      .pipeThrough(transform)
      .pipeTo(fixed.writable)
      .catch(() => undefined);
    return fixed.readable;
  }
  return body.pipeThrough(transform);
}
