/**
 * A single value kept in a Worker isolate until a deadline the loader chooses. Concurrent misses
 * share one load; `invalidate` drops the value and makes a load already in flight not keep its
 * (possibly older) result. Used for the JWKS and the active signing key.
 *
 * A shared load is waited for only until its deadline (LOAD_DEADLINE_MS after it started). On
 * Workers a load belongs to the request that started it, and once that request has ended (client
 * gone, request cancelled) its I/O may never complete: the load's promise then never settles, for
 * every request that joined it too, and a cache that waits for it to settle is stuck for the
 * isolate's life. So each waiter waits with a timer of its own, and past the deadline it loads for
 * itself: its own load, since one started meanwhile by another waiter may be just as dead (workerd
 * still runs an ended request's timers, but I/O it starts then may never complete). The newest load
 * is the one later misses share, and the only one whose result is stored.
 */
export interface IsolateCache<T> {
  get(): Promise<T>;
  invalidate(): void;
}

/**
 * How long a shared load is waited for. A healthy KeyAuthority call takes milliseconds: three
 * seconds is far past one, and is the longest a request waits behind a load whose request has gone
 * before it loads for itself.
 */
export const LOAD_DEADLINE_MS = 3_000;

const TIMED_OUT: unique symbol = Symbol('timed out');

/**
 * `p`'s outcome, or TIMED_OUT once `ms` have passed. The timer is the caller's own, so it fires even
 * when the request that started `p` has ended and `p` will never settle.
 */
async function within<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer!: ReturnType<typeof setTimeout>;
  const late = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), Math.max(0, ms));
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A load shared by concurrent callers, with the time (Date.now()) past which nobody waits for it. */
export interface SharedLoad<T> {
  promise: Promise<T>;
  deadline: number;
}

/**
 * One caller's wait, the rule every cache here follows. `ready()` is a value that needs no load (a
 * stored entry), `current()` the load in flight, `start()` starts a load and makes it the current
 * one (a load it replaces must not store its result). The caller joins the current load, or
 * starts one when there is none or it is past its deadline; if that one has not settled by its
 * deadline, the caller starts a load of its own, and throws if that one misses its deadline too.
 */
export async function awaitShared<T>(
  ready: () => { value: T } | undefined,
  current: () => SharedLoad<T> | undefined,
  start: () => SharedLoad<T>,
  what: string,
  deadlineMs: number,
): Promise<T> {
  const hit = ready();
  if (hit) return hit.value;
  const joined = current();
  const shared = joined && Date.now() < joined.deadline ? joined : start();
  const first = await within(shared.promise, shared.deadline - Date.now());
  if (first !== TIMED_OUT) return first;
  const meanwhile = ready();
  if (meanwhile) return meanwhile.value;
  const own = start();
  const second = await within(own.promise, own.deadline - Date.now());
  if (second !== TIMED_OUT) return second;
  throw new Error(`${what}: no load settled within ${deadlineMs} ms, twice`);
}

export function createIsolateCache<T>(
  load: () => Promise<{ value: T; until: number }>,
  now: () => number = Date.now,
  deadlineMs: number = LOAD_DEADLINE_MS,
): IsolateCache<T> {
  let entry: { value: T; until: number } | undefined;
  let inflight: SharedLoad<T> | undefined;

  function start(): SharedLoad<T> {
    const l = { deadline: Date.now() + deadlineMs } as SharedLoad<T>;
    l.promise = (async () => {
      const loaded = await load();
      // Stored only while it is the current load: not after `invalidate`, nor once a newer load has
      // replaced it (its result would be older).
      if (inflight === l) entry = loaded;
      return loaded.value;
    })().finally(() => {
      if (inflight === l) inflight = undefined;
    });
    inflight = l;
    return l;
  }

  return {
    get() {
      return awaitShared(
        () => (entry && now() < entry.until ? { value: entry.value } : undefined),
        () => inflight,
        start,
        'isolate cache',
        deadlineMs,
      );
    },
    invalidate() {
      entry = undefined;
      inflight = undefined;
    },
  };
}
