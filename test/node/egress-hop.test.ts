/**
 * The local egress hop (scripts/local-stack/egress-hop.ts) against a small recording HTTP server
 * standing in for the issuer's /.local/egress route: it names the URL the request was for and the
 * sandbox (x-egress-url, x-egress-sandbox; a client's own x-egress-* never pass), keeps the method,
 * headers and body but not `host` or hop-by-hop headers, streams bodies both ways (a chunk crosses
 * before the next is written), passes the issuer's status and headers back, answers 502 with a
 * reason when the issuer is down, and logs method, path and status, never a header value or a query.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type EgressHop, startEgressHop } from '../../scripts/local-stack/egress-hop.js';
import { freePort } from './worker-process.js';

const SANDBOX = 'main';
const UPSTREAM = 'http://localhost:8791';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** What the recording issuer does with one request: answer as the test says. */
type Handler = (req: IncomingMessage, res: ServerResponse, seen: Seen) => void | Promise<void>;

let issuer: Server;
let issuerUrl: string;
let hop: EgressHop;
let handler: Handler;
const seen: Seen[] = [];
const lines: string[] = [];

/** Reads the whole request, records it, then runs the handler (the default answers 200 with what it saw). */
const recordAll: Handler = (_req, res, s) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ ok: true, bytes: s.body.length }));
};

beforeAll(async () => {
  issuer = createServer((req, res) => {
    const s: Seen = { method: req.method!, url: req.url!, headers: req.headers, body: '' };
    seen.push(s);
    if (handler !== recordAll) return void handler(req, res, s);
    req.setEncoding('utf8');
    req.on('data', (d: string) => (s.body += d));
    req.on('end', () => void handler(req, res, s));
  });
  await new Promise<void>((r) => issuer.listen(0, '127.0.0.1', () => r()));
  issuerUrl = `http://127.0.0.1:${(issuer.address() as { port: number }).port}`;
  hop = await startEgressHop({
    host: '127.0.0.1',
    port: await freePort(),
    issuer: issuerUrl,
    upstream: UPSTREAM,
    sandbox: SANDBOX,
    log: (l) => lines.push(l),
  });
});
afterAll(async () => {
  await hop?.close();
  await new Promise<void>((r) => issuer.close(() => r()).closeAllConnections());
});
beforeEach(() => {
  handler = recordAll;
  seen.length = 0;
  lines.length = 0;
});

/** One request to the hop with node:http, so headers and chunks are exactly what the test writes. */
function send(
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: IncomingHttpHeaders; raw: string[]; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${hop.url}${path}`, { method: opts.method ?? 'POST', headers: opts.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, raw: res.rawHeaders, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

describe('what the hop sends the issuer', () => {
  it('the same method, headers and body to /.local/egress, with x-egress-url and x-egress-sandbox', async () => {
    const sentinel = `eyJ${randomBytes(24).toString('base64url')}.eyJ${randomBytes(24).toString('base64url')}.${randomBytes(32).toString('base64url')}`;
    const body = JSON.stringify({ model: 'standin-model', messages: [{ role: 'user', content: 'hi' }] });
    const res = await send('/v1/chat/completions?api-version=2&x=1', {
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${sentinel}`,
        'x-custom': 'kept',
        // A client cannot say who it is or where the request goes: the hop's own values win.
        'x-egress-url': 'http://evil.example/steal',
        'x-egress-sandbox': 'other',
        // Hop-by-hop: for this connection only, never forwarded (nor what Connection names).
        connection: 'keep-alive, x-private-hop',
        'x-private-hop': 'dropped',
        'keep-alive': 'timeout=5',
        te: 'trailers',
      },
      body,
    });
    expect(res.status).toBe(200);
    expect(seen).toHaveLength(1);
    const s = seen[0]!;
    expect(s.method).toBe('POST');
    expect(s.url).toBe('/.local/egress');
    expect(s.headers['x-egress-url']).toBe(`${UPSTREAM}/v1/chat/completions?api-version=2&x=1`);
    expect(s.headers['x-egress-sandbox']).toBe(SANDBOX);
    expect(s.headers.authorization).toBe(`Bearer ${sentinel}`);
    expect(s.headers['content-type']).toBe('application/json');
    expect(s.headers['content-length']).toBe(String(Buffer.byteLength(body)));
    expect(s.headers['x-custom']).toBe('kept');
    // The issuer's own host, not the hop's; nothing of the client's connection.
    expect(s.headers.host).toBe(new URL(issuerUrl).host);
    for (const h of ['x-private-hop', 'keep-alive', 'te']) expect(s.headers[h], h).toBeUndefined();
    expect(s.body).toBe(body);
  });

  it('a GET without a body, and any path, go the same way', async () => {
    const res = await send('/v1/models', { method: 'GET' });
    expect(res.status).toBe(200);
    expect(seen[0]).toMatchObject({ method: 'GET', url: '/.local/egress', body: '' });
    expect(seen[0]!.headers['x-egress-url']).toBe(`${UPSTREAM}/v1/models`);
  });

  it('streams the request body: the issuer has the first chunk before the client writes the second', async () => {
    let firstAtIssuer!: () => void;
    const gotFirst = new Promise<void>((r) => (firstAtIssuer = r));
    handler = (req, res, s) => {
      req.setEncoding('utf8');
      req.on('data', (d: string) => {
        s.body += d;
        if (s.body.includes('first')) firstAtIssuer();
      });
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(s.body);
      });
    };
    const answer = new Promise<string>((resolve, reject) => {
      const req = request(`${hop.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'text/plain' } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.write('first;');
      // Buffered until the end, the issuer would never see "first" here, and this would time out.
      void gotFirst.then(() => req.end('second'));
    });
    expect(await answer).toBe('first;second');
    expect(seen[0]!.headers['transfer-encoding']).toBe('chunked');
  });
});

describe('what the hop answers', () => {
  it("streams the issuer's answer: the client has the first chunk before the issuer writes the second", async () => {
    let clientHasFirst!: () => void;
    const clientGotFirst = new Promise<void>((r) => (clientHasFirst = r));
    handler = (req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      res.write('data: one\n\n');
      void clientGotFirst.then(() => res.end('data: [DONE]\n\n'));
    };
    const chunks: string[] = [];
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${hop.url}/v1/chat/completions`, { method: 'POST' }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          chunks.push(d);
          if (d.includes('one')) clientHasFirst();
        });
        res.on('end', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
      req.end('{"stream":true}');
    });
    expect(status).toBe(200);
    expect(chunks.join('')).toBe('data: one\n\ndata: [DONE]\n\n');
    expect(chunks.length).toBeGreaterThanOrEqual(2);
  });

  it("passes the issuer's status, headers and body back unchanged (a refusal, repeated headers included)", async () => {
    const refusal = JSON.stringify({ error: 'egress_refused', error_description: 'expired' });
    handler = (req, res) => {
      req.resume();
      res.setHeader('set-cookie', ['a=1', 'b=2']);
      res.writeHead(403, 'Forbidden Here', {
        'content-type': 'application/json',
        'cache-control': 'no-store',
        'x-request-id': 'r-123',
        'content-length': Buffer.byteLength(refusal),
      });
      res.end(refusal);
    };
    const res = await send('/v1/chat/completions', { body: '{}' });
    expect(res.status).toBe(403);
    expect(res.body).toBe(refusal);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['x-request-id']).toBe('r-123');
    expect(res.headers['content-length']).toBe(String(Buffer.byteLength(refusal)));
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
  });

  it('502 with a JSON reason when the issuer is down', async () => {
    const down = await startEgressHop({
      host: '127.0.0.1',
      port: await freePort(),
      issuer: `http://127.0.0.1:${await freePort()}`,
      upstream: UPSTREAM,
      sandbox: SANDBOX,
      log: (l) => lines.push(l),
    });
    try {
      const res = await new Promise<{ status: number; type: string; body: string }>((resolve, reject) => {
        const req = request(`${down.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (r) => {
          let body = '';
          r.setEncoding('utf8');
          r.on('data', (d: string) => (body += d));
          r.on('end', () => resolve({ status: r.statusCode!, type: r.headers['content-type'] ?? '', body }));
        });
        req.on('error', reject);
        req.end('{}');
      });
      expect(res.status).toBe(502);
      expect(res.type).toBe('application/json');
      const json = JSON.parse(res.body) as { error: string; error_description: string };
      expect(json.error).toBe('egress_hop_failed');
      expect(json.error_description).toMatch(/could not reach the issuer at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
      expect(lines.at(-1)).toMatch(/^POST \/v1\/chat\/completions 502 /);
    } finally {
      await down.close();
    }
  });

  it('logs one line per request, method, path and status, and never a header value or a query', async () => {
    const secret = randomBytes(32).toString('base64url');
    await send(`/v1/chat/completions?key=${secret}`, { headers: { authorization: `Bearer ${secret}`, 'x-api-key': secret }, body: '{}' });
    handler = (req, res) => {
      req.resume();
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end('{}');
    };
    await send('/v1/models', { method: 'GET', headers: { authorization: `Bearer ${secret}` } });
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^POST \/v1\/chat\/completions 200 \(\d+ ms\)$/);
    expect(lines[1]).toMatch(/^GET \/v1\/models 401 \(\d+ ms\)$/);
    for (const l of lines) expect(l).not.toContain(secret);
  });
});
