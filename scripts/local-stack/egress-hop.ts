/**
 * The local egress hop of the local stack (port base + 5): what the Sandbox platform's outbound
 * interception does in production for a container's request to a host an egress entry of
 * CREDENTIALS is bound to (README, "Egress delivery").
 *
 * There is no container runtime locally, so there is no transparent interception either: the
 * gateway is configured to address its model provider through this hop (its provider `baseUrl` is
 * the hop's `http://127.0.0.1:<base + 5>/v1`), in plain HTTP on loopback (production intercepts the
 * provider's HTTPS). Each request it receives is streamed to the Worker's loopback-only route
 * `<issuer>/.local/egress` (src/routes/local-egress.ts) with the same method, headers (minus
 * `host` and the hop-by-hop ones) and body, plus
 *
 *   x-egress-url: <upstream><original path and query>   the URL the gateway would have called
 *                                                        (the provider's origin as configured,
 *                                                        http://localhost:<model provider port>)
 *   x-egress-sandbox: <sandbox id>                       whose container sent it
 *
 * and the Worker runs the same egress handler as for a sandbox's container: it checks the sentinel
 * the gateway presents as its API key, puts the real secret in its place, and forwards the request
 * to x-egress-url. The Worker's answer streams back unchanged: status, headers, body (SSE included).
 *
 * The hop adds nothing and decides nothing: it never sees the real key (only the sentinel passes
 * through it), and it logs one line per request (method, path, status, time), never a header
 * value or a query string. An issuer it cannot reach is `502 {"error":"egress_hop_failed", ...}`.
 */
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import { listen } from './listen.js';

/** The Worker's route for the hop (src/routes/local-egress.ts, LOCAL_EGRESS_PATH). */
const LOCAL_EGRESS_PATH = '/.local/egress';

/**
 * Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1), plus `host` (the
 * Worker's is the Worker's) and `proxy-connection`, which some clients still send.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);

export interface EgressHopOptions {
  host: string;
  port: number;
  /** The Worker's origin: `http://127.0.0.1:8787`. */
  issuer: string;
  /** The provider's origin as the gateway would address it: `http://localhost:8791`. */
  upstream: string;
  /** The sandbox whose container the gateway runs in (x-egress-sandbox). */
  sandbox: string;
  /** One line per request: method, path, status; never a header value. */
  log?: (line: string) => void;
}

export interface EgressHop {
  server: Server;
  /** `http://host:port`. */
  url: string;
  close(): Promise<void>;
}

/** The raw headers (duplicates kept, names lowercased) without hop-by-hop ones and those `drop` names. */
function forwardable(raw: string[], drop: (name: string) => boolean = () => false): OutgoingHttpHeaders {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') for (const n of raw[i + 1]!.split(',')) named.add(n.trim().toLowerCase());
  }
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    if (HOP_BY_HOP.has(name) || named.has(name) || drop(name)) continue;
    const had = out[name];
    out[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
  }
  return out;
}

function failed(res: ServerResponse, description: string): void {
  const body = `${JSON.stringify({ error: 'egress_hop_failed', error_description: description })}\n`;
  res.writeHead(502, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export async function startEgressHop(opts: EgressHopOptions): Promise<EgressHop> {
  const log = opts.log ?? (() => {});
  const upstream = opts.upstream.replace(/\/+$/, '');
  const target = new URL(LOCAL_EGRESS_PATH, opts.issuer);

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const started = Date.now();
    // Origin-form as a client sends it to a base URL; an absolute-form target keeps only its path.
    const asked = new URL(req.url ?? '/', 'http://egress-hop');
    const path = asked.pathname;
    const done = (status: number | string) => log(`${req.method} ${path} ${status} (${Date.now() - started} ms)`);

    // The hop's own headers, never a client's: x-egress-* say who the request is.
    const headers = forwardable(req.rawHeaders, (name) => name.startsWith('x-egress-'));
    headers['x-egress-url'] = `${upstream}${path}${asked.search}`;
    headers['x-egress-sandbox'] = opts.sandbox;

    const out = httpRequest(target, { method: req.method, headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, forwardable(answer.rawHeaders));
      answer.pipe(res);
      answer.on('end', () => done(answer.statusCode ?? 502));
      answer.on('error', () => res.destroy());
    });
    let gone = false;
    out.on('error', (e: NodeJS.ErrnoException) => {
      if (gone) return done('client went away');
      if (res.headersSent) {
        res.destroy();
        done('aborted');
        return;
      }
      failed(res, `could not reach the issuer at ${opts.issuer} (${e.code ?? e.message})`);
      done(`502 (issuer unreachable: ${e.code ?? 'error'})`);
    });
    // A client that goes away takes the Worker's request with it.
    res.on('close', () => {
      if (res.writableFinished) return;
      gone = true;
      out.destroy();
    });
    req.pipe(out);
  }

  const server = createServer(handle);
  await listen(server, opts.port, opts.host);
  return {
    server,
    url: `http://${opts.host}:${opts.port}`,
    close: () => new Promise<void>((r) => server.close(() => r()).closeAllConnections()),
  };
}
