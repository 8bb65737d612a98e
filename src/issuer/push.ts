/**
 * Push on secret rotation (docs/architecture.md, "Secret rotation and push"): after `wrangler secret put`, the Worker's
 * first request notices a new fingerprint of the delivered secrets, and exactly one isolate (the
 * key authority decides, compare-and-set) asks every sandbox's agent to refresh now. The caller
 * runs it once per parsed config (one per deployment and isolate), so it costs nothing per request.
 *
 * Every registered sandbox is reached, however many: the registry is read page by page, each page
 * pushed in batches of PUSH_CONCURRENCY, each push retried PUSH_ATTEMPTS times; what still fails
 * is logged by sandbox, and a summary line counts both.
 */
import type { Config } from '../config.js';
import { log } from '../log.js';
import { secretsFingerprint } from './credentials.js';
import type { RegistryCursor, RegistryPage } from './registry.js';

/** Registry ids read per page. */
const PUSH_PAGE_SIZE = 1000;
/**
 * Pushes in flight at once: each is a container round trip; a bounded fan-out keeps one isolate's
 * outbound connections (Workers allow six per request context to wait at a time, the rest queue)
 * and the memory for thousands of sandboxes small.
 */
export const PUSH_CONCURRENCY = 6;
/** Tries per sandbox: a container that is starting or busy often answers the second time. */
export const PUSH_ATTEMPTS = 3;
/** Wait before retry n (1-based): short, since the whole push runs inside one waitUntil. */
const PUSH_RETRY_DELAYS_MS = [250, 1000];

export interface PushDeps {
  /** Records the fingerprint; `changed` is true for exactly one caller per new value. */
  record: (fingerprint: string) => Promise<{ changed: boolean }>;
  /** One registry page after `cursor`. */
  sandboxes: (limit: number, cursor?: RegistryCursor) => Promise<RegistryPage>;
  push: (sandboxId: string) => Promise<void>;
  sleep?: (ms: number) => Promise<void>;
}

export interface PushSummary {
  sent: number;
  failed: string[];
}

async function pushWithRetries(id: string, deps: PushDeps, sleep: (ms: number) => Promise<void>): Promise<boolean> {
  let lastError = 'error';
  for (let attempt = 1; attempt <= PUSH_ATTEMPTS; attempt++) {
    try {
      await deps.push(id);
      log('info', 'push_sent', { sandbox: id, attempt });
      return true;
    } catch (e) {
      lastError = e instanceof Error ? e.name : 'error';
      if (attempt < PUSH_ATTEMPTS) await sleep(PUSH_RETRY_DELAYS_MS[attempt - 1] ?? PUSH_RETRY_DELAYS_MS.at(-1)!);
    }
  }
  log('warn', 'push_failed', { sandbox: id, attempts: PUSH_ATTEMPTS, error: lastError });
  return false;
}

/** Pushes `ids` with at most PUSH_CONCURRENCY in flight. */
async function pushAll(ids: string[], deps: PushDeps, sleep: (ms: number) => Promise<void>, out: PushSummary): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++]!;
      if (await pushWithRetries(id, deps, sleep)) out.sent++;
      else out.failed.push(id);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PUSH_CONCURRENCY, ids.length) }, worker));
}

export async function pushOnSecretChange(config: Config, deps: PushDeps): Promise<PushSummary | undefined> {
  const fingerprint = await secretsFingerprint(config.credentials);
  const { changed } = await deps.record(fingerprint);
  if (!changed) return undefined;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const summary: PushSummary = { sent: 0, failed: [] };
  let cursor: RegistryCursor | undefined;
  let total: number | undefined;
  do {
    const page = await deps.sandboxes(PUSH_PAGE_SIZE, cursor);
    if (total === undefined) {
      total = page.total;
      log('info', 'secrets_changed', { fingerprint, sandboxes: total });
    }
    await pushAll(page.ids, deps, sleep, summary);
    cursor = page.next;
  } while (cursor);
  log(summary.failed.length ? 'warn' : 'info', 'push_done', { sandboxes: total ?? 0, sent: summary.sent, failed: summary.failed.length });
  return summary;
}
