/**
 * Finding 11 of issue 11, counted: unauthenticated clients cannot make the proxy hold memory or
 * connections with request heads. The proxy runs as its own Node process (from source, as
 * `npm run gateway-proxy` runs it) so its memory is its own: the test reads the child's VmRSS and
 * VmHWM from /proc (Linux) before, during and after 40 sockets each try to send ~1.9 MiB of
 * headers without ever finishing the head (the reviewer's attack took the proxy from 85 to
 * 492 MiB), and a slow client that drips a head byte by byte.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { HEADERS_TIMEOUT_MS, MAX_HEADER_BYTES } from '../../container/lib/proxy/server.js';
import { freePort, ROOT } from '../node/worker-process.js';
import {
  type JwksServer,
  makeKey,
  proxyFlags,
  startJwksServer,
  startUpstream,
  type TestKey,
  token,
  type Upstream,
  writeCredentials,
} from './gateway-proxy-fixtures.js';

/** The reviewer's numbers: 40 connections, ~1.9 MiB of header bytes each. */
const SOCKETS = 40;
const ATTEMPT_BYTES = Math.floor(1.9 * 1024 * 1024);
/** One header line per write: long enough to be quick, short of any per-line limit. */
const LINE_BYTES = 8 * 1024;
/**
 * Allowed growth of the proxy's resident memory, peak and after. The bound itself lets 40
 * sockets hold 40 x 64 KiB = 2.5 MiB of head; the rest is slack for a noisy shared machine (GC
 * timing, allocator arenas). Without the bound the same attack grows it by hundreds of MiB.
 */
const MAX_GROWTH_BYTES = 64 * 1024 * 1024;
/** How long the sockets may take to be answered and closed, on a busy 2-core machine. */
const SETTLE_MS = 15_000;
/** Sampling period of the child's RSS during the attack. */
const SAMPLE_MS = 25;
const MiB = 1024 * 1024;

let dir: string;
let key: TestKey;
let jwks: JwksServer;
let upstream: Upstream;
let child: ChildProcess;
let port: number;
let out = '';

function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1]) * 1024;
  return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
}

/** Resets the child's peak RSS (VmHWM) so it measures the attack only; false where not allowed. */
function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gateway-proxy-memory-'));
  key = await makeKey();
  jwks = await startJwksServer([key.publicJwk]);
  upstream = await startUpstream();
  writeCredentials(dir, { GATEWAY_TOKEN: 'gw-memory-value' }, 'v1');
  port = await freePort();
  const args = ['--import', `${ROOT}scripts/register-ts.mjs`, `${ROOT}container/gateway-proxy.ts`];
  const flags = proxyFlags({ jwksUrl: jwks.url, upstreamUrl: upstream.url, dir, port });
  child = spawn(process.execPath, [...args, ...flags], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 200 && !out.includes('"proxy_listening"'); i++) {
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!out.includes('"proxy_listening"')) throw new Error(`proxy did not start:\n${out}`);
}, 30_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(t);
  }
  await upstream?.close();
  await jwks?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Attempt {
  sent: number;
  status: number | undefined;
  closedAt: number | undefined;
}

/**
 * One socket of the attack: a request line, then header lines of LINE_BYTES until ATTEMPT_BYTES
 * are written or the proxy answers or closes; the head is never finished. Waits for `drain`, so
 * what counts as sent has left this process.
 */
function attack(started: number): { attempt: Attempt; done: Promise<void>; socket: net.Socket } {
  const attempt: Attempt = { sent: 0, status: undefined, closedAt: undefined };
  const socket = net.connect(port, '127.0.0.1');
  let answered = false;
  let data = '';
  socket.on('data', (d: Buffer) => {
    data += d.toString('latin1');
    answered = true;
    attempt.status ??= Number(data.split(' ', 2)[1]);
  });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((r) =>
    socket.on('close', () => {
      attempt.closedAt = Date.now() - started;
      r();
    }),
  );
  const line = `X-Pad: ${'a'.repeat(LINE_BYTES - 10)}\r\n`;
  const write = async () => {
    await new Promise<void>((r) => socket.once('connect', () => r()));
    const first = 'GET /private HTTP/1.1\r\nHost: 127.0.0.1\r\n';
    socket.write(first);
    attempt.sent += first.length;
    while (attempt.sent < ATTEMPT_BYTES && !answered && !socket.destroyed) {
      const more = socket.write(line);
      attempt.sent += line.length;
      if (!more)
        await new Promise<void>((r) => {
          const go = () => {
            socket.off('drain', go);
            socket.off('close', go);
            r();
          };
          socket.on('drain', go).on('close', go);
        });
    }
  };
  return {
    attempt,
    socket,
    done: write()
      .then(
        () => undefined,
        () => undefined,
      )
      .then(() => Promise.race([closed, new Promise<void>((r) => setTimeout(r, SETTLE_MS))])),
  };
}

it('finding 11: 40 sockets sending ~1.9 MiB of partial headers each get 431 and are closed; the proxy RSS grows by less than 64 MiB', async () => {
  const pid = child.pid!;
  // Warm up what the first requests load (verifier, JWKS, undici pool, the 431 path), so the
  // baseline is the proxy at work and not the proxy before its first request.
  const t = await token(key);
  for (let i = 0; i < 3; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/x`, { headers: { Authorization: `Bearer ${t}` } });
    await ok.arrayBuffer();
    expect(ok.status).toBe(200);
  }
  for (let i = 0; i < 2; i++) await attack(Date.now()).done;
  await new Promise((r) => setTimeout(r, 500));
  const before = memory(pid);
  const peakReset = resetPeak(pid);

  let sampledPeak = before.rss;
  const sampler = setInterval(() => {
    try {
      sampledPeak = Math.max(sampledPeak, memory(pid).rss);
    } catch {
      // the child is gone: the assertions below say so
    }
  }, SAMPLE_MS);
  const started = Date.now();
  const attacks = Array.from({ length: SOCKETS }, () => attack(started));
  await Promise.all(attacks.map((a) => a.done));
  // Still-open sockets (no bound) hold their heads in the proxy: measure while they are open.
  const after = memory(pid);
  clearInterval(sampler);
  const peak = Math.max(sampledPeak, after.rss, peakReset ? after.hwm : 0);
  for (const a of attacks) a.socket.destroy();

  const report = {
    before_mib: +(before.rss / MiB).toFixed(1),
    after_mib: +(after.rss / MiB).toFixed(1),
    peak_mib: +(peak / MiB).toFixed(1),
    peak_from: peakReset ? 'VmHWM (reset before the attack) and sampled VmRSS' : 'sampled VmRSS',
    clients_wrote_mib: +(attacks.reduce((s, a) => s + a.attempt.sent, 0) / MiB).toFixed(1),
    statuses: [...new Set(attacks.map((a) => a.attempt.status))],
    closed: attacks.filter((a) => a.attempt.closedAt !== undefined).length,
    slowest_close_ms: Math.max(...attacks.map((a) => a.attempt.closedAt ?? Infinity)),
  };
  // Printed on purpose: the numbers are the point of this test (no token or secret in them).
  process.stdout.write(`gateway-proxy memory: ${JSON.stringify(report)}\n`);

  expect(child.exitCode).toBeNull();
  expect(report.closed).toBe(SOCKETS);
  expect(report.statuses).toEqual([431]);
  expect(after.rss - before.rss).toBeLessThan(MAX_GROWTH_BYTES);
  expect(peak - before.rss).toBeLessThan(MAX_GROWTH_BYTES);

  // And it still serves.
  const res = await fetch(`http://127.0.0.1:${port}/x`, { headers: { Authorization: `Bearer ${t}` } });
  await res.arrayBuffer();
  expect(res.status).toBe(200);
  expect(out).not.toContain(t.split('.')[2]!);
  expect(MAX_HEADER_BYTES).toBeLessThanOrEqual(64 * 1024);
}, 60_000);

it(
  'finding 11: a head that trickles in is cut off after the header timeout (408), however often bytes arrive',
  async () => {
    const socket = net.connect(port, '127.0.0.1');
    let data = '';
    socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
    socket.on('error', () => undefined);
    const started = Date.now();
    const closed = new Promise<number>((r) => socket.on('close', () => r(Date.now() - started)));
    await new Promise<void>((r) => socket.once('connect', () => r()));
    socket.write('GET /private HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    // A byte every 200 ms: far inside any idle timeout, never a complete head.
    const drip = setInterval(() => {
      if (!socket.destroyed) socket.write('X-Slow: 1\r\n');
    }, 200);
    const elapsed = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(Infinity), HEADERS_TIMEOUT_MS + SETTLE_MS))]);
    clearInterval(drip);
    socket.destroy();
    expect(elapsed).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 1_000);
    expect(elapsed).toBeLessThan(HEADERS_TIMEOUT_MS + SETTLE_MS);
    expect(data.split('\r\n')[0]).toBe('HTTP/1.1 408 Request Timeout');
  },
  HEADERS_TIMEOUT_MS + SETTLE_MS + 10_000,
);
