/**
 * Issue 12 D and E, in real time: the verifier (createVerifier, default settings unless named)
 * against a JWKS server on 127.0.0.1 that is switched between pass, refuse (the port is closed:
 * connection refused), 503 and hang (requests are read and never answered), with traffic at 20
 * requests a second and real Ed25519 keys made here. Then the same through the verifying proxy as
 * a process (`container/gateway-proxy.ts` from source), with its built-in settings.
 *
 * - D: a key the verifier never saw, made while the JWKS is out, is accepted within 2 s of the
 *   JWKS coming back (it was 30 s: the unknown-kid cooldown also applied after failed fetches).
 * - E: while the JWKS hangs and a stale copy is cached, no request takes 1 s or more (they took
 *   up to the 5 s fetch timeout: every request waited for the refetch).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http, { type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { JWK } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { VerifierError } from '../../src/verifier/errors.js';
import { createVerifier, type Verifier, type VerifierEvent } from '../../src/verifier/verify.js';
import { freePort, ROOT } from '../node/worker-process.js';
import {
  AUDIENCE,
  ISSUER,
  makeKey,
  proxyFlags,
  startUpstream,
  type TestKey,
  token,
  type Upstream,
  writeCredentials,
} from './gateway-proxy-fixtures.js';

/** The issuer's own Cache-Control (src/routes/well-known.ts), with a max-age chosen per test. */
const issuerCacheControl = (maxAge: number) => `public, max-age=${maxAge}, stale-while-revalidate=60, stale-if-error=86400`;
/** The issue's acceptance bounds. */
const RECOVERY_BOUND_S = 2;
const SLOW_MS = 1_000;
/** 20 requests a second, as in the fault run. */
const TRAFFIC_INTERVAL_MS = 50;

type Mode = 'pass' | 'refuse' | '503' | 'hang';

interface SwitchableJwks {
  url: string;
  keys: JWK[];
  cacheControl: string;
  /** Requests that arrived, whatever the mode. */
  hits: number;
  /** Requests held unanswered right now (hang), and the most ever held at once. */
  held: number;
  maxHeld: number;
  mode(): Mode;
  set(mode: Mode): Promise<void>;
  close(): Promise<void>;
}

/** A JWKS server whose failure mode can be switched; `refuse` closes the port itself. */
async function startSwitchableJwks(keys: JWK[]): Promise<SwitchableJwks> {
  let mode: Mode = 'pass';
  const hung = new Set<ServerResponse>();
  const sockets = new Set<Socket>();
  const state: SwitchableJwks = {
    url: '',
    keys,
    cacheControl: issuerCacheControl(300),
    hits: 0,
    held: 0,
    maxHeld: 0,
    mode: () => mode,
    set: async (m) => {
      if (m === 'refuse' && mode !== 'refuse') {
        // Connection refused: nothing listens on the port, and no kept-alive connection survives.
        await new Promise<void>((r) => {
          server.close(() => r());
          for (const s of sockets) s.destroy();
        });
      }
      if (m !== 'refuse' && mode === 'refuse') await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
      mode = m;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      if (mode !== 'refuse') await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = http.createServer((_req, res) => {
    state.hits++;
    if (mode === 'hang') {
      // Read and never answered: the verifier's own timeout is what ends it.
      hung.add(res);
      state.held = hung.size;
      state.maxHeld = Math.max(state.maxHeld, hung.size);
      res.on('close', () => {
        hung.delete(res);
        state.held = hung.size;
      });
      return;
    }
    if (mode === '503') {
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' });
      return res.end('unavailable');
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': state.cacheControl });
    res.end(JSON.stringify({ keys: state.keys }));
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  state.url = `http://127.0.0.1:${port}/.well-known/jwks.json`;
  return state;
}

interface Sample {
  startedAt: number;
  endedAt: number;
  ms: number;
  /** 'accepted' or the verifier's code (or the HTTP status through the proxy). */
  outcome: string;
}

/**
 * Sends one request every TRAFFIC_INTERVAL_MS (without waiting for earlier ones, as independent
 * clients would) until `stop()` says so. `samples` fills as requests finish; `done` settles once
 * every request sent has.
 */
async function trafficUntil(
  send: () => Promise<string>,
  stop: (samples: Sample[]) => boolean,
  maxMs: number,
): Promise<{ samples: Sample[]; done: Promise<void> }> {
  const samples: Sample[] = [];
  const pending: Promise<void>[] = [];
  const begin = performance.now();
  while (!stop(samples) && performance.now() - begin < maxMs) {
    const startedAt = performance.now();
    pending.push(
      send().then((outcome) => {
        const endedAt = performance.now();
        samples.push({ startedAt, endedAt, ms: endedAt - startedAt, outcome });
      }),
    );
    await new Promise((r) => setTimeout(r, TRAFFIC_INTERVAL_MS));
  }
  return { samples, done: Promise.all(pending).then(() => undefined) };
}

/** trafficUntil, then every request it sent has finished. */
async function traffic(send: () => Promise<string>, stop: (samples: Sample[]) => boolean, maxMs: number): Promise<Sample[]> {
  const { samples, done } = await trafficUntil(send, stop, maxMs);
  await done;
  return samples;
}

async function outcomeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'accepted';
  } catch (e) {
    if (e instanceof VerifierError) return e.code;
    throw e;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const slow = (samples: Sample[]) => samples.filter((s) => s.ms >= SLOW_MS);
const summary = (samples: Sample[]) => {
  const count: Record<string, number> = {};
  for (const s of samples) count[s.outcome] = (count[s.outcome] ?? 0) + 1;
  return count;
};

let keyA: TestKey;
let jwks: SwitchableJwks;
let events: VerifierEvent[];

beforeAll(async () => {
  keyA = await makeKey();
});
afterEach(async () => {
  await jwks?.close();
});

function verifier(jwksOptions: Parameters<typeof createVerifier>[0]['jwks'] = undefined): Verifier {
  events = [];
  return createVerifier({ jwksUrl: jwks.url, issuer: ISSUER, audience: AUDIENCE, jwks: jwksOptions, onEvent: (e) => events.push(e) });
}

/**
 * The fault run of issue 12 D: the verifier holds a copy with key A; the JWKS goes out (`outage`);
 * key B is made and tokens signed by it arrive at 20/s; the JWKS comes back publishing A and B.
 * Returns the seconds from the JWKS coming back to the first accepted B request.
 */
async function recoveryAfter(outage: Mode, v: Verifier, outageMs: number): Promise<{ seconds: number; during: Sample[]; after: Sample[] }> {
  expect(await outcomeOf(v.verify(await token(keyA)))).toBe('accepted');
  await jwks.set(outage);
  const keyB = await makeKey();
  const sendB = async () => outcomeOf(v.verify(await token(keyB)));
  const outageStart = performance.now();
  // The JWKS comes back on time, whether or not requests of the outage are still waiting.
  const outageTraffic = await trafficUntil(sendB, () => performance.now() - outageStart >= outageMs, outageMs + 1_000);
  jwks.keys = [keyA.publicJwk, keyB.publicJwk];
  await jwks.set('pass');
  const back = performance.now();
  const after = await traffic(sendB, (s) => s.some((x) => x.outcome === 'accepted'), 40_000);
  await outageTraffic.done;
  const accepted = [...outageTraffic.samples, ...after].filter((s) => s.outcome === 'accepted');
  const first = Math.min(...accepted.map((s) => s.endedAt));
  const during = outageTraffic.samples.filter((s) => s.endedAt < back);
  return { seconds: (first - back) / 1000, during, after };
}

describe('issue 12 D: a key made during a JWKS outage is accepted within 2 s of the JWKS coming back', () => {
  for (const outage of ['refuse', '503'] as const) {
    it(`failure D: after ${outage === 'refuse' ? 'connection refused' : '503'}, a never-seen kid is accepted within ${RECOVERY_BOUND_S} s of the JWKS coming back`, async () => {
      jwks = await startSwitchableJwks([keyA.publicJwk]);
      const v = verifier();
      const { seconds, during, after } = await recoveryAfter(outage, v, 3_000);
      console.log(
        `failure D (${outage}): recovery ${seconds.toFixed(2)} s; during the outage ${JSON.stringify(summary(during))}; after ${JSON.stringify(summary(after))}`,
      );
      expect(new Set(during.map((s) => s.outcome))).toEqual(new Set(['unknown_kid']));
      expect(seconds).toBeLessThanOrEqual(RECOVERY_BOUND_S);
      // Bounded while the JWKS was out: at most one fetch a second (plus the first one and slack).
      expect(events.filter((e) => e.event === 'jwks_fetch_failed').length).toBeLessThanOrEqual(3 + 2);
      // Once it is back, junk kids are under the 30 s cooldown again: one refetch, not one a second.
      const hits = jwks.hits;
      const junk = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => outcomeOf(v.verify(await token({ ...keyA, kid: `junk-${i}` })))),
      );
      expect(new Set(junk)).toEqual(new Set(['unknown_kid']));
      await sleep(1_200);
      expect(await outcomeOf(v.verify(await token({ ...keyA, kid: 'junk-late' })))).toBe('unknown_kid');
      expect(jwks.hits - hits).toBeLessThanOrEqual(1);
    }, 60_000);
  }

  it('failure D: after a hang, recovery is bounded by the fetch timeout (5 s) that holds the one fetch slot', async () => {
    jwks = await startSwitchableJwks([keyA.publicJwk]);
    const v = verifier();
    const { seconds, during } = await recoveryAfter('hang', v, 3_000);
    console.log(
      `failure D (hang): recovery ${seconds.toFixed(2)} s; during ${JSON.stringify(summary(during))}; most fetches held at once ${jwks.maxHeld}`,
    );
    expect(jwks.maxHeld).toBe(1);
    expect(seconds).toBeLessThanOrEqual(5 + RECOVERY_BOUND_S);
  }, 60_000);
});

describe('issue 12 E: a hung JWKS with a stale copy cached stalls no request', () => {
  it('failure E: with traffic, no request takes 1 s or more while the JWKS hangs past max-age; one refetch at a time', async () => {
    jwks = await startSwitchableJwks([keyA.publicJwk]);
    jwks.cacheControl = issuerCacheControl(1);
    // min-age 1 s so that the copy goes stale within the test (the default floor is 10 s).
    const v = verifier({ minAgeSeconds: 1 });
    const repeated = await token(keyA, { ttl: 3600 });
    expect(await outcomeOf(v.verify(repeated))).toBe('accepted');
    await jwks.set('hang');
    let n = 0;
    const begin = performance.now();
    // 12 s: the copy is stale after 1 s; two fetch timeouts (5 s each) pass.
    const samples = await traffic(
      async () => outcomeOf(v.verify(n++ % 4 === 0 ? repeated : await token(keyA))),
      () => performance.now() - begin >= 12_000,
      13_000,
    );
    const worst = Math.max(...samples.map((s) => s.ms));
    console.log(
      `failure E (traffic through the hang): ${samples.length} requests, ${slow(samples).length} took >= 1 s, worst ${worst.toFixed(0)} ms, outcomes ${JSON.stringify(summary(samples))}, JWKS requests ${jwks.hits}`,
    );
    expect(slow(samples)).toEqual([]);
    expect(summary(samples)).toEqual({ accepted: samples.length });
    expect(jwks.maxHeld).toBe(1);
    expect(v.status().jwks).toMatchObject({ usable: true, fresh: false, lastError: 'timeout' });
  }, 60_000);

  it('failure E: after idling past max-age, requests wait at most 0.5 s for the hung refetch, then uses the stale copy', async () => {
    jwks = await startSwitchableJwks([keyA.publicJwk]);
    jwks.cacheControl = issuerCacheControl(1);
    const v = verifier({ minAgeSeconds: 1 });
    expect(await outcomeOf(v.verify(await token(keyA)))).toBe('accepted');
    await jwks.set('hang');
    await sleep(2_500); // idle: the copy is past max-age (1 s)
    const begin = performance.now();
    const samples = await traffic(
      async () => outcomeOf(v.verify(await token(keyA))),
      () => performance.now() - begin >= 7_000,
      8_000,
    );
    const worst = Math.max(...samples.map((s) => s.ms));
    console.log(
      `failure E (idle, then traffic): ${samples.length} requests, ${slow(samples).length} took >= 1 s, worst ${worst.toFixed(0)} ms, outcomes ${JSON.stringify(summary(samples))}`,
    );
    expect(slow(samples)).toEqual([]);
    expect(summary(samples)).toEqual({ accepted: samples.length });
    expect(jwks.maxHeld).toBe(1);
  }, 60_000);

  it('failure E: the JWKS coming back after the hang is picked up by the background refetch', async () => {
    jwks = await startSwitchableJwks([keyA.publicJwk]);
    jwks.cacheControl = issuerCacheControl(1);
    const v = verifier({ minAgeSeconds: 1, cooldownSeconds: 2, timeoutSeconds: 1 });
    expect(await outcomeOf(v.verify(await token(keyA)))).toBe('accepted');
    await jwks.set('hang');
    await sleep(1_200);
    expect(await outcomeOf(v.verify(await token(keyA)))).toBe('accepted');
    await sleep(1_200); // the background refetch has timed out
    expect(v.status().jwks).toMatchObject({ fresh: false, lastError: 'timeout' });
    await jwks.set('pass');
    const back = performance.now();
    const samples = await traffic(
      async () => outcomeOf(v.verify(await token(keyA))),
      () => v.status().jwks.fresh,
      10_000,
    );
    console.log(`failure E: fresh again ${((performance.now() - back) / 1000).toFixed(2)} s after the JWKS came back (cooldown 2 s)`);
    expect(slow(samples)).toEqual([]);
    expect(v.status().jwks).toMatchObject({ fresh: true, lastError: null });
  }, 60_000);
});

describe('issue 12 D and E through the verifying proxy process', () => {
  let dir: string;
  let upstream: Upstream;
  let proxy: ChildProcess | undefined;
  let stdout = '';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'verifier-outage-'));
    upstream = await startUpstream();
    writeCredentials(dir, { GATEWAY_TOKEN: 'gw-outage-value' }, 'v1');
  });
  afterAll(async () => {
    proxy?.kill('SIGTERM');
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('failure D and failure E: the real proxy (default settings) serves a stale copy through a hang and accepts a new key within 2 s of the JWKS coming back', async () => {
    jwks = await startSwitchableJwks([keyA.publicJwk]);
    jwks.cacheControl = issuerCacheControl(1); // clamped to the proxy's 10 s floor
    const port = await freePort();
    proxy = spawn(
      process.execPath,
      [
        '--import',
        `${ROOT}scripts/register-ts.mjs`,
        `${ROOT}container/gateway-proxy.ts`,
        ...proxyFlags({ jwksUrl: jwks.url, upstreamUrl: upstream.url, dir, port }),
      ],
      { cwd: ROOT, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proxy.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    proxy.stderr!.on('data', (d: Buffer) => (stdout += d.toString()));
    const base = `http://127.0.0.1:${port}`;
    const get = async (t: string): Promise<string> => {
      try {
        const res = await fetch(`${base}/api/x`, { headers: { authorization: `Bearer ${t}` } });
        await res.arrayBuffer();
        return res.status === 200
          ? 'accepted'
          : `${res.status} ${/error_description="([a-z_]+)"/.exec(res.headers.get('www-authenticate') ?? '')?.[1] ?? ''}`;
      } catch {
        return 'proxy unreachable';
      }
    };
    for (let i = 0; ; i++) {
      const ok = await fetch(`${base}/healthz`)
        .then((r) => r.status === 200)
        .catch(() => false);
      if (ok) break;
      if (i > 300) throw new Error(`proxy did not become healthy: ${stdout}`);
      await sleep(100);
    }
    const sent: string[] = [];
    const tokenA = async () => {
      const t = await token(keyA);
      sent.push(t);
      return t;
    };

    // E: the copy is stale after 10 s; the JWKS hangs from the start, so the refetch hangs.
    await jwks.set('hang');
    const begin = performance.now();
    const hung = await traffic(
      async () => get(await tokenA()),
      () => performance.now() - begin >= 17_000,
      18_000,
    );
    console.log(
      `failure E (proxy): ${hung.length} requests, ${slow(hung).length} took >= 1 s, worst ${Math.max(...hung.map((s) => s.ms)).toFixed(0)} ms, ${JSON.stringify(summary(hung))}`,
    );
    expect(slow(hung)).toEqual([]);
    expect(summary(hung)).toEqual({ accepted: hung.length });
    expect(jwks.maxHeld).toBe(1);

    // D: out (refused) while a new key signs; back with it.
    await jwks.set('refuse');
    const keyB = await makeKey();
    const tokenB = async () => {
      const t = await token(keyB);
      sent.push(t);
      return t;
    };
    const outageStart = performance.now();
    const outageTraffic = await trafficUntil(
      async () => get(await tokenB()),
      () => performance.now() - outageStart >= 3_000,
      4_000,
    );
    jwks.keys = [keyA.publicJwk, keyB.publicJwk];
    await jwks.set('pass');
    const back = performance.now();
    const after = await traffic(
      async () => get(await tokenB()),
      (s) => s.some((x) => x.outcome === 'accepted'),
      40_000,
    );
    await outageTraffic.done;
    const during = outageTraffic.samples.filter((s) => s.endedAt < back);
    const seconds =
      (Math.min(...[...outageTraffic.samples, ...after].filter((s) => s.outcome === 'accepted').map((s) => s.endedAt)) - back) / 1000;
    console.log(`failure D (proxy): recovery ${seconds.toFixed(2)} s; during ${JSON.stringify(summary(during))}`);
    expect(new Set(during.map((s) => s.outcome))).toEqual(new Set(['401 unknown_kid']));
    expect(seconds).toBeLessThanOrEqual(RECOVERY_BOUND_S);

    // The log names the faults and never a token.
    expect(stdout).toContain('"jwks_fetch_failed"');
    for (const t of sent) expect(stdout).not.toContain(t.split('.')[2]!);
  }, 90_000);
});
