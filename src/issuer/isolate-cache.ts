/**
 * A single value kept in a Worker isolate until a deadline the loader chooses. Concurrent misses
 * share one load; `invalidate` drops the value and makes a load already in flight not keep its
 * (possibly older) result. Used for the JWKS and the active signing key.
 */
export interface IsolateCache<T> {
  get(): Promise<T>;
  invalidate(): void;
}

export function createIsolateCache<T>(load: () => Promise<{ value: T; until: number }>, now: () => number = Date.now): IsolateCache<T> {
  let entry: { value: T; until: number } | undefined;
  let inflight: Promise<T> | undefined;
  let generation = 0;

  async function refresh(): Promise<T> {
    const started = generation;
    const loaded = await load();
    if (started === generation) entry = loaded;
    return loaded.value;
  }

  return {
    async get() {
      if (entry && now() < entry.until) return entry.value;
      inflight ??= refresh().finally(() => {
        inflight = undefined;
      });
      return inflight;
    },
    invalidate() {
      generation++;
      entry = undefined;
      inflight = undefined;
    },
  };
}
