/**
 * The whole chain on loopback with real processes: the Worker (wrangler dev, workerd) -> the
 * verifying proxy -> a stand-in gateway that records what it receives, with the real agent
 * delivering the gateway's token. HTTP and WebSocket.
 */
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { RunningProxy } from '../../container/lib/proxy/start.js';
import { TEST_ADMIN_TOKEN, TEST_GATEWAY_TOKEN } from '../secrets.js';
import { freePort, startWorker, type WorkerProcess } from '../node/worker-process.js';
import { buildContainer, removeBundle, startAgent, waitFor, type AgentProcess } from './agent-process.js';
import { captureLog, startProxy, startUpstream, type Upstream } from './gateway-proxy-fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'chain-e2e-'));
const USER = 'e2e-user@example.com';
let upstream: Upstream;
let proxy: RunningProxy;
let worker: WorkerProcess;
let anonymous: WorkerProcess;
let agent: AgentProcess;
const proxyLog = captureLog();
const gatewayToken = createHmac('sha256', TEST_GATEWAY_TOKEN).update('credential:GATEWAY_TOKEN:main').digest('base64url');
/** A JWT anywhere in a string (a header segment starts with eyJ, "{"). */
const JWT = /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}/;

beforeAll(async () => {
  buildContainer();
  upstream = await startUpstream();
  const workerPort = await freePort();
  const issuer = `http://127.0.0.1:${workerPort}`;
  proxy = await startProxy(
    { jwksUrl: `${issuer}/.well-known/jwks.json`, issuer, audience: 'gateway:main', upstream: upstream.url, credentialsFile: join(dir, 'out', 'credentials.json') },
    { log: proxyLog.log },
  );
  worker = await startWorker({ persistTo: join(dir, 'state'), port: workerPort, vars: { GATEWAY_UPSTREAM: proxy.url, DEV_USER: USER } });
  const boot = await fetch(`${issuer}/api/admin/sandboxes/main/bootstrap`, { method: 'POST', headers: { Authorization: `Bearer ${TEST_ADMIN_TOKEN}` } });
  writeFileSync(join(dir, 'boot.json'), await boot.text(), { mode: 0o600 });
  agent = await startAgent(['--bootstrap-key', join(dir, 'boot.json'), '--dir', join(dir, 'out')]);
  await waitFor(() => existsSync(join(dir, 'out', 'state.json')), 20_000, 'the agent credential');
  // The same Worker code with no way to name a user (no Access, no DEV_USER).
  anonymous = await startWorker({ persistTo: join(dir, 'state-anon'), vars: { GATEWAY_UPSTREAM: proxy.url } });
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await Promise.all([worker?.stop(), anonymous?.stop()]);
  await proxy?.close();
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
  removeBundle();
});

it('HTTP: the gateway sees the user and its own token from the agent; nothing of ours, no token in a URL', async () => {
  const res = await fetch(`${worker.url}/api/chat?token=legacy-leak&q=1`, {
    method: 'POST',
    headers: { Authorization: 'Bearer sent-by-the-browser', Cookie: 'CF_Authorization=abc; theme=dark', 'Content-Type': 'text/plain' },
    body: 'hello gateway',
  });
  expect(res.status).toBe(200);
  const seen = upstream.requests.at(-1)!;
  expect(seen.url).toBe('/api/chat?q=1');
  expect(seen.body).toBe('hello gateway');
  expect(seen.headers.authorization).toBe(`Bearer ${gatewayToken}`);
  expect(seen.headers['x-forwarded-user']).toBe(USER);
  expect(seen.headers.cookie).toBe('theme=dark');
});

it('WebSocket: messages both ways through Worker and proxy, as the user, with the gateway token', async () => {
  const ws = new WebSocket(`${worker.url.replace('http', 'ws')}/ws`);
  const messages: string[] = [];
  ws.on('message', (d) => messages.push(d.toString()));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  await waitFor(() => messages.length >= 1, 5_000, 'the hello frame');
  expect(JSON.parse(messages[0]!)).toEqual({ hello: USER, authorization: `Bearer ${gatewayToken}` });
  ws.send('ping');
  await waitFor(() => messages.length >= 2, 5_000, 'the echo');
  expect(messages[1]).toBe(`${USER}:ping`);
  ws.close();
});

it('a request without a verified user never reaches the gateway', async () => {
  const before = upstream.hits;
  const res = await fetch(`${anonymous.url}/api/chat`, { headers: { Authorization: 'Bearer anything' } });
  expect(res.status).toBe(401);
  const ws = new WebSocket(`${anonymous.url.replace('http', 'ws')}/ws`);
  const status = await new Promise<number>((resolve) => {
    ws.once('unexpected-response', (_req, r) => resolve(r.statusCode ?? 0));
    ws.once('open', () => resolve(101));
    ws.once('error', () => resolve(0));
  });
  expect(status).toBe(401);
  expect(upstream.hits).toBe(before);
});

it('no token in any URL the gateway saw, nor in the proxy or Worker logs', () => {
  expect(upstream.requests.length).toBeGreaterThan(0);
  for (const r of upstream.requests) {
    expect(r.url).not.toMatch(JWT);
    expect(r.url).not.toContain('token=');
    expect(r.url).not.toContain(gatewayToken);
  }
  for (const text of [proxyLog.text(), worker.output(), anonymous.output(), JSON.stringify(agent.logs())]) {
    expect(text).not.toMatch(JWT);
    expect(text).not.toContain(gatewayToken);
    expect(text).not.toContain('legacy-leak');
  }
});
