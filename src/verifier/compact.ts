/**
 * Strict structural checks on a compact JWS, done before any key lookup or signature check: they
 * are cheap, and they refuse what jose would tolerate or silently resolve.
 *
 * - jose decodes base64url with `atob`, which skips whitespace and accepts padding; a segment
 *   here must be canonical base64url (no padding, no other character, zero trailing bits), so one
 *   token has exactly one spelling.
 * - `JSON.parse` keeps the last of two equal member names, other parsers the first: a token whose
 *   header or claims set repeats a name means different things to different readers. Refused.
 * - Header parameters that make a verifier fetch or trust key material named by the token (`jku`,
 *   `x5u`, `jwk`, `x5c`), extensions (`crit`, `b64`) and compression (`zip`) have no place in our
 *   tokens (DESIGN §4), whatever jose would do with them.
 */
import { VerifierError } from './errors.js';

/** DESIGN §4: tokens are at most 8 KiB. Checked first, so nothing larger is ever decoded. */
export const MAX_TOKEN_BYTES = 8 * 1024;

/** `EdDSA` is the name every JOSE library knows; RFC 9864 adds the fully specified `Ed25519`. */
export const ALGORITHMS: readonly string[] = ['EdDSA', 'Ed25519'];

export const FORBIDDEN_HEADERS: readonly string[] = ['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'crit', 'b64', 'zip'];

/** RFC 9068 §2.1; media type names compare case-insensitively, with or without `application/`. */
export const TOKEN_TYP = 'at+jwt';

export interface ProtectedHeader {
  alg: string;
  kid: string;
  typ?: string;
  [name: string]: unknown;
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const VALUES = new Uint8Array(128).fill(255);
for (let i = 0; i < ALPHABET.length; i++) VALUES[ALPHABET.charCodeAt(i)] = i;

// ignoreBOM keeps a byte-order mark in the text, where JSON.parse refuses it: no second spelling of a header.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function malformed(what: string): VerifierError {
  return new VerifierError('malformed_token', `malformed token: ${what}`);
}

/** Canonical base64url: alphabet only, no length of the form 4n+1, unused trailing bits zero. */
export function checkSegment(s: string, what: string): void {
  if (!BASE64URL.test(s)) throw malformed(`${what} is not base64url`);
  const rem = s.length % 4;
  if (rem === 1) throw malformed(`${what} has an impossible base64url length`);
  if (rem !== 0) {
    const last = VALUES[s.charCodeAt(s.length - 1)]!;
    // 2 chars carry 12 bits for 8 (4 unused); 3 chars carry 18 bits for 16 (2 unused).
    if ((last & (rem === 2 ? 0x0f : 0x03)) !== 0) throw malformed(`${what} is not canonical base64url`);
  }
}

/** Decodes a segment that checkSegment accepted. Isomorphic: no Buffer, no atob. */
export function decodeSegment(s: string): Uint8Array {
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let o = 0;
  let i = 0;
  for (; i + 4 <= s.length; i += 4) {
    const n = (VALUES[s.charCodeAt(i)]! << 18) | (VALUES[s.charCodeAt(i + 1)]! << 12) | (VALUES[s.charCodeAt(i + 2)]! << 6) | VALUES[s.charCodeAt(i + 3)]!;
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

/**
 * The member names of a JSON text's top-level object, in order, without building the object.
 * Throws when the text is not an object. Only strings and nesting are tracked; anything else that
 * is not valid JSON is left for JSON.parse to refuse.
 */
export function topLevelNames(json: string): string[] {
  const names: string[] = [];
  let i = 0;
  const n = json.length;
  while (i < n && isSpace(json.charCodeAt(i))) i++;
  if (json.charCodeAt(i) !== 0x7b /* { */) throw malformed('not a JSON object');
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
      if (i >= n) throw malformed('unterminated string');
      if (depth === 1 && expectName) {
        const raw = json.slice(start, i);
        names.push(escaped ? (JSON.parse(`"${raw}"`) as string) : raw);
        expectName = false;
      }
    } else if (c === 0x7b || c === 0x5b /* [ */) {
      depth++;
      if (depth === 1) expectName = true;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
      if (depth === 0) {
        for (i++; i < n; i++) if (!isSpace(json.charCodeAt(i))) throw malformed('text after the JSON object');
        return names;
      }
    } else if (c === 0x2c /* , */ && depth === 1) expectName = true;
  }
  throw malformed('unterminated JSON object');
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/**
 * A segment that checkSegment accepted, decoded as a JSON object with no repeated member name
 * (`duplicate_member`) and no byte-order mark (`malformed_token`). The issuer's client-assertion
 * parser uses it too, so the issuer is exactly as strict as the verifier.
 */
export function parseObject(segment: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = utf8.decode(decodeSegment(segment));
  } catch {
    throw malformed(`${what} is not UTF-8`);
  }
  const names = topLevelNames(text);
  if (new Set(names).size !== names.length) throw new VerifierError('duplicate_member', `${what} repeats a member name`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw malformed(`${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw malformed(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

function typOk(typ: unknown): boolean {
  if (typ === undefined) return false;
  if (typeof typ !== 'string') return false;
  const t = typ.toLowerCase();
  return t === TOKEN_TYP || t === `application/${TOKEN_TYP}`;
}

/**
 * Checks a compact JWS's shape and protected header; returns the header. The claims set is only
 * checked for shape (a JSON object without repeated names): its values are jose's to check, after
 * the signature.
 */
export function checkCompact(token: string): ProtectedHeader {
  if (token.length > MAX_TOKEN_BYTES) throw new VerifierError('token_too_large', `token over ${MAX_TOKEN_BYTES} bytes`);
  const first = token.indexOf('.');
  const second = first < 0 ? -1 : token.indexOf('.', first + 1);
  if (second < 0 || token.indexOf('.', second + 1) >= 0) throw malformed('not three segments');
  const h = token.slice(0, first);
  const p = token.slice(first + 1, second);
  const s = token.slice(second + 1);
  checkSegment(h, 'header');
  checkSegment(p, 'claims set');
  checkSegment(s, 'signature');

  const header = parseObject(h, 'header');
  if (typeof header.alg !== 'string' || !ALGORITHMS.includes(header.alg)) throw new VerifierError('unsupported_alg', 'alg is not EdDSA or Ed25519');
  for (const name of FORBIDDEN_HEADERS) {
    if (Object.hasOwn(header, name)) throw new VerifierError('forbidden_header', `header parameter ${name} is not allowed`);
  }
  if (!typOk(header.typ)) throw new VerifierError('invalid_typ', `typ is not ${TOKEN_TYP}`);
  if (typeof header.kid !== 'string' || header.kid === '') throw new VerifierError('missing_kid', 'no kid in the header');

  // Shape only; jose parses it again after the signature check.
  let text: string;
  try {
    text = utf8.decode(decodeSegment(p));
  } catch {
    throw malformed('claims set is not UTF-8');
  }
  const names = topLevelNames(text);
  if (new Set(names).size !== names.length) throw new VerifierError('duplicate_member', 'claims set repeats a member name');
  return header as ProtectedHeader;
}
