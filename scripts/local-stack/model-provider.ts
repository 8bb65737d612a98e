/**
 * The stand-in model provider of the local stack (docs/architecture.md, "Local stack"; port base + 4): what an OpenAI-compatible
 * provider does with API keys, and a fixed answer instead of a model. The real gateway (OpenClaw) is
 * configured with it as a custom provider (`api: "openai-completions"`), so a chat completion goes
 * Worker -> proxy -> gateway -> here without a network or an account.
 *
 * Keys: it accepts the values it holds and answers 401 to anything else, as a real provider does.
 * It holds a set, not one value: during a rotation the provider keeps the old key valid until it is
 * revoked (`revoke`), and only after every gateway has the new one, because one 401 makes OpenClaw
 * disable the key it used for about a minute. How the key reaches it does not matter here: today the
 * agent delivers it into the gateway's credentials (CREDENTIALS entry PROVIDER_API_KEY); with egress
 * delivery (docs/architecture.md, "Egress delivery") a hop in front of this server puts the real key in, and this file is unchanged.
 *
 * Logs: one line per request with a fingerprint of the key it saw (the first hex digits of its
 * SHA-256), never the key, so a log shows which key a gateway used without holding it.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { listen } from './listen.js';

/** What every completion answers; tests look for it at the end of the chain. */
export const FIXED_REPLY = 'Hello from the stand-in model provider.';
/** The one model it serves; OpenClaw's config names it as `<provider id>/<model id>`. */
export const MODEL_ID = 'standin-model';
/** Hex digits of SHA-256 in a logged fingerprint: enough to tell keys apart, useless to guess one. */
const FINGERPRINT_HEX = 8;
/**
 * Largest request body read. An agent run sends its system prompt and every tool's JSON schema, which
 * is far larger than the user's message (tens of kB with OpenClaw's bundled tools); more than this is
 * refused rather than buffered.
 */
const MAX_BODY_BYTES = 8 * 1024 * 1024;

export interface ModelProviderOptions {
  host: string;
  port: number;
  /** The key values accepted from the start. */
  keys: Iterable<string>;
  /** Where its log lines go (one line each, never a key). */
  log?: (line: string) => void;
}

export interface ModelProvider {
  server: Server;
  /** `http://host:port/v1`: the `baseUrl` a gateway's provider config names. */
  baseUrl: string;
  /** Accept one more key (the new value of a rotation). */
  accept(key: string): void;
  /** Stop accepting a key (the old value, once every gateway has the new one). */
  revoke(key: string): void;
  /** Fingerprints of the accepted keys, for a status line. */
  fingerprints(): string[];
  close(): Promise<void>;
}

/** The first FINGERPRINT_HEX hex digits of the key's SHA-256: safe to log. */
export function keyFingerprint(key: string): string {
  return sha256(key).slice(0, FINGERPRINT_HEX);
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(`${JSON.stringify(body)}\n`);
}

/** OpenAI's error shape, so the gateway classifies a refusal as an auth failure, as it would a real one. */
function openAiError(res: ServerResponse, status: number, code: string, message: string): void {
  json(res, status, { error: { message, type: status === 401 ? 'invalid_request_error' : 'api_error', param: null, code } });
}

class BodyTooLarge extends Error {}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new BodyTooLarge();
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

interface ChatRequest {
  model?: unknown;
  stream?: unknown;
  stream_options?: { include_usage?: unknown };
}

/** Token counts are not measured: a fixed, plausible usage block, since clients read it. */
const USAGE = { prompt_tokens: 1, completion_tokens: 8, total_tokens: 9 };

function completion(id: string, model: string, created: number) {
  return {
    id,
    object: 'chat.completion',
    created,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: FIXED_REPLY }, finish_reason: 'stop' }],
    usage: USAGE,
  };
}

/** The reply as OpenAI's SSE stream: the role, the content, the stop, usage if asked for, [DONE]. */
function stream(res: ServerResponse, id: string, model: string, created: number, withUsage: boolean): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
  const chunk = (delta: Record<string, unknown>, finish: string | null, extra: Record<string, unknown> = {}) =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }], ...extra })}\n\n`;
  res.write(chunk({ role: 'assistant', content: '' }, null));
  res.write(chunk({ content: FIXED_REPLY }, null));
  res.write(chunk({}, 'stop'));
  if (withUsage)
    res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage: USAGE })}\n\n`);
  res.end('data: [DONE]\n\n');
}

export async function startModelProvider(opts: ModelProviderOptions): Promise<ModelProvider> {
  const log = opts.log ?? (() => {});
  // Digests, not values: the process keeps nothing it could print by mistake, and a Set lookup on a
  // digest does not leak how much of a guess matched.
  const accepted = new Set<string>();
  for (const k of opts.keys) if (k !== '') accepted.add(sha256(k));

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://model-provider').pathname;
    if (path === '/healthz') return json(res, 200, { status: 'ok' });

    const m = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? '');
    const key = m?.[1];
    const digest = key === undefined ? undefined : sha256(key);
    const seen = digest === undefined ? 'no key' : `key ${digest.slice(0, FINGERPRINT_HEX)}`;
    const ok = digest !== undefined && accepted.has(digest);
    if (!ok) {
      req.resume();
      log(`${req.method} ${path} ${seen}: refused (401)`);
      return openAiError(res, 401, 'invalid_api_key', 'Incorrect API key provided (stand-in model provider).');
    }

    if (req.method === 'GET' && (path === '/v1/models' || path === `/v1/models/${MODEL_ID}`)) {
      log(`${req.method} ${path} ${seen}: accepted`);
      const model = { id: MODEL_ID, object: 'model', created: 0, owned_by: 'stand-in' };
      return json(res, 200, path === '/v1/models' ? { object: 'list', data: [model] } : model);
    }
    if (path !== '/v1/chat/completions') {
      req.resume();
      log(`${req.method} ${path} ${seen}: not found (404)`);
      return openAiError(res, 404, 'not_found', `the stand-in model provider serves POST /v1/chat/completions, not ${req.method} ${path}`);
    }
    if (req.method !== 'POST') {
      req.resume();
      return openAiError(res, 405, 'method_not_allowed', 'POST only');
    }

    let body: ChatRequest;
    try {
      const parsed = await readJson(req);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new SyntaxError('not an object');
      body = parsed as ChatRequest;
    } catch (e) {
      log(`${req.method} ${path} ${seen}: bad request (400)`);
      if (e instanceof BodyTooLarge)
        return openAiError(res, 413, 'request_too_large', `request bodies are limited to ${MAX_BODY_BYTES} bytes`);
      return openAiError(res, 400, 'invalid_json', 'the request body must be a JSON object');
    }
    const model = typeof body.model === 'string' ? body.model : MODEL_ID;
    const streaming = body.stream === true;
    log(`${req.method} ${path} ${seen}: accepted (model ${model.slice(0, 64)}${streaming ? ', stream' : ''})`);
    const id = `chatcmpl-standin-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    if (streaming) return stream(res, id, model, created, body.stream_options?.include_usage === true);
    return json(res, 200, completion(id, model, created));
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) openAiError(res, 500, 'internal_error', 'stand-in model provider failed');
      else res.destroy();
    });
  });
  await listen(server, opts.port, opts.host);
  return {
    server,
    baseUrl: `http://${opts.host}:${opts.port}/v1`,
    accept: (key) => void (key !== '' && accepted.add(sha256(key))),
    revoke: (key) => void accepted.delete(sha256(key)),
    fingerprints: () => [...accepted].map((d) => d.slice(0, FINGERPRINT_HEX)),
    close: () => new Promise<void>((r) => server.close(() => r()).closeAllConnections()),
  };
}
