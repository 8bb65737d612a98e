/**
 * `npm run dev` keeps its signing keys in local Durable Object storage: a restarted Worker serves
 * the same kids. Runs the real Worker with wrangler dev, as the dev script does.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { startWorker } from './worker-process.js';

const dir = mkdtempSync(join(tmpdir(), 'issuer-persist-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function kids(url: string): Promise<string[]> {
  const res = await fetch(`${url}/.well-known/jwks.json`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid).sort();
}

it('a restarted Worker serves the same kids from local storage', async () => {
  const first = await startWorker({ persistTo: dir });
  const before = await kids(first.url).finally(first.stop);
  expect(before).toHaveLength(2);

  const second = await startWorker({ persistTo: dir, port: first.port });
  const after = await kids(second.url).finally(second.stop);
  expect(after).toEqual(before);
}, 120_000);
