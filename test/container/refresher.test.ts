/**
 * The refresh loop with an injected clock, randomness, sleep and fetch: no real timers.
 */

import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompactEncrypt, exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { prepareKeys } from '../../container/agent/client.js';
import { AgentError } from '../../container/agent/errors.js';
import { type AgentState, prepareDir, STATE_FILE, TOKEN_FILE, writeAtomic } from '../../container/agent/files.js';
import type { HookResult } from '../../container/agent/hook.js';
import type { Post } from '../../container/agent/http-client.js';
import { Refresher, type RefresherDeps } from '../../container/agent/refresher.js';
import { credentialsVersion } from '../../container/agent/restore.js';
import { BACKOFF_MAX_MS } from '../../container/agent/schedule.js';
import { startServer } from '../../container/agent/server.js';
import { type BootstrapFile, CREDENTIALS_FILE, type CredentialsFile } from '../../src/admin-api.js';

const T0 = 1_800_000_000_000;
const TTL = 600;

async function bootstrapFile(): Promise<BootstrapFile> {
  const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
  return {
    client_id: 'sb',
    issuer: 'http://issuer.test',
    token_endpoint: 'http://issuer.test/oauth/token',
    key: { ...(await exportJWK(privateKey)), kid: 'boot-kid' },
  };
}

type Reply = { status: number; body?: unknown } | 'network';

/** A fake issuer at the network edge: answers from a script, encrypting credentials to the enc_jwk it last saw. */
class FakeIssuer {
  calls: { at: number; sentEncKey: boolean }[] = [];
  script: Reply[] = [];
  version = 'v1';
  /** Delivered as they are, instead of the made-up values of `version`. */
  credentials: CredentialsFile | undefined;
  private encKey: JWK | undefined;
  private signer = generateKeyPair('EdDSA');
  gate: Promise<void> | undefined;
  afterCall: (() => void) | undefined;
  /** The issuer's clock minus the agent's (the injected clock is the agent's). */
  offsetMs = 0;
  ttl = TTL;
  /** Virtual time each request takes. */
  latencyMs = 0;
  /** Apply the issuer's time rules to the assertion (README "Token endpoint"), with this CLOCK_SKEW. */
  skewS: number | undefined;
  /** Send a Date header on every answer. */
  dateHeader = false;

  constructor(private readonly clock: { t: number }) {}

  /** Another process registered its own X25519 key for this sandbox (a `--once` run with the same bootstrap file). */
  async replaceEncKey(): Promise<void> {
    const { publicKey } = await generateKeyPair('ECDH-ES+A256KW', { crv: 'X25519', extractable: true });
    this.encKey = await exportJWK(publicKey);
  }

  fetch: Post = async (_url, init) => {
    const params = new URLSearchParams(String(init?.body));
    const enc = params.get('enc_jwk');
    this.calls.push({ at: this.clock.t, sentEncKey: enc !== null });
    this.afterCall?.();
    if (this.gate) await this.gate;
    this.clock.t += this.latencyMs;
    const issuerNow = this.clock.t + this.offsetMs;
    const headers: Record<string, string> = this.dateHeader ? { date: new Date(issuerNow).toUTCString() } : {};
    if (this.skewS !== undefined) {
      const a = JSON.parse(Buffer.from(String(params.get('client_assertion')).split('.')[1]!, 'base64url').toString()) as {
        iat: number;
        exp: number;
      };
      const refuse = (rule: string) =>
        new Response(JSON.stringify({ error: 'invalid_client', error_description: `${rule}: refused` }), { status: 401, headers });
      if (a.exp + this.skewS <= issuerNow / 1000) return refuse('expired');
      if (a.iat > issuerNow / 1000 + this.skewS) return refuse('iat_in_future');
    }
    const reply = this.script.shift() ?? { status: 200 };
    if (reply === 'network') throw Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
    if (enc && reply.status === 200) this.encKey = JSON.parse(enc) as JWK;
    if (reply.status !== 200)
      return new Response(JSON.stringify(reply.body ?? { error: 'server_error' }), { status: reply.status, headers });
    const iat = Math.floor((this.clock.t + this.offsetMs) / 1000);
    const claims: Record<string, unknown> = { sub: 'sb', jti: `t${this.calls.length}` };
    if (this.encKey) {
      const creds: CredentialsFile = this.credentials ?? { version: this.version, values: { GATEWAY_TOKEN: `value-${this.version}` } };
      claims.cred = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(creds)))
        .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM' })
        .encrypt(await importJWK(this.encKey, 'ECDH-ES+A256KW'));
      claims.cred_ver = creds.version;
    }
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'EdDSA', kid: 'sig-1', typ: 'at+jwt' })
      .setIssuedAt(iat)
      .setExpirationTime(iat + this.ttl)
      .sign((await this.signer).privateKey);
    return new Response(JSON.stringify({ access_token: token, token_type: 'Bearer', expires_in: this.ttl }), { status: 200, headers });
  };
}

async function setup(
  opts: {
    random?: () => number;
    hook?: (v: string) => Promise<HookResult>;
    store?: RefresherDeps['store'];
    aroundSleep?: () => Promise<void>;
  } = {},
) {
  const clock = { t: T0 };
  const issuer = new FakeIssuer(clock);
  const logs: { level: string; event: string; fields: Record<string, unknown> }[] = [];
  const sleeps: number[] = [];
  const written = { token: [] as string[], credentials: [] as CredentialsFile[], state: [] as AgentState[] };
  const deps: RefresherDeps = {
    now: () => clock.t,
    random: opts.random ?? (() => 0.5),
    // Virtual time: a sleep advances the clock by its full length unless a nudge cut it short.
    sleep: async (ms, signal) => {
      sleeps.push(ms);
      await opts.aroundSleep?.();
      if (!signal.aborted) clock.t += ms;
      await opts.aroundSleep?.();
    },
    post: issuer.fetch,
    log: (level, event, fields = {}) => logs.push({ level, event, fields }),
    store: opts.store ?? {
      writeToken: async (t) => void written.token.push(t),
      writeCredentials: async (c) => void written.credentials.push(c),
      writeState: async (s) => void written.state.push(s),
    },
    hook: opts.hook,
  };
  const file = await bootstrapFile();
  const r = new Refresher({ file, endpoint: file.token_endpoint, keys: await prepareKeys(file) }, deps);
  return { r, clock, issuer, logs, sleeps, written };
}

/** Runs the loop until `n` token requests were made, then stops it. */
async function runUntilCalls(s: Awaited<ReturnType<typeof setup>>, n: number): Promise<void> {
  const stop = new AbortController();
  s.issuer.afterCall = () => {
    if (s.issuer.calls.length >= n) stop.abort();
  };
  await s.r.run(stop.signal);
}

describe('Refresher schedule', () => {
  it('refreshes within 40%..60% of each token lifetime, across many lifetimes', async () => {
    let i = 0;
    const randoms = [0, 0.999, 0.5, 0.25, 0.75, 0.1, 0.9];
    const s = await setup({ random: () => randoms[i++ % randoms.length]! });
    await runUntilCalls(s, 12);
    const gaps = s.issuer.calls.slice(1).map((c, k) => (c.at - s.issuer.calls[k]!.at) / (TTL * 1000));
    expect(gaps).toHaveLength(11);
    for (const g of gaps) {
      expect(g).toBeGreaterThanOrEqual(0.4);
      expect(g).toBeLessThanOrEqual(0.6);
    }
    // Jitter is used: not every gap is the same.
    expect(new Set(gaps.map((g) => g.toFixed(3))).size).toBeGreaterThan(3);
    expect(s.r.healthy()).toBe(true);
  });

  it('backs off exponentially from 1 s to the 5 min cap with full jitter, and keeps the token meanwhile', async () => {
    const s = await setup({ random: () => 0.999999 });
    s.issuer.script = [{ status: 200 }, ...Array.from({ length: 14 }, () => 'network' as const)];
    await runUntilCalls(s, 15);
    const gaps = s.issuer.calls.slice(2).map((c, k) => c.at - s.issuer.calls[k + 1]!.at);
    const expected = [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300].map((x) => x * 1000 - 1);
    expect(gaps).toEqual(expected);
    expect(s.r.failures).toBe(14);
    expect(s.logs.filter((l) => l.event === 'refresh_failed')).toHaveLength(14);
    // The first token was issued at the first call and lives 600 s; the loop ran past that.
    expect(s.r.current?.jti).toBe('t1');
    expect(s.r.healthy()).toBe(false);
  });

  it('full jitter: a zero random retries at once, never below zero', async () => {
    const s = await setup({ random: () => 0 });
    s.issuer.script = [{ status: 503 }, { status: 503 }, { status: 503 }];
    await runUntilCalls(s, 4);
    expect(s.issuer.calls.map((c) => c.at - T0)).toEqual([0, 0, 0, 0]);
  });

  it('after a failure, a success resets the backoff', async () => {
    const s = await setup({ random: () => 0.999999 });
    s.issuer.script = [{ status: 200 }, 'network', 'network', { status: 200 }, 'network'];
    await runUntilCalls(s, 5);
    const last = s.issuer.calls[4]!.at - s.issuer.calls[3]!.at;
    expect(last).toBeGreaterThan(0.5 * TTL * 1000); // the normal schedule again, not a backoff
    expect(s.r.failures).toBe(1);
  });

  it('a refused bootstrap key is said once, and retries slow to the maximum backoff', async () => {
    const s = await setup({ random: () => 0.5 });
    s.issuer.script = [
      { status: 200 },
      ...Array.from({ length: 5 }, () => ({
        status: 401,
        body: { error: 'invalid_client', error_description: 'client_revoked: the sandbox is revoked' },
      })),
    ];
    await runUntilCalls(s, 6);
    const gaps = s.issuer.calls.slice(2).map((c, k) => c.at - s.issuer.calls[k + 1]!.at);
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(0.8 * BACKOFF_MAX_MS);
    const said = s.logs.filter((l) => l.event === 'bootstrap_refused');
    expect(said).toHaveLength(1);
    expect(String(said[0]!.fields.message)).toContain('client_revoked');
    expect(s.r.metrics.refreshes.refused).toBe(5);
  });
});

describe('Refresher clock skew', () => {
  it('failure B: agent clock 20 s ahead, 20 s tokens: a bounded number of refreshes in 36 s, and /healthz 200 while the token is valid', async () => {
    // /healthz is sampled right after each refresh and right before the next one.
    let sample: () => Promise<void> = async () => undefined;
    const s = await setup({ random: () => 0.5, aroundSleep: () => sample() });
    s.issuer.offsetMs = -20_000; // the issuer's clock is 20 s behind the agent's
    s.issuer.ttl = 20;
    s.issuer.latencyMs = 10; // each request takes 10 ms: a storm advances time too
    const server = await startServer(s.r, { host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const samples: { validAtIssuer: boolean; status: number; expiresIn: number }[] = [];
    sample = async () => {
      const issuerNow = s.clock.t + s.issuer.offsetMs;
      const res = await fetch(`${url}/healthz`);
      const body = (await res.json()) as { expires_in: number };
      samples.push({
        validAtIssuer: s.r.current !== undefined && s.r.current.exp * 1000 > issuerNow,
        status: res.status,
        expiresIn: body.expires_in,
      });
    };
    const stop = new AbortController();
    s.issuer.afterCall = () => {
      if (s.clock.t - T0 >= 36_000 || s.issuer.calls.length >= 1_000) stop.abort();
    };
    try {
      await s.r.run(stop.signal);
    } finally {
      server.close();
    }
    // 0, 10, 20, 30 s (50% of 20 s), and the one at 40 s is past the 36 s window.
    expect(s.issuer.calls.length).toBeLessThanOrEqual(5);
    expect(s.issuer.calls.length).toBeGreaterThanOrEqual(4);
    const gaps = s.issuer.calls.slice(1).map((c, k) => c.at - s.issuer.calls[k]!.at);
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(8_000);
    expect(samples.length).toBeGreaterThan(4);
    for (const x of samples) {
      expect(x.validAtIssuer).toBe(true);
      expect(x.status).toBe(200);
      expect(x.expiresIn).toBeGreaterThan(0);
      expect(x.expiresIn).toBeLessThanOrEqual(20);
    }
    const skew = s.logs.filter((l) => l.event === 'clock_skew_measured');
    expect(skew).toHaveLength(1);
    expect(skew[0]!.fields.skew_s).toBe(20);
  });
});

describe('Refresher clock skew: refusals', () => {
  const cases = [
    { name: '40 s ahead', aheadS: 40, rule: 'iat_in_future' },
    { name: '5 min ahead', aheadS: 300, rule: 'iat_in_future' },
    { name: '5 min behind', aheadS: -300, rule: 'expired' },
  ];
  for (const c of cases) {
    it(`failure C: agent ${c.name}, issuer with a Date header: says by how much, no re-bootstrap advice, normal backoff, then works on the issuer's time`, async () => {
      const s = await setup({ random: () => 0.5 });
      s.issuer.offsetMs = -c.aheadS * 1000;
      s.issuer.skewS = 30;
      s.issuer.dateHeader = true;
      s.issuer.ttl = 20;
      const first = await s.r.refresh('first');
      expect(first.ok).toBe(false);
      if (first.ok) return;
      expect(first.error.code).toBe('clock_skew');
      expect(first.error.rule).toBe(c.rule);
      expect(first.error.message).toContain(`the agent's clock differs from the issuer's by ${Math.abs(c.aheadS)} s (allowed: 30 s)`);
      expect(s.r.nextAt - s.clock.t).toBeLessThanOrEqual(1_000); // the first backoff step, not 4-5 min
      expect(s.r.metrics.refreshes.refused).toBe(0);
      expect(s.r.metrics.failures.clock_skew).toBe(1);
      const second = await s.r.refresh('retry');
      expect(second.ok).toBe(true);
      expect(s.r.healthy()).toBe(true);
      expect(s.r.expiresInMs()).toBe(20_000);
      const text = JSON.stringify(s.logs);
      expect(text).not.toMatch(/bootstrap_refused|new bootstrap key/);
      expect(s.logs.find((l) => l.event === 'refresh_failed')!.fields).toMatchObject({
        code: 'clock_skew',
        rule: c.rule,
        skew_s: c.aheadS,
      });
      const measured = s.logs.filter((l) => l.event === 'clock_skew_measured');
      expect(measured).toHaveLength(1);
      expect(measured[0]!.fields).toMatchObject({ skew_s: c.aheadS, allowed_s: 30, source: 'Date header' });
      expect(measured[0]!.level).toBe('warn');
    });
  }

  it('failure C: without a Date header, the refusal still names the clock, never the bootstrap key, and retries on the normal backoff', async () => {
    const s = await setup({ random: () => 0.999999 });
    s.issuer.offsetMs = -40_000;
    s.issuer.skewS = 30;
    await runUntilCalls(s, 6);
    const gaps = s.issuer.calls.slice(1).map((c, k) => c.at - s.issuer.calls[k]!.at);
    expect(gaps).toEqual([1, 2, 4, 8, 16].map((x) => x * 1000 - 1));
    expect(s.r.metrics.refreshes.refused).toBe(0);
    expect(s.r.metrics.failures.clock_skew).toBe(6);
    const failed = s.logs.filter((l) => l.event === 'refresh_failed');
    expect(String(failed[0]!.fields.message)).toMatch(
      /iat_in_future.*clock is probably ahead of the issuer's by more than the allowed 30 s/,
    );
    expect(JSON.stringify(s.logs)).not.toMatch(/bootstrap_refused|new bootstrap key/);
  });

  it('failure C: /healthz follows the issuer-relative expiry: agent 40 s behind, issuer gone after one 20 s token', async () => {
    const s = await setup({ random: () => 0.5 });
    s.issuer.offsetMs = 40_000; // the issuer's clock is 40 s ahead: the agent's is behind
    s.issuer.skewS = 30;
    s.issuer.ttl = 20;
    const server = await startServer(s.r, { host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      expect((await s.r.refresh('first')).ok).toBe(true);
      s.issuer.script = Array.from({ length: 10 }, () => 'network' as const);
      const exp = s.r.current!.exp * 1000; // issuer's clock
      const at = async (issuerTime: number) => {
        s.clock.t = issuerTime - s.issuer.offsetMs;
        const res = await fetch(`${url}/healthz`);
        return { status: res.status, expiresIn: ((await res.json()) as { expires_in: number }).expires_in };
      };
      expect(await at(exp - 1_000)).toEqual({ status: 200, expiresIn: 1 });
      // Expired at the issuer: the agent's clock says 40 s are left, /healthz says 503.
      expect(await at(exp + 1)).toMatchObject({ status: 503 });
      expect((await at(exp + 1)).expiresIn).toBeLessThan(0);
    } finally {
      server.close();
    }
  });
});

describe('Refresher single flight', () => {
  it('concurrent refreshes share one request; a nudge during a refresh joins it', async () => {
    const s = await setup();
    let open!: () => void;
    s.issuer.gate = new Promise((r) => (open = r));
    const first = s.r.refresh('scheduled');
    const nudges = [s.r.refresh('nudge'), s.r.refresh('nudge'), s.r.refresh('nudge')];
    await new Promise((r) => setTimeout(r, 10));
    expect(s.issuer.calls).toHaveLength(1);
    open();
    const outcomes = await Promise.all([first, ...nudges]);
    expect(new Set(outcomes).size).toBe(1);
    expect(outcomes[0]!.ok).toBe(true);
    s.issuer.gate = undefined;
    // Once settled, the next call starts a fresh attempt.
    await s.r.refresh('nudge');
    expect(s.issuer.calls).toHaveLength(2);
  });

  it('a nudge reschedules the loop from the new token', async () => {
    const s = await setup({ random: () => 0.5 });
    await s.r.refresh('first');
    expect(s.r.nextAt).toBe(T0 + 300_000);
    s.clock.t += 10_000;
    await s.r.refresh('nudge');
    expect(s.r.nextAt).toBe(T0 + 10_000 + 300_000);
  });
});

describe('Refresher credentials and hook', () => {
  it('sends its X25519 key first, writes credentials only when the version changes, runs the hook once per version', async () => {
    const ran: string[] = [];
    const s = await setup({ hook: async (v) => (ran.push(v), { ok: true, detail: 'exit 0' }) });
    await s.r.refresh('a');
    await s.r.hookSettled();
    expect(s.issuer.calls[0]!.sentEncKey).toBe(true);
    expect(s.written.credentials.map((c) => c.version)).toEqual(['v1']);
    await s.r.refresh('b');
    await s.r.hookSettled();
    expect(s.issuer.calls[1]!.sentEncKey).toBe(false);
    expect(s.written.credentials).toHaveLength(1);
    s.issuer.version = 'v2';
    await s.r.refresh('c');
    await s.r.hookSettled();
    expect(s.written.credentials.map((c) => c.version)).toEqual(['v1', 'v2']);
    expect(ran).toEqual(['v1', 'v2']);
    expect(s.written.token).toHaveLength(3);
    expect(s.written.state.at(-1)).toMatchObject({ credentials_version: 'v2', hook_version: 'v2', kid: 'sig-1' });
  });

  it('finding 5: a cred it cannot decrypt makes it re-send its key on the next request; logged once and counted', async () => {
    const s = await setup({ random: () => 0.5 });
    await s.r.refresh('first');
    await s.issuer.replaceEncKey();
    const states: boolean[] = [];
    s.issuer.afterCall = () => states.push(s.r.healthy());
    await runUntilCalls(s, 4);
    // 2nd: no key sent, cred undecryptable; 3rd (after a short backoff): key sent again, recovered.
    expect(s.issuer.calls.map((c) => c.sentEncKey)).toEqual([true, false, true, false]);
    expect(s.issuer.calls[2]!.at - s.issuer.calls[1]!.at).toBeLessThanOrEqual(1_000);
    const failed = s.logs.filter((l) => l.event === 'refresh_failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]!.fields).toMatchObject({ code: 'credentials_undecryptable' });
    expect(String(failed[0]!.fields.action)).toMatch(/re-registering/);
    expect(s.r.metrics.failures.credentials_undecryptable).toBe(1);
    expect(s.r.failures).toBe(0);
    expect(s.r.credentials?.version).toBe('v1');
    expect(s.written.credentials).toHaveLength(1); // same version: never rewritten
    expect(states.every(Boolean)).toBe(true); // the current token stayed valid throughout
  });

  it('a failing hook is logged and retried at the next refresh, without blocking it', async () => {
    const results = [false, true];
    const ran: string[] = [];
    const s = await setup({ hook: async (v) => (ran.push(v), { ok: results.shift()!, detail: 'exit 1' }) });
    await s.r.refresh('a');
    await s.r.hookSettled();
    expect(s.logs.some((l) => l.event === 'hook_failed')).toBe(true);
    await s.r.refresh('b');
    await s.r.hookSettled();
    expect(ran).toEqual(['v1', 'v1']);
    expect(s.r.state.hook_version).toBe('v1');
    await s.r.refresh('c');
    await s.r.hookSettled();
    expect(ran).toEqual(['v1', 'v1']);
  });

  it('restores a still-valid token from disk and refreshes at once', async () => {
    const ran: string[] = [];
    const s = await setup({ hook: async (v) => (ran.push(v), { ok: true, detail: 'exit 0' }) });
    const values = { GATEWAY_TOKEN: 'saved-value' };
    const creds = { version: credentialsVersion(values), values };
    s.issuer.credentials = creds;
    const { privateKey } = await generateKeyPair('EdDSA');
    const iat = T0 / 1000 - 500;
    const saved = await new SignJWT({ cred_ver: creds.version, jti: 'saved' })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'k' })
      .setIssuedAt(iat)
      .setExpirationTime(iat + TTL)
      .sign(privateKey);
    // Written 500 s ago, lives 600 s: 100 s left. state.json only remembers the hook's last version.
    s.r.restore({
      dir: '/saved',
      token: { path: '/saved/token', text: `${saved}\n`, writtenAt: T0 - 500_000 },
      credentials: { path: '/saved/credentials.json', text: JSON.stringify(creds), writtenAt: T0 - 500_000 },
      state: { path: '/saved/state.json', text: JSON.stringify({ hook_version: creds.version }), writtenAt: T0 - 500_000 },
      problems: [],
    });
    expect(s.r.healthy()).toBe(true);
    expect(s.r.expiresInMs()).toBe(100_000);
    expect(s.r.current?.jti).toBe('saved');
    expect(s.r.nextAt).toBe(T0);
    expect(s.logs.filter((l) => l.event === 'file_unusable')).toEqual([]);
    await s.r.refresh('restart');
    await s.r.hookSettled();
    expect(s.written.credentials).toHaveLength(0); // same version: not rewritten
    expect(ran).toEqual([]); // the hook already ran for it
  });

  it('logs carry ids and versions but never the token or a credential value', async () => {
    const s = await setup();
    const out = await s.r.refresh('a');
    if (!out.ok) throw out.error;
    const text = JSON.stringify(s.logs);
    expect(text).toContain('sig-1');
    expect(text).not.toContain(out.token.token);
    expect(text).not.toContain('value-v1');
    expect(JSON.stringify(s.written.state)).not.toContain('value-v1');
  });
});

describe('Refresher write failures', () => {
  /** The agent's real store: atomic writes into a real directory. */
  function fileStore(dir: string): RefresherDeps['store'] {
    return {
      writeToken: (t) => writeAtomic(dir, TOKEN_FILE, `${t}\n`),
      writeCredentials: (c) => writeAtomic(dir, CREDENTIALS_FILE, JSON.stringify(c)),
      writeState: (st) => writeAtomic(dir, STATE_FILE, JSON.stringify(st)),
    };
  }

  it('failure A: a write that fails (token path is a directory, EISDIR) is a failed refresh naming the path; token and files stay, no temp file, it recovers', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'refresher-write-'));
    try {
      await prepareDir(dir);
      const s = await setup({ random: () => 0.5, store: fileStore(dir) });
      const first = await s.r.refresh('first');
      expect(first.ok).toBe(true);
      const onDisk = readFileSync(join(dir, TOKEN_FILE), 'utf8');
      // The token path becomes a directory: the rename over it fails with EISDIR.
      rmSync(join(dir, TOKEN_FILE));
      mkdirSync(join(dir, TOKEN_FILE));
      s.clock.t += 10_000;
      const out = await s.r.refresh('nudge');
      expect(out.ok).toBe(false);
      if (out.ok) return;
      expect(out.error.code).toBe('write_failed');
      expect(out.error.path).toBe(join(dir, TOKEN_FILE));
      expect(out.error.message).toContain(join(dir, TOKEN_FILE));
      expect(out.error.message).toContain('EISDIR');
      const failed = s.logs.filter((l) => l.event === 'refresh_failed');
      expect(failed).toHaveLength(1);
      expect(failed[0]!.fields).toMatchObject({ code: 'write_failed', path: join(dir, TOKEN_FILE) });
      expect(s.r.metrics.failures.write_failed).toBe(1);
      expect(s.r.metrics.refreshes.error).toBe(1);
      // The token being served is still the first one, and still valid; backoff, not the schedule.
      expect(s.r.current?.jti).toBe('t1');
      expect(s.r.healthy()).toBe(true);
      expect(s.r.nextAt - s.clock.t).toBeLessThanOrEqual(1_000);
      expect(readdirSync(dir).filter((n) => n.startsWith('.tmp-'))).toEqual([]);

      // The path is a file again: the next attempt succeeds.
      rmSync(join(dir, TOKEN_FILE), { recursive: true });
      const again = await s.r.refresh('nudge');
      expect(again.ok).toBe(true);
      expect(s.r.current?.jti).toBe('t3');
      expect(readFileSync(join(dir, TOKEN_FILE), 'utf8')).not.toBe(onDisk);
      expect(s.r.failures).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('failure A: new credentials written, then the token write fails: still healthy on the current token, the credentials not written twice', async () => {
    const written: string[] = [];
    let failToken = false;
    const s = await setup({
      store: {
        writeToken: async () => {
          if (failToken)
            throw new AgentError('write_failed', 'cannot write /d/token (ENOSPC: no space left on device)', { path: '/d/token' });
          written.push('token');
        },
        writeCredentials: async (c) => void written.push(`credentials ${c.version}`),
        writeState: async () => void written.push('state'),
      },
    });
    expect((await s.r.refresh('first')).ok).toBe(true);
    s.issuer.version = 'v2';
    failToken = true;
    const out = await s.r.refresh('nudge');
    expect(out.ok).toBe(false);
    expect(s.r.current?.jti).toBe('t1');
    expect(s.r.credentials?.version).toBe('v2'); // on disk
    expect(s.r.healthStatus()).toBe('ok');
    failToken = false;
    expect((await s.r.refresh('retry')).ok).toBe(true);
    expect(written.filter((w) => w.startsWith('credentials'))).toEqual(['credentials v1', 'credentials v2']);
  });

  it('failure A: an unexpected error in a refresh is a failed refresh too, never a rejected promise', async () => {
    const s = await setup({
      store: {
        writeToken: async () => {
          throw new TypeError('not a disk problem');
        },
        writeCredentials: async () => undefined,
        writeState: async () => undefined,
      },
    });
    const out = await s.r.refresh('first');
    expect(out.ok).toBe(false);
    if (!out.ok) expect(out.error.code).toBe('internal_error');
    expect(s.logs.some((l) => l.event === 'refresh_failed' && l.fields.code === 'internal_error')).toBe(true);
  });
});
