/**
 * A minimal HTTP client over node:http/https for the agent's one kind of request (a small POST).
 *
 * Why not the global fetch: loading it (undici) costs ~12 MB of resident memory in an otherwise
 * idle agent (measured: 39 MB -> 51 MB on Node 20), and the agent must stay small (bench/README.md).
 */
import { request as httpRequest } from 'node:http';

interface PostInit {
  method: 'POST';
  headers: Record<string, string>;
  body: string;
  signal?: AbortSignal;
}

/** The part of a fetch Response the agent reads. */
export interface SimpleResponse {
  ok: boolean;
  status: number;
  /** Case-insensitive; the agent reads `Date` (the issuer's clock). */
  headers: { get(name: string): string | null };
  text(): Promise<string>;
}

export type Post = (url: string, init: PostInit) => Promise<SimpleResponse>;

/** Answers larger than this are not token responses (a token is at most 8 KiB). */
const MAX_RESPONSE_BYTES = 1024 * 1024;

export const nodePost: Post = async (url, init) => {
  const u = new URL(url);
  // node:https (and tls with it) only for an https: issuer: in the container the agent calls
  // http://issuer.internal (the Worker's outbound handler), and loading them would cost every
  // start a few ms and some 20 of Node's internal modules (bench/first-credential.mjs).
  const send = u.protocol === 'https:' ? (await import('node:https')).request : httpRequest;
  return new Promise((resolve, reject) => {
    const body = Buffer.from(init.body);
    const req = send(
      u,
      { method: init.method, headers: { ...init.headers, 'Content-Length': String(body.length) }, signal: init.signal },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE_BYTES) {
            req.destroy(new Error('response too large'));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          const headers = res.headers;
          const get = (name: string) => {
            const v = headers[name.toLowerCase()];
            return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
          };
          resolve({ ok: status >= 200 && status < 300, status, headers: { get }, text: async () => text });
        });
        res.on('error', reject);
      },
    );
    // fetch-like failures: the cause carries the system error code (ECONNREFUSED, ...).
    req.on('error', (e) => reject(Object.assign(new TypeError('request failed'), { cause: e })));
    req.end(body);
  });
};
