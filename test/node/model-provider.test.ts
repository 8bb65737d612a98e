/**
 * The stand-in model provider (scripts/local-stack/model-provider.ts) on loopback: it accepts the
 * key values it holds (a set, as during a rotation), answers 401 to anything else, answers both
 * the plain and the SSE form OpenClaw asks for, and logs a fingerprint of each key, never a key.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXED_REPLY, keyFingerprint, MODEL_ID, type ModelProvider, startModelProvider } from '../../scripts/local-stack/model-provider.js';
import { freePort } from './worker-process.js';

const oldKey = randomBytes(32).toString('base64url');
const newKey = randomBytes(32).toString('base64url');
const lines: string[] = [];
let provider: ModelProvider;

const complete = (key: string | undefined, body: Record<string, unknown> = {}) =>
  fetch(`${provider.baseUrl}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { authorization: `Bearer ${key}` }) },
    body: JSON.stringify({ model: MODEL_ID, messages: [{ role: 'user', content: 'hi' }], ...body }),
  });

beforeAll(async () => {
  provider = await startModelProvider({ host: '127.0.0.1', port: await freePort(), keys: [oldKey], log: (l) => lines.push(l) });
});
afterAll(() => provider?.close());

describe('keys', () => {
  it('accepts its key and answers the fixed reply as an OpenAI chat completion', async () => {
    const res = await complete(oldKey);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { object: string; choices: { message: { role: string; content: string }; finish_reason: string }[] };
    expect(body.object).toBe('chat.completion');
    expect(body.choices[0]).toMatchObject({ message: { role: 'assistant', content: FIXED_REPLY }, finish_reason: 'stop' });
  });

  it('answers 401 in OpenAI error shape to a wrong key, no key, or a key sent another way', async () => {
    for (const res of [await complete(newKey), await complete(undefined), await complete(`${oldKey}x`)]) {
      expect(res.status).toBe(401);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
    }
    const asHeader = await fetch(`${provider.baseUrl}/chat/completions`, { method: 'POST', headers: { 'x-api-key': oldKey }, body: '{}' });
    expect(asHeader.status).toBe(401);
  });

  it('during a rotation accepts the old and the new key, and after the revoke only the new one', async () => {
    provider.accept(newKey);
    expect(provider.fingerprints().sort()).toEqual([keyFingerprint(oldKey), keyFingerprint(newKey)].sort());
    expect((await complete(oldKey)).status).toBe(200);
    expect((await complete(newKey)).status).toBe(200);
    provider.revoke(oldKey);
    expect((await complete(oldKey)).status).toBe(401);
    expect((await complete(newKey)).status).toBe(200);
    provider.accept(oldKey); // back to the start for the other tests
    provider.revoke(newKey);
  });

  it('logs the fingerprint of each key it saw and never a key', () => {
    const log = lines.join('\n');
    expect(log).toContain(`key ${keyFingerprint(oldKey)}: accepted`);
    expect(log).toContain(`key ${keyFingerprint(newKey)}: refused (401)`);
    expect(log).toContain('no key: refused (401)');
    expect(keyFingerprint(oldKey)).toMatch(/^[0-9a-f]{8}$/);
    for (const k of [oldKey, newKey]) {
      expect(log).not.toContain(k);
      expect(log).not.toContain(k.slice(0, 12));
    }
  });
});

describe('what OpenClaw asks for', () => {
  it('streams the reply as SSE when asked with stream: true (what openai-completions sends), usage when asked', async () => {
    const res = await complete(oldKey, { stream: true, stream_options: { include_usage: true } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const events = (await res.text())
      .split('\n\n')
      .filter(Boolean)
      .map((e) => e.replace(/^data: /, ''));
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events
      .slice(0, -1)
      .map(
        (e) =>
          JSON.parse(e) as { object: string; choices: { delta: { content?: string }; finish_reason: string | null }[]; usage?: unknown },
      );
    expect(chunks.every((c) => c.object === 'chat.completion.chunk')).toBe(true);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(FIXED_REPLY);
    expect(chunks.some((c) => c.choices[0]?.finish_reason === 'stop')).toBe(true);
    expect(chunks.at(-1)!.usage).toBeDefined();
  });

  it('lists its one model; other paths are 404 and bad JSON is 400, both only with a valid key', async () => {
    const models = await fetch(`${provider.baseUrl}/models`, { headers: { authorization: `Bearer ${oldKey}` } });
    expect(((await models.json()) as { data: { id: string }[] }).data.map((m) => m.id)).toEqual([MODEL_ID]);
    expect((await fetch(`${provider.baseUrl}/embeddings`, { method: 'POST', headers: { authorization: `Bearer ${oldKey}` } })).status).toBe(
      404,
    );
    expect((await fetch(`${provider.baseUrl}/embeddings`, { method: 'POST' })).status).toBe(401);
    const bad = await fetch(`${provider.baseUrl}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${oldKey}` },
      body: '{not json',
    });
    expect(bad.status).toBe(400);
  });
});
