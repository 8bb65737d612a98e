/**
 * The user's client address, as the Worker puts it into a user's access token (claim `client_ip`,
 * docs/architecture.md, "Client address") and as the verifying proxy reads it back into `X-Forwarded-For`.
 *
 * Only plain functions over strings (and WHATWG URL, for IPv6): the proxy in the container imports
 * this file as well as the Worker, so nothing here may need a Workers or a Node API.
 */
import { isLoopbackUrl } from '../admin-api.js';

/**
 * Where local clients are attributed (docs/architecture.md, "Client address"): 192.0.2.1 is in TEST-NET-1 (RFC 5737), a block
 * reserved for documentation that no real client ever has. On a loopback issuer every client is
 * the same machine, and OpenClaw refuses a loopback client (`proxy_attribution_required`), so the
 * local stack gives them this address rather than a made-up or loopback one.
 */
export const LOCAL_CLIENT_IP = '192.0.2.1';

/**
 * The header Cloudflare's edge sets on every request to the Worker: the address of the client's
 * connection. A client cannot choose it in production (the edge overwrites any it sends). Locally
 * (wrangler dev) miniflare sets it to the socket peer only when the request carries none, so there
 * a client can name its own; see LOCAL_CLIENT_IP and the README.
 */
export const CLIENT_IP_HEADER = 'CF-Connecting-IP';

/** The longest IP literal there is: an IPv6 address with an embedded IPv4 tail (RFC 4291 §2.2). */
const MAX_IP_LITERAL_LENGTH = 45;
/** Dotted-decimal IPv4, four octets 0..255, no leading zeros (`010` reads as octal to some parsers). */
const IPV4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** Characters an IPv6 literal may hold; no zone (`%eth0`): it names an interface, not a client. */
const IPV6_CHARS = /^[0-9A-Fa-f:.]+$/;
/** The IPv4-mapped form (`::ffff:a.b.c.d`) as WHATWG URL writes it: two hex groups. */
const IPV4_MAPPED = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

/**
 * `value` as a canonical IP literal (IPv4 dotted decimal; IPv6 lower case and compressed, an
 * IPv4-mapped address as its IPv4), or undefined when it is anything else: a host name, a port,
 * brackets, a list, a zone, junk. Callers treat undefined as "no address".
 */
export function ipLiteral(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_IP_LITERAL_LENGTH) return undefined;
  if (IPV4.test(value)) return value;
  if (!value.includes(':') || !IPV6_CHARS.test(value)) return undefined;
  let host: string;
  try {
    host = new URL(`http://[${value}]/`).hostname;
  } catch {
    return undefined;
  }
  const v6 = host.slice(1, -1);
  const mapped = IPV4_MAPPED.exec(v6);
  if (mapped) {
    const hi = parseInt(mapped[1]!, 16);
    const lo = parseInt(mapped[2]!, 16);
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return v6;
}

/**
 * Loopback (127.0.0.0/8, ::1) or unspecified (0.0.0.0, ::): an address that says where a request
 * came from on this machine, never which client sent it. `ip` is canonical (ipLiteral's result).
 */
function isLoopbackOrUnspecified(ip: string): boolean {
  return ip.startsWith('127.') || ip === '0.0.0.0' || ip === '::1' || ip === '::';
}

/**
 * A loopback issuer URL: the local stack. It decides whether DEV_USER is allowed (src/config.ts)
 * and whether the local routes exist; the rule itself is the contract's (isLoopbackUrl), which the
 * CLI applies to admin credentials over plain http.
 */
export function isLoopbackIssuer(issuer: string): boolean {
  return isLoopbackUrl(issuer);
}

/** Why a request has no usable address of its own: for the log, never with the value. */
export type ClientIpGap = 'missing' | 'invalid' | 'loopback';

/**
 * The address to put into the user's access token, from `CF-Connecting-IP` only: never from
 * X-Forwarded-For, X-Real-IP or any other header a client writes. workerd gives a Worker no socket
 * peer; CF-Connecting-IP is the platform's record of it (miniflare's, locally).
 *
 * A missing, invalid (not an IP literal) or loopback address is no client address. On a loopback
 * issuer (`local`) it becomes LOCAL_CLIENT_IP, as documented; on a public one it stays absent,
 * so the token carries no `client_ip` and the gateway refuses the request as unattributable
 * rather than attribute it to an address nobody saw.
 */
export function clientIpOf(headers: Headers, local: boolean): { ip?: string; gap?: ClientIpGap } {
  const raw = headers.get(CLIENT_IP_HEADER);
  const ip = ipLiteral(raw);
  if (ip !== undefined && !isLoopbackOrUnspecified(ip)) return { ip };
  const gap: ClientIpGap = raw === null ? 'missing' : ip === undefined ? 'invalid' : 'loopback';
  return local ? { ip: LOCAL_CLIENT_IP, gap } : { gap };
}
