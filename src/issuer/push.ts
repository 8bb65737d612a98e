/**
 * Push on secret rotation (DESIGN §3 "Secret rotation"): after `wrangler secret put`, the Worker's
 * first request notices a new fingerprint of the delivered secrets, and exactly one isolate (the
 * key authority decides, compare-and-set) asks every sandbox's agent to refresh now. The caller
 * runs it once per parsed config (one per deployment and isolate), so it costs nothing per request.
 */
import type { Config } from '../config.js';
import { log } from '../log.js';
import { secretsFingerprint } from './credentials.js';

export interface PushDeps {
  /** Records the fingerprint; `changed` is true for exactly one caller per new value. */
  record: (fingerprint: string) => Promise<{ changed: boolean }>;
  sandboxes: () => Promise<string[]>;
  push: (sandboxId: string) => Promise<void>;
}

export async function pushOnSecretChange(config: Config, deps: PushDeps): Promise<void> {
  const fingerprint = await secretsFingerprint(config.credentials);
  const { changed } = await deps.record(fingerprint);
  if (!changed) return;
  const ids = await deps.sandboxes();
  log('info', 'secrets_changed', { fingerprint, sandboxes: ids.length });
  await Promise.all(
    ids.map((id) =>
      deps.push(id).then(
        () => log('info', 'push_sent', { sandbox: id }),
        (e: unknown) => log('warn', 'push_failed', { sandbox: id, error: e instanceof Error ? e.name : 'error' }),
      ),
    ),
  );
}
