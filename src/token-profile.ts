/**
 * The issuer's token profile: the one place that says what a token of this project looks like,
 * and the one strict compact-JWS parser every reader goes through. The Worker (client assertions,
 * minting, egress sentinels, discovery), the verifier (and so the Node verifying proxy) and
 * `credctl token inspect` all import it, so a rule cannot differ between them.
 *
 * Pure TypeScript on ECMAScript built-ins (TextDecoder, TextEncoder, JSON): nothing from the
 * Workers runtime or from Node, so it loads in workerd, in Node and in the CLI bundle alike.
 *
 * The parser refuses what jose and JSON.parse would tolerate or silently resolve:
 * - jose decodes base64url with `atob`, which skips whitespace and accepts padding; a segment
 *   here must be canonical base64url (no padding, no other character, zero trailing bits), so one
 *   token has exactly one spelling.
 * - A byte-order mark is refused: a second spelling of the same JSON.
 * - `JSON.parse` keeps the last of two equal member names, other parsers the first: a header or
 *   claims set that repeats a name means different things to different readers.
 * - Header parameters that make a reader fetch or trust key material named by the token (`jku`,
 *   `x5u`, `jwk`, `x5c`, and the `x5t` thumbprints), extensions (`crit`, `b64`) and compression
 *   (`zip`) have no place in our tokens, whatever a JOSE library would do with them.
 */
import { SANDBOX_ID } from './admin-api.js';

/** Access tokens, the agent's and the users' (RFC 9068 §2.1). */
export const ACCESS_TOKEN_TYP = 'at+jwt';
/** Egress sentinels (README, "Egress delivery"): never accepted where an access token is. */
export const SENTINEL_TYP = 'egress+jwt';
export type TokenType = typeof ACCESS_TOKEN_TYP | typeof SENTINEL_TYP;

/** The audience of an egress sentinel: the outbound handler, never a gateway. */
export const SENTINEL_AUD = 'egress';
const GATEWAY_AUD_PREFIX = 'gateway:';

/** The audience of every access token for one sandbox's gateway. */
export function gatewayAudience(sandboxId: string): string {
  return `${GATEWAY_AUD_PREFIX}${sandboxId}`;
}

/** The sandbox id of a `gateway:<sandbox id>` audience, or undefined for anything else. */
export function sandboxOfAudience(aud: unknown): string | undefined {
  if (typeof aud !== 'string' || !aud.startsWith(GATEWAY_AUD_PREFIX)) return undefined;
  const id = aud.slice(GATEWAY_AUD_PREFIX.length);
  return SANDBOX_ID.test(id) ? id : undefined;
}

/** What the issuer signs with: Ed25519 under `EdDSA`, the name every JOSE library knows. */
export const SIGNING_ALG = 'EdDSA';
/** What any reader accepts: Ed25519 as `EdDSA` (RFC 8037) or as RFC 9864's fully specified `Ed25519`. */
export const ALGORITHMS: readonly string[] = [SIGNING_ALG, 'Ed25519'];

/**
 * Every token and client assertion is at most 8 KiB, so it fits any header limit on the way to a
 * gateway; checked first, so nothing larger is ever decoded.
 */
export const MAX_TOKEN_BYTES = 8 * 1024;

export const FORBIDDEN_HEADERS: readonly string[] = ['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'crit', 'b64', 'zip'];

/**
 * A header `typ` as one of ours. Media type names compare case-insensitively, with or without the
 * `application/` prefix (RFC 7515 §4.1.9).
 */
export function tokenTypeOf(typ: unknown): TokenType | undefined {
  if (typeof typ !== 'string') return undefined;
  const t = typ.toLowerCase().replace(/^application\//, '');
  return t === ACCESS_TOKEN_TYP || t === SENTINEL_TYP ? t : undefined;
}

/**
 * Why the parser refused, in the order it checks. Each reader maps these to its own codes
 * (VerifierErrorCode, AssertionRule, the sentinel rules, inspect's messages).
 */
export type TokenProfileCode =
  /** Over MAX_TOKEN_BYTES. */
  | 'too_large'
  /** Not three segments; a segment not canonical base64url; not UTF-8; a BOM; not a JSON object. */
  | 'malformed'
  /** A member name appears twice in the header or the claims set. */
  | 'duplicate_member'
  /** An empty signature segment: an unsecured JWS (RFC 7515 Appendix A.5, `alg: none`). */
  | 'unsecured'
  /** `alg` not in ALGORITHMS. */
  | 'unsupported_alg'
  /** One of FORBIDDEN_HEADERS in the header. */
  | 'forbidden_header';

/** The parser's refusal. Its message names the rule and the segment, never any of the token's content. */
export class TokenProfileError extends Error {
  readonly code: TokenProfileCode;
  constructor(code: TokenProfileCode, message: string) {
    super(message);
    this.name = 'TokenProfileError';
    this.code = code;
  }
}

export interface CompactParts {
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
  /** The bytes the signature covers: `<header>.<claims>` as ASCII. */
  signingInput: Uint8Array<ArrayBuffer>;
  signature: Uint8Array<ArrayBuffer>;
}

export interface CheckedParts extends CompactParts {
  header: Record<string, unknown> & { alg: string };
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const VALUES = new Uint8Array(128).fill(255);
for (let i = 0; i < ALPHABET.length; i++) VALUES[ALPHABET.charCodeAt(i)] = i;

// ignoreBOM keeps a byte-order mark in the text, where the object check refuses it.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function malformed(what: string): TokenProfileError {
  return new TokenProfileError('malformed', what);
}

/** Canonical base64url: alphabet only, no length of the form 4n+1, unused trailing bits zero. */
function checkSegment(s: string, what: string): void {
  if (!BASE64URL.test(s)) throw malformed(`the ${what} is not base64url`);
  const rem = s.length % 4;
  if (rem === 1) throw malformed(`the ${what} has an impossible base64url length`);
  if (rem !== 0) {
    const last = VALUES[s.charCodeAt(s.length - 1)]!;
    // 2 chars carry 12 bits for 8 (4 unused); 3 chars carry 18 bits for 16 (2 unused).
    if ((last & (rem === 2 ? 0x0f : 0x03)) !== 0) throw malformed(`the ${what} is not canonical base64url`);
  }
}

/** Decodes a segment that checkSegment accepted. No Buffer, no atob. */
function decodeSegment(s: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let o = 0;
  let i = 0;
  for (; i + 4 <= s.length; i += 4) {
    const n =
      (VALUES[s.charCodeAt(i)]! << 18) |
      (VALUES[s.charCodeAt(i + 1)]! << 12) |
      (VALUES[s.charCodeAt(i + 2)]! << 6) |
      VALUES[s.charCodeAt(i + 3)]!;
    out[o++] = n >> 16;
    out[o++] = (n >> 8) & 0xff;
    out[o++] = n & 0xff;
  }
  const rem = s.length - i;
  if (rem >= 2) {
    const n = (VALUES[s.charCodeAt(i)]! << 18) | (VALUES[s.charCodeAt(i + 1)]! << 12) | (rem === 3 ? VALUES[s.charCodeAt(i + 2)]! << 6 : 0);
    out[o++] = n >> 16;
    if (rem === 3) out[o++] = (n >> 8) & 0xff;
  }
  return out;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/**
 * The member names of a JSON text's top-level object, in order, without building the object.
 * Throws when the text is not an object (an array, a string, a leading BOM). Only strings and
 * nesting are tracked; anything else that is not valid JSON is left for JSON.parse to refuse.
 */
function topLevelNames(json: string, what: string): string[] {
  const names: string[] = [];
  let i = 0;
  const n = json.length;
  while (i < n && isSpace(json.charCodeAt(i))) i++;
  if (json.charCodeAt(i) !== 0x7b /* { */) throw malformed(`the ${what} is not a JSON object`);
  let depth = 0;
  let expectName = false;
  for (; i < n; i++) {
    const c = json.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i + 1;
      let escaped = false;
      for (i = start; i < n; i++) {
        const d = json.charCodeAt(i);
        if (d === 0x5c /* \ */) {
          escaped = true;
          i++;
        } else if (d === 0x22) break;
      }
      if (i >= n) throw malformed(`the ${what} has an unterminated string`);
      if (depth === 1 && expectName) {
        const raw = json.slice(start, i);
        let name: string;
        try {
          name = escaped ? (JSON.parse(`"${raw}"`) as string) : raw;
        } catch {
          throw malformed(`the ${what} is not JSON`);
        }
        names.push(name);
        expectName = false;
      }
    } else if (c === 0x7b || c === 0x5b /* [ */) {
      depth++;
      if (depth === 1) expectName = true;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
      if (depth === 0) {
        for (i++; i < n; i++) if (!isSpace(json.charCodeAt(i))) throw malformed(`the ${what} has text after its JSON object`);
        return names;
      }
    } else if (c === 0x2c /* , */ && depth === 1) expectName = true;
  }
  throw malformed(`the ${what} is an unterminated JSON object`);
}

/**
 * One segment as a JSON object: canonical base64url of UTF-8 without a byte-order mark, a JSON
 * object (not an array, a string or null) with no repeated member name. `what` names the segment
 * in the error message ("header", "claims set").
 */
export function parseJsonSegment(segment: string, what: string): Record<string, unknown> {
  checkSegment(segment, what);
  let text: string;
  try {
    text = utf8.decode(decodeSegment(segment));
  } catch {
    throw malformed(`the ${what} is not UTF-8`);
  }
  const names = topLevelNames(text, what);
  if (new Set(names).size !== names.length) throw new TokenProfileError('duplicate_member', `the ${what} repeats a member name`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw malformed(`the ${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw malformed(`the ${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/**
 * The structural half of parseCompact: size, three segments, the header and the claims set as
 * JSON objects, the signature as canonical base64url. Every check here comes before any check of
 * what the header says. Only for a reader that shows a token whatever its header says
 * (`credctl token inspect`, which then verifies it through parseCompact); anything that accepts a
 * token uses parseCompact.
 */
export function decodeCompact(token: string): CompactParts {
  if (token.length > MAX_TOKEN_BYTES)
    throw new TokenProfileError('too_large', `over ${MAX_TOKEN_BYTES} bytes, the most any token or assertion may be`);
  const first = token.indexOf('.');
  const second = first < 0 ? -1 : token.indexOf('.', first + 1);
  if (second < 0 || token.indexOf('.', second + 1) >= 0) throw malformed('not a compact JWS (three base64url segments separated by dots)');
  const h = token.slice(0, first);
  const p = token.slice(first + 1, second);
  const s = token.slice(second + 1);
  const header = parseJsonSegment(h, 'header');
  const claims = parseJsonSegment(p, 'claims set');
  if (s === '') throw new TokenProfileError('unsecured', 'an unsecured JWS (empty signature)');
  checkSegment(s, 'signature');
  // Both segments are base64url (checked above) and the dot ASCII: one byte per character.
  const signingInput = new Uint8Array(second);
  for (let i = 0; i < second; i++) signingInput[i] = token.charCodeAt(i);
  return { header, claims, signingInput, signature: decodeSegment(s) };
}

/** The header rules of parseCompact, on a header decodeCompact returned: `alg`, then the forbidden parameters. */
function checkHeader(header: Record<string, unknown>): asserts header is Record<string, unknown> & { alg: string } {
  if (typeof header.alg !== 'string' || !ALGORITHMS.includes(header.alg))
    throw new TokenProfileError('unsupported_alg', `the alg is not one of ${ALGORITHMS.join(', ')}`);
  for (const name of FORBIDDEN_HEADERS) {
    if (Object.hasOwn(header, name)) throw new TokenProfileError('forbidden_header', `the header parameter ${name} is not allowed`);
  }
}

/**
 * The one strict compact-JWS parser. In order: at most MAX_TOKEN_BYTES; three segments; the header,
 * then the claims set, each canonical base64url of UTF-8 (no BOM) holding a JSON object with no
 * repeated member name; a non-empty canonical signature; `alg` one of ALGORITHMS; none of
 * FORBIDDEN_HEADERS. Returns the decoded parts, or throws a TokenProfileError. What the claims
 * and the rest of the header must say (`typ`, `kid`, `iss`, ...) is each reader's to check.
 */
export function parseCompact(token: string): CheckedParts {
  const parts = decodeCompact(token);
  checkHeader(parts.header);
  return parts as CheckedParts;
}
