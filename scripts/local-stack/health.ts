/** Waits for a component to answer healthy, failing early (with its log) if its process ends. */
import { setTimeout as sleep } from 'node:timers/promises';
import { StackError } from './errors.js';
import type { Child } from './processes.js';

const POLL_MS = 200;
/** One probe's own limit: a hung listener must not stall the wait past its deadline. */
const PROBE_TIMEOUT_MS = 2_000;

export async function waitHealthy(name: string, url: string, child: Child | undefined, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let ended: string | undefined;
  void child?.exited.then((how) => (ended = how));
  let last = 'no answer';
  for (;;) {
    if (ended !== undefined)
      throw new StackError(`${name} stopped while starting (${ended}); its log is ${child!.logFile}`, () => child!.tail());
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
      await res.body?.cancel();
      if (res.ok) return;
      last = `HTTP ${res.status}`;
      // The Worker answers 500 to everything while its configuration is invalid: no use waiting.
      if (res.status === 500) {
        throw new StackError(
          `${name} answers HTTP 500 at ${url}: its configuration is invalid (the log names the option and the rule; check .dev.vars)`,
          () => child?.tail() ?? '',
        );
      }
    } catch (e) {
      if (e instanceof StackError) throw e;
      last = (e as Error).name === 'TimeoutError' ? 'timed out' : 'no answer';
    }
    if (Date.now() > deadline) {
      throw new StackError(
        `${name} did not become healthy at ${url} within ${Math.round(timeoutMs / 1000)} s (last: ${last})`,
        () => child?.tail() ?? '',
      );
    }
    await sleep(POLL_MS);
  }
}
