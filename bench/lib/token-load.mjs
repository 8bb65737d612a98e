#!/usr/bin/env node
// The token bench's load generator (bench/README.md, "Load generator"): a closed loop of
// client_credentials requests with private_key_jwt (EdDSA) assertions, each from a client picked at
// random among `--clients` (one sandbox, or a thousand). It runs as its own process, on a core of its
// own, and prints one JSON report on stdout (progress on stderr), in the shape bench/lib/report.mjs reads.
//
// Why our own and not the shared harness's loadgen.mjs: that one speaks for one client only, and it
// signs its assertions in pauses between phases that leave every connection idle for seconds (see
// "Dropped requests" in bench/README.md). Here all assertions are signed before the first connection
// opens, warm-up and timed phase follow each other on the same connections with no gap, and every
// request's outcome is recorded, so stalls can be placed in time.
import { createPrivateKey, randomUUID, sign } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { Pool } from 'undici';
import { processTicks } from './run-info.mjs';

/** Assertion lifetime: what the agent uses (container/agent/client.ts signs for 60 s). */
const ASSERTION_TTL_S = 60;
/** A request slower than this counts as a stall in the report (the "1 to 3 s"). */
const STALL_MS = 1000;
/** Sampled tokens verified after the run, at most. */
const MAX_SAMPLES = 5000;
/**
 * The client keeps an idle connection for at most this long. workerd closes an idle keep-alive
 * connection after 5 s and sends no `Keep-Alive` header that would tell the client so; a client that
 * reuses a connection just as the server closes it loses that request ("other side closed").
 */
const CLIENT_KEEPALIVE_MS = 4000;

const BODY_PREFIX =
  'grant_type=client_credentials' +
  '&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer' +
  '&client_assertion=';
const HEADERS = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };

const b64u = (s) => Buffer.from(s).toString('base64url');
const round = (x, d = 2) => (x == null ? x : Math.round(x * 10 ** d) / 10 ** d);
const log = (...m) => console.error('[load]', ...m);

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** A signer per client: node:crypto's one-shot Ed25519 sign, about 3x WebCrypto's rate on one thread. */
function signers(clients, aud) {
  return clients.map(({ client_id: id, jwk }) => {
    const key = createPrivateKey({ key: jwk, format: 'jwk' });
    const header = b64u(JSON.stringify(jwk.kid ? { alg: 'EdDSA', kid: jwk.kid } : { alg: 'EdDSA' }));
    return {
      id,
      next() {
        const iat = Math.floor(Date.now() / 1000);
        const claims = { iss: id, sub: id, aud, jti: randomUUID(), iat, exp: iat + ASSERTION_TTL_S };
        const input = `${header}.${b64u(JSON.stringify(claims))}`;
        return { client: id, assertion: `${input}.${sign(null, Buffer.from(input), key).toString('base64url')}` };
      },
    };
  });
}

async function main() {
  const { values: a } = parseArgs({
    options: {
      url: { type: 'string' },
      aud: { type: 'string' },
      clients: { type: 'string' },
      jwks: { type: 'string' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
      connections: { type: 'string', default: '32' },
      'sample-rate': { type: 'string', default: '0.01' },
      'max-rate': { type: 'string', default: '6000' },
      'server-pid': { type: 'string' },
      out: { type: 'string' },
    },
  });
  for (const k of ['url', 'clients', 'jwks']) if (!a[k]) throw new Error(`--${k} is required`);
  const url = new URL(a.url);
  const aud = a.aud ?? url.origin;
  const duration = Number(a.duration);
  const warmup = Number(a.warmup);
  const connections = Number(a.connections);
  const sampleRate = Number(a['sample-rate']);
  const clients = JSON.parse(await readFile(a.clients, 'utf8'));
  if (!Array.isArray(clients) || !clients.length) throw new Error('--clients must name a JSON array of {client_id, jwk}');
  if (duration + warmup > ASSERTION_TTL_S - 15)
    throw new Error(`--warmup + --duration must stay under ${ASSERTION_TTL_S - 15} s (assertion lifetime)`);

  // 1. Every assertion before the first connection: none is signed while the server is measured.
  const keys = signers(clients, aud);
  const pick = () => keys[Math.floor(Math.random() * keys.length)];
  const want = Math.ceil(Number(a['max-rate']) * (duration + warmup));
  const t0 = performance.now();
  const pool = Array.from({ length: want }, () => pick().next());
  const signMs = performance.now() - t0;
  log(`${want} assertions for ${clients.length} client(s) signed in ${Math.round(signMs)} ms`);
  let taken = 0;
  let underruns = 0;
  const take = () => {
    if (taken < pool.length) return pool[taken++];
    underruns += 1;
    return pick().next();
  };

  const http = new Pool(url.origin, { connections, pipelining: 1, keepAliveTimeout: CLIENT_KEEPALIVE_MS });
  // Connections opened and closed, and when: a server that closes connections under load shows here.
  const conn = { opened: 0, closed: 0, closed_by: {}, closes: [] };
  http.on('connect', () => {
    conn.opened += 1;
  });
  http.on('disconnect', (_origin, _targets, err) => {
    conn.closed += 1;
    const why = err?.code ?? err?.name ?? 'none';
    conn.closed_by[why] = (conn.closed_by[why] ?? 0) + 1;
    if (conn.closes.length < 50) conn.closes.push({ at_s: round((performance.now() - timedFrom) / 1000, 3), why });
  });
  let timedFrom = performance.now();
  const post = async (assertion) => {
    const res = await http.request({ method: 'POST', path: url.pathname, headers: HEADERS, body: BODY_PREFIX + assertion });
    return { status: res.statusCode, text: await res.body.text() };
  };

  // 2. Warm-up then the timed phase, back to back on the same connections.
  const start = performance.now();
  timedFrom = start + warmup * 1000;
  const end = timedFrom + duration * 1000;
  const st = { requests: 0, ok: 0, ok_malformed: 0, non2xx: {}, errors: {}, errorBodies: {}, samples: [], firstOk: null };
  const lat = [];
  const seconds = Array.from({ length: Math.ceil(duration) }, () => ({ ok: 0, failed: 0, max_ms: 0 }));
  const stalls = [];
  const failures = [];
  let cpu0;
  let srv0;
  const loop = async () => {
    for (;;) {
      const now = performance.now();
      if (now >= end) return;
      const { client, assertion } = take();
      const timed = now >= timedFrom;
      try {
        const { status, text } = await post(assertion);
        const dt = performance.now() - now;
        if (!timed) continue;
        st.requests += 1;
        lat.push(dt);
        const sec = seconds[Math.min(seconds.length - 1, Math.floor((now - timedFrom) / 1000))];
        sec.max_ms = Math.max(sec.max_ms, dt);
        if (dt >= STALL_MS) stalls.push({ at_s: round((now - timedFrom) / 1000, 3), ms: Math.round(dt) });
        if (status >= 200 && status < 300) {
          st.ok += 1;
          sec.ok += 1;
          let tok;
          try {
            tok = JSON.parse(text);
          } catch {}
          if (typeof tok?.access_token !== 'string' || !tok.token_type) st.ok_malformed += 1;
          else if (Math.random() < sampleRate && st.samples.length < MAX_SAMPLES) st.samples.push({ client, token: tok.access_token });
          st.firstOk ??= { assertion, at: Date.now() };
        } else {
          sec.failed += 1;
          st.non2xx[status] = (st.non2xx[status] ?? 0) + 1;
          st.errorBodies[status] ??= text.slice(0, 300);
        }
      } catch (e) {
        if (!timed) {
          st.warmupErrors = (st.warmupErrors ?? 0) + 1;
          continue;
        }
        st.requests += 1;
        const code = e.code ?? e.name;
        st.errors[code] = (st.errors[code] ?? 0) + 1;
        const sec = seconds[Math.min(seconds.length - 1, Math.floor((now - timedFrom) / 1000))];
        sec.failed += 1;
        if (failures.length < 50)
          failures.push({ at_s: round((now - timedFrom) / 1000, 3), after_ms: Math.round(performance.now() - now), code });
      }
    }
  };
  const pid = a['server-pid'];
  // The CPU figures start with the timed phase.
  const mark = setTimeout(
    async () => {
      cpu0 = process.cpuUsage();
      srv0 = pid ? processTicks(pid) : undefined;
    },
    Math.max(0, timedFrom - performance.now()),
  );
  log(`warm-up ${warmup} s, then ${duration} s timed, ${connections} connections`);
  await Promise.all(Array.from({ length: connections }, loop));
  clearTimeout(mark);
  const elapsed = (performance.now() - timedFrom) / 1000;
  const srv1 = pid ? processTicks(pid) : undefined;
  const cpu1 = process.cpuUsage(cpu0);

  // 3. The sampled tokens against the server's JWKS, each for the client that asked.
  const jwks = await (await fetch(a.jwks)).json();
  const keySet = createLocalJWKSet(jwks);
  const verification = { sampled: st.samples.length, verified: 0, failed: 0, first_failure: null, token: null };
  for (const { client, token } of st.samples) {
    try {
      const { payload } = await jwtVerify(token, keySet, { algorithms: ['EdDSA', 'Ed25519'] });
      if (payload.sub !== client && payload.client_id !== client) throw new Error(`token for ${payload.sub}, asked by ${client}`);
      verification.verified += 1;
    } catch (e) {
      verification.failed += 1;
      verification.first_failure ??= `${e.code ?? e.name}: ${e.message}`;
    }
  }
  if (st.samples.length) {
    const t = st.samples[0].token;
    try {
      verification.token = { header: decodeProtectedHeader(t), claims: Object.keys(decodeJwt(t)), bytes: t.length };
    } catch (e) {
      verification.token = { undecodable: e.message, bytes: t.length }; // counted as failed above
    }
  }

  // 4. Replay: a fresh assertion twice in a row, then the first one accepted in the timed phase again.
  const fresh = pick().next().assertion;
  const r1 = await post(fresh);
  const r2 = await post(fresh);
  const replay = { first_status: r1.status, second_status: r2.status, second_body: r2.text.slice(0, 200) };
  if (st.firstOk) {
    const age = (Date.now() - st.firstOk.at) / 1000;
    const r = await post(st.firstOk.assertion);
    replay.late = { age_s: round(age, 1), requests_since: st.ok, status: r.status, rejected: r.status >= 400 };
  }
  await http.close();

  const sorted = Float64Array.from(lat).sort();
  const report = {
    target: { url: url.href, aud, clients: clients.length, jwks: a.jwks },
    config: { duration_s: duration, warmup_s: warmup, connections, sample_rate: sampleRate },
    requests: st.requests,
    ok: st.ok,
    ok_malformed: st.ok_malformed,
    non_2xx: st.non2xx,
    errors: st.errors,
    warmup_errors: st.warmupErrors ?? 0,
    elapsed_s: round(elapsed, 3),
    req_per_s: round(st.requests / elapsed, 1),
    ok_per_s: round(st.ok / elapsed, 1),
    latency_ms: {
      p50: round(percentile(sorted, 50)),
      p90: round(percentile(sorted, 90)),
      p99: round(percentile(sorted, 99)),
      max: round(sorted[sorted.length - 1]),
      mean: round(sorted.reduce((x, y) => x + y, 0) / (sorted.length || 1)),
    },
    stalls: { threshold_ms: STALL_MS, count: stalls.length, first: stalls.slice(0, 20) },
    failures,
    connections_opened_closed: conn,
    per_second: seconds.map((s) => ({ ok: s.ok, failed: s.failed, max_ms: Math.round(s.max_ms) })),
    cpu_pct_of_one_core: {
      loadgen: cpu1 ? round(((cpu1.user + cpu1.system) / 1e6 / elapsed) * 100, 1) : null,
      server: srv0 != null && srv1 != null ? round(((srv1 - srv0) / 100 / elapsed) * 100, 1) : null,
    },
    assertion_generation: {
      method: 'node:crypto Ed25519 sign, all before the first request',
      pregenerated: want,
      sign_ms: Math.round(signMs),
      used: Math.min(taken, want),
      underrun_waits: underruns,
    },
    verification,
    replay,
    replay_rejected: r1.status >= 200 && r1.status < 300 && r2.status >= 400,
    error_samples: st.errorBodies,
  };
  const json = JSON.stringify(report, null, 2);
  if (a.out) await writeFile(a.out, `${json}\n`);
  console.log(json);
}

await main().catch((e) => {
  console.error('[load]', e);
  process.exit(1);
});
