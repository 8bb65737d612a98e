/**
 * The refresh loop, after the Azure SDK's token cycler: refresh in the background at ~50% of the
 * token's life (its exp - iat, counted on this clock from when it was requested); one refresh in
 * flight at a time (a nudge during a refresh joins it); after a failure of any kind, back off with
 * full jitter and keep serving the current token until it expires. Nothing a refresh meets makes
 * the agent exit.
 *
 * Time, randomness, sleeping, the HTTP client, the files and the hook are injected, so the schedule is
 * tested without real timers.
 */

import type { BootstrapFile, CredentialsFile } from '../../src/admin-api.js';
import { type AgentKeys, type IssuedToken, requestToken } from './client.js';
import { ASSUMED_ISSUER_CLOCK_SKEW_S, describeSkew, IssuerClock } from './clock.js';
import { AgentError, type AgentErrorCode } from './errors.js';
import type { AgentState, SavedFiles } from './files.js';
import type { HookResult } from './hook.js';
import type { Post } from './http-client.js';
import type { Logger } from './log.js';
import { inspectSaved } from './restore.js';
import { BACKOFF_MAX_MS, backoffDelay, refreshAt, refusedDelay } from './schedule.js';

interface Store {
  writeToken(token: string): Promise<void>;
  writeCredentials(c: CredentialsFile): Promise<void>;
  writeState(s: AgentState): Promise<void>;
}

export interface RefresherDeps {
  now(): number;
  random(): number;
  /** Resolves after `ms`, or early when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
  post: Post;
  log: Logger;
  store: Store;
  /** Runs the change hook; absent when no --on-change is set. */
  hook?: (credentialsVersion: string) => Promise<HookResult>;
}

export interface RefresherOptions {
  file: BootstrapFile;
  endpoint: string;
  keys: AgentKeys;
  maxBackoffMs?: number;
}

export type RefreshOutcome = { ok: true; token: IssuedToken } | { ok: false; error: AgentError };

export interface Metrics {
  refreshes: { ok: number; error: number; refused: number };
  /** Failed refreshes by AgentError code (credentials_undecryptable, write_failed, ...). */
  failures: Partial<Record<AgentErrorCode, number>>;
  hooks: { ok: number; error: number };
}

const isRefusal = (e: AgentError) => e.code === 'bootstrap_refused' || e.code === 'request_rejected';

/** The token being served. */
export interface HeldToken {
  token: string;
  /** The issuer's times (epoch seconds, issuer's clock). */
  iat: number;
  exp: number;
  kid?: string;
  jti?: string;
  /**
   * Its life on this machine's clock (epoch ms): from when the request was sent, for exp - iat.
   * The token cannot have been issued before the request left, and iat is rounded down to a
   * second, so this is within about a second of the issuer's own view, whatever the two clocks
   * say. Health and the schedule use only these.
   */
  localStart: number;
  localExpiry: number;
  /** The credentials version the token carries (its `cred_ver`), if any. */
  credVer?: string;
}

/** What /healthz says: `ok` only with a valid token and, if it carries credentials, those credentials whole on disk. */
export type HealthStatus = 'ok' | 'no_token' | 'expired' | 'credentials_unusable';

export class Refresher {
  current: HeldToken | undefined;
  credentials: CredentialsFile | undefined;
  state: AgentState = {};
  readonly metrics: Metrics = { refreshes: { ok: 0, error: 0, refused: 0 }, failures: {}, hooks: { ok: 0, error: 0 } };
  /** When the loop refreshes next (epoch ms). */
  nextAt = 0;
  failures = 0;

  private inflight: Promise<RefreshOutcome> | undefined;
  private hookRunning: Promise<void> | undefined;
  private wake: AbortController | undefined;
  private refusalLogged = false;
  private sendEncKey = true;
  /** The issuer's clock as far as its answers tell (issue 12 C). */
  readonly clock = new IssuerClock();

  constructor(
    private readonly opts: RefresherOptions,
    private readonly deps: RefresherDeps,
  ) {}

  /**
   * Takes over what a previous run wrote (restore.ts decides what can be used): a still-valid
   * token keeps being served while the first refresh, at once, runs. Each file that cannot be used
   * is one `file_unusable` line, naming it, never its content.
   */
  restore(saved: SavedFiles): void {
    const r = inspectSaved(saved, this.deps.now());
    for (const p of r.problems)
      this.deps.log('warn', 'file_unusable', { file: p.file, path: p.path, reason: p.reason, action: 'refreshing now' });
    this.state = { ...r.state };
    this.credentials = r.credentials;
    this.current = r.token;
    this.nextAt = this.deps.now(); // docs/architecture.md, "Agent restart and crash safety": with a usable bootstrap key it refreshes at once
  }

  healthStatus(): HealthStatus {
    const t = this.current;
    if (!t) return 'no_token';
    if (t.localExpiry <= this.deps.now()) return 'expired';
    // The proxy reads its upstream credential from credentials.json: a token without it is no use.
    // `credentials` is only ever what is whole on disk (checked at start, written since); it may be
    // newer than the token when a write of the token failed after the credentials', which is fine.
    if (t.credVer !== undefined && this.credentials === undefined) return 'credentials_unusable';
    return 'ok';
  }

  /** Whether the current token is valid as the issuer sees it, with its credentials on disk. */
  healthy(): boolean {
    return this.healthStatus() === 'ok';
  }

  /** Milliseconds until the current token expires as the issuer sees it (negative: expired); undefined without one. */
  expiresInMs(): number | undefined {
    return this.current ? this.current.localExpiry - this.deps.now() : undefined;
  }

  /** Refreshes now; joins a refresh already in flight. */
  refresh(reason: string): Promise<RefreshOutcome> {
    this.inflight ??= this.attempt(reason).finally(() => {
      this.inflight = undefined;
      this.wake?.abort(); // the loop recomputes its sleep from the new nextAt
    });
    return this.inflight;
  }

  /** Runs until `signal` aborts: sleep until nextAt (or a nudge reschedules), refresh, repeat. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const delay = Math.max(0, this.nextAt - this.deps.now());
      if (delay > 0) {
        this.wake = new AbortController();
        await this.deps.sleep(delay, AbortSignal.any([signal, this.wake.signal]));
        continue; // re-check: a nudge may have moved nextAt
      }
      await this.refresh('scheduled');
    }
  }

  /** Waits for a hook started by the last refresh (for --once and tests). */
  async hookSettled(): Promise<void> {
    await this.hookRunning;
  }

  private async attempt(reason: string): Promise<RefreshOutcome> {
    try {
      const issued = await requestToken({
        file: this.opts.file,
        endpoint: this.opts.endpoint,
        keys: this.opts.keys,
        sendEncKey: this.sendEncKey,
        now: this.deps.now,
        clock: this.clock,
        post: this.deps.post,
      });
      this.reportSkew();
      await this.accept(issued, reason);
      return { ok: true, token: issued };
    } catch (e) {
      // Whatever went wrong is a failed refresh: logged, counted, backed off. The agent never exits
      // for one, since start.sh would take the gateway down with it (issue 12 A).
      const err =
        (e as Error)?.name === 'AgentError'
          ? (e as AgentError)
          : new AgentError('internal_error', `unexpected error: ${(e as Error)?.message ?? String(e)}`);
      this.reportSkew();
      await this.fail(err);
      return { ok: false, error: err };
    }
  }

  private async accept(t: IssuedToken, reason: string): Promise<void> {
    const now = this.deps.now();
    const { sentAt } = t;
    const lifetimeMs = (t.exp - t.iat) * 1000;
    const { store } = this.deps;
    const creds = t.credentials;
    const changed = creds !== undefined && creds.version !== this.credentials?.version;
    // Each write either lands whole or throws write_failed (files.ts); memory follows what is on
    // disk, so a failed write leaves the current token (or credentials) in use.
    // Credentials first: a reader that sees the new token finds its credentials already there.
    if (creds && changed) {
      await store.writeCredentials(creds);
      this.credentials = creds;
    }
    await store.writeToken(t.token);
    // Without credentials in the token, the issuer may have lost our key (a new bootstrap): send it again.
    this.sendEncKey = !creds;
    this.current = {
      token: t.token,
      iat: t.iat,
      exp: t.exp,
      kid: t.kid,
      jti: t.jti,
      localStart: sentAt,
      localExpiry: sentAt + lifetimeMs,
      credVer: creds?.version,
    };
    this.nextAt = refreshAt(sentAt, lifetimeMs, now, this.deps.random());
    this.state = {
      ...this.state,
      expires_at: t.exp,
      issued_at: t.iat,
      kid: t.kid,
      jti: t.jti,
      credentials_version: this.credentials?.version,
      last_refresh: new Date(now).toISOString(),
      last_error: undefined,
      consecutive_failures: 0,
    };
    // A state.json that cannot be written fails the refresh too (the token on disk is new by now,
    // and served); the retry after the backoff writes it again.
    await store.writeState(this.state);
    this.failures = 0;
    this.refusalLogged = false;
    this.metrics.refreshes.ok++;
    this.deps.log('info', 'token_refreshed', {
      reason,
      kid: t.kid,
      jti: t.jti,
      version: this.credentials?.version,
      credentials_changed: changed,
      expires_in: Math.round((sentAt + lifetimeMs - now) / 1000),
      next_refresh_in: Math.round((this.nextAt - now) / 1000),
    });
    this.maybeRunHook();
  }

  /** Logs the measured clock difference the first time, and after a step (IssuerClock.shouldReport). */
  private reportSkew(): void {
    if (!this.clock.shouldReport()) return;
    const ahead = this.clock.agentAheadS()!;
    const beyond = Math.abs(ahead) > ASSUMED_ISSUER_CLOCK_SKEW_S;
    this.deps.log(beyond ? 'warn' : 'info', 'clock_skew_measured', {
      skew_s: ahead,
      allowed_s: ASSUMED_ISSUER_CLOCK_SKEW_S,
      source: this.clock.source,
      message: describeSkew(ahead),
      assertions: this.clock.correcting() ? "signed on the issuer's time" : "signed on the agent's time (difference too large to follow)",
    });
  }

  /** Runs the hook when the delivered version has not had a successful run yet; never awaited by a refresh. */
  private maybeRunHook(): void {
    const version = this.credentials?.version;
    const hook = this.deps.hook;
    if (!hook || !version || version === this.state.hook_version || this.hookRunning) return;
    this.hookRunning = (async () => {
      const r = await hook(version);
      if (r.ok) {
        this.metrics.hooks.ok++;
        this.state = { ...this.state, hook_version: version };
        await this.deps.store.writeState(this.state).catch(() => undefined);
        this.deps.log('info', 'hook_ran', { version, result: r.detail });
      } else {
        this.metrics.hooks.error++;
        this.deps.log('error', 'hook_failed', { version, result: r.detail, retry: 'at the next refresh' });
      }
    })().finally(() => {
      this.hookRunning = undefined;
    });
  }

  private async fail(e: AgentError): Promise<void> {
    const now = this.deps.now();
    this.failures++;
    const max = this.opts.maxBackoffMs ?? BACKOFF_MAX_MS;
    const refused = isRefusal(e);
    const wait = refused ? refusedDelay(this.deps.random(), max) : backoffDelay(this.failures, this.deps.random(), max);
    this.nextAt = now + wait;
    this.metrics.failures[e.code] = (this.metrics.failures[e.code] ?? 0) + 1;
    // Issue 11 finding 5: the issuer encrypted to a key this process does not hold (another process
    // registered its own with the same bootstrap file). Register ours again on the next request;
    // until then the current token and credentials stay in use.
    const reregister = e.code === 'credentials_undecryptable';
    if (reregister) this.sendEncKey = true;
    if (refused) {
      this.metrics.refreshes.refused++;
      // Said once: the operator must act (re-bootstrap); repeating it every retry helps nobody.
      if (!this.refusalLogged) {
        this.deps.log('error', 'bootstrap_refused', {
          code: e.code,
          status: e.status,
          message: e.message,
          action: 'issue a new bootstrap key for this sandbox',
          retry_in: Math.round(wait / 1000),
        });
        this.refusalLogged = true;
      }
    } else {
      this.metrics.refreshes.error++;
      this.deps.log('warn', 'refresh_failed', {
        code: e.code,
        status: e.status,
        path: e.path,
        rule: e.rule,
        skew_s: e.code === 'clock_skew' ? this.clock.agentAheadS() : undefined,
        message: e.message,
        action: reregister ? "re-registering this agent's encryption key on the next request" : undefined,
        failures: this.failures,
        retry_in: Math.round(wait / 1000),
        token_valid: this.healthy(),
      });
    }
    this.state = { ...this.state, last_error: `${e.code}: ${e.message}`, consecutive_failures: this.failures };
    await this.deps.store.writeState(this.state).catch(() => undefined);
  }
}
