/**
 * Durable Object RPC keeps an error's message but not its class or fields, so authorities
 * return results instead of throwing, and callers turn them back into typed errors.
 */
import { IssuerError, revive, type SerializedError } from './errors.js';

export type Result<T> = { ok: true; value: T } | { ok: false; error: SerializedError };

/** Runs `fn` and captures an IssuerError as a failed result; anything else propagates. */
export async function capture<T>(fn: () => Promise<T>): Promise<Result<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (e) {
    if (e instanceof IssuerError) return { ok: false, error: { code: e.code, message: e.message, details: { ...e.details } } };
    throw e;
  }
}

/** The value of a result, or the typed error it carried. */
export async function unwrap<T>(r: Promise<Result<T>> | Result<T>): Promise<T> {
  const res = await r;
  if (res.ok) return res.value;
  throw revive(res.error);
}
