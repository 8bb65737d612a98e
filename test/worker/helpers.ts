import { createExecutionContext, env, listDurableObjectIds, reset, runInDurableObject } from 'cloudflare:test';
import { vi } from 'vitest';
import { createApp } from '../../src/app.js';
import type { Env } from '../../src/config.js';
import { KEY_AUTHORITY_NAME, type KeyAuthority } from '../../src/issuer/key-authority.js';
import { TEST_ADMIN_TOKEN } from '../secrets.js';

export { TEST_ADMIN_TOKEN };
export const BASE = 'http://127.0.0.1:8787';

export function keyAuthority(): DurableObjectStub<KeyAuthority> {
  return env.KEY_AUTHORITY.get(env.KEY_AUTHORITY.idFromName(KEY_AUTHORITY_NAME)) as DurableObjectStub<KeyAuthority>;
}

/** Sends a request through a fresh app (fresh isolate caches) with the test env, or an altered one. */
export async function call(path: string, init: RequestInit = {}, envOverride: Partial<Record<keyof Env, unknown>> = {}): Promise<Response> {
  const app = createApp();
  const e = { ...env, ...envOverride } as Env;
  return app.fetch(new Request(BASE + path, init), e, createExecutionContext());
}

export function adminHeaders(token = TEST_ADMIN_TOKEN): HeadersInit {
  return { Authorization: `Bearer ${token}` };
}

/** Captures every console line written while `fn` runs. */
export async function captureLogs<T>(fn: () => Promise<T>): Promise<{ result: T; lines: string[] }> {
  const lines: string[] = [];
  const spies = (['log', 'info', 'warn', 'error', 'debug'] as const).map((m) =>
    vi.spyOn(console, m).mockImplementation((...args: unknown[]) => {
      lines.push(args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '));
    }),
  );
  try {
    return { result: await fn(), lines };
  } finally {
    for (const s of spies) s.mockRestore();
  }
}

/**
 * Fresh storage for every Durable Object. Pending alarms are cleared first: reset() with an alarm
 * still scheduled leaves the test runner waiting at teardown.
 */
export async function freshStorage(): Promise<void> {
  await runInDurableObject(keyAuthority(), (_i, state) => state.storage.deleteAlarm());
  for (const id of await listDurableObjectIds(env.SANDBOX_AUTHORITY)) {
    await runInDurableObject(env.SANDBOX_AUTHORITY.get(id), (_i, state) => state.storage.deleteAlarm());
  }
  await reset();
}
