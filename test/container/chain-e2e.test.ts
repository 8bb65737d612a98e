/**
 * The whole chain on loopback with real processes: the Worker (wrangler dev, workerd) -> the
 * verifying proxy -> a stand-in gateway that records what it receives, with the real agent
 * delivering the gateway's token. HTTP and WebSocket.
 */
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { RunningProxy } from '../../container/lib/proxy/start.js';
import { buildCli, runProcess } from '../node/cli-process.js';
import { freePort, startWorker, type WorkerProcess } from '../node/worker-process.js';
import { TEST_ADMIN_TOKEN, TEST_GATEWAY_TOKEN } from '../secrets.js';
import { type AgentProcess, buildContainer, removeBundle, startAgent, waitFor } from './agent-process.js';
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
    {
      jwksUrl: `${issuer}/.well-known/jwks.json`,
      issuer,
      audience: 'gateway:main',
      upstream: upstream.url,
      credentialsFile: join(dir, 'out', 'credentials.json'),
    },
    { log: proxyLog.log },
  );
  worker = await startWorker({ persistTo: join(dir, 'state'), port: workerPort, vars: { GATEWAY_UPSTREAM: proxy.url, DEV_USER: USER } });
  const boot = await fetch(`${issuer}/api/admin/sandboxes/main/bootstrap`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
  });
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

/**
 * One raw HTTP/1.1 request (what fetch cannot send: a path with a backslash, repeated Cookie
 * lines, underscore header names), answered once the body is complete: wrangler dev keeps the
 * socket open after the answer.
 */
function rawRequest(port: number, lines: string[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    const done = (status: number, body: string) => {
      sock.destroy();
      resolve({ status, body });
    };
    sock.on('data', (d: Buffer) => {
      data = Buffer.concat([data, d]);
      const text = data.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = text.slice(0, end);
      const rest = text.slice(end + 4);
      const status = Number(head.split(' ')[1]);
      const length = /\r\ncontent-length: *(\d+)/i.exec(head);
      if (length && rest.length >= Number(length[1])) done(status, rest.slice(0, Number(length[1])));
      else if (/\r\ntransfer-encoding: *chunked/i.test(head) && rest.endsWith('0\r\n\r\n')) done(status, rest);
    });
    sock.on('error', reject);
    sock.write(`${lines.join('\r\n')}\r\n\r\n`);
  });
}

describe("security review: the reviewer's inputs for findings 1, 8 and 9, through the whole chain", () => {
  let thief: Server;
  let thiefPort: number;
  const stolen: string[] = [];
  beforeAll(async () => {
    thief = createServer((req, res) => {
      stolen.push(`${req.method} ${req.url} ${JSON.stringify(req.headers)}`);
      res.end('got it');
    });
    await new Promise<void>((r) => thief.listen(0, '127.0.0.1', () => r()));
    thiefPort = (thief.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => thief.close(() => r())));
  const port = () => Number(new URL(worker.url).port);
  /** Markers that must not reach the gateway, in any header. */
  const MARKER = 'reviewer-marker';

  it('finding 1: paths beginning with // (and their cousins) reach neither another host nor the gateway', async () => {
    const before = upstream.hits;
    for (const path of [
      `//127.0.0.1:${thiefPort}/steal`,
      `///127.0.0.1:${thiefPort}/steal`,
      `/\\127.0.0.1:${thiefPort}/steal`,
      `//user@127.0.0.1:${thiefPort}/steal`,
      '//api/admin/keys',
      `/x/..//127.0.0.1:${thiefPort}/steal`,
    ]) {
      const res = await rawRequest(port(), [`GET ${path} HTTP/1.1`, `Host: 127.0.0.1:${port()}`, 'Cookie: sid=1']);
      expect(res.status, path).toBe(400);
      expect(res.body, path).toContain('the path must not begin with // or contain a backslash');
    }
    expect(stolen).toEqual([]);
    expect(upstream.hits).toBe(before);
  });

  it('finding 8: client identity and address headers never reach the gateway', async () => {
    const res = await rawRequest(port(), [
      'GET /whoami HTTP/1.1',
      `Host: 127.0.0.1:${port()}`,
      `X_Forwarded_User: ${MARKER}-underscore`,
      `X-Forwarded-User: ${MARKER}-user`,
      `X-Real-IP: 203.0.113.${7}`,
      `Forwarded: for=203.0.113.8;by=${MARKER}`,
      `X-Forwarded-Host: ${MARKER}.example`,
      `X-Forwarded-For: 203.0.113.9`,
      `X-Forwarded-Proto: ${MARKER}`,
      `Remote-User: ${MARKER}-remote`,
      `Cf-Access-Authenticated-User-Email: ${MARKER}@example.com`,
    ]);
    expect(res.status).toBe(200);
    const seen = upstream.requests.at(-1)!;
    expect(seen.url).toBe('/whoami');
    expect(seen.headers['x-forwarded-user']).toBe(USER);
    const raw = seen.rawHeaders.join('\n');
    expect(raw).not.toContain(MARKER);
    expect(raw).not.toContain('203.0.113.');
    for (const name of ['x_forwarded_user', 'x-real-ip', 'forwarded', 'remote-user', 'cf-access-authenticated-user-email']) {
      expect(seen.headers[name], name).toBeUndefined();
    }
  });

  it('finding 9: split Cookie lines never carry CF_Authorization to the gateway', async () => {
    const res = await rawRequest(port(), [
      'GET /cookies HTTP/1.1',
      `Host: 127.0.0.1:${port()}`,
      'Cookie: sid=1',
      `Cookie: CF_Authorization=${MARKER}.jwt; theme=dark`,
      `Cookie: cf_authorization=${MARKER}.lower`,
    ]);
    expect(res.status).toBe(200);
    const seen = upstream.requests.at(-1)!;
    expect(seen.url).toBe('/cookies');
    expect(seen.rawHeaders.join('\n')).not.toContain(MARKER);
    expect(seen.headers.cookie).toBe('sid=1; theme=dark');
  });
});

describe('issue 13 item 4: identity no one between the user and the gateway can forge, through the whole chain', () => {
  const port = () => Number(new URL(worker.url).port);
  /** What a client sends to speak for the proxy; none of it may reach the gateway. */
  const FORGED: [string, string][] = [
    ['X-Forwarded-User', 'mallory@example.com'],
    ['X-Forwarded-For', '203.0.113.9'],
    ['X-Real-IP', '203.0.113.10'],
    ['Forwarded', 'for=203.0.113.11;proto=https;host=evil.example'],
    ['x-openclaw-scopes', 'operator.admin'],
    ['X-Forwarded-Host', 'evil.example'],
    ['X-Forwarded-Proto', 'gopher'],
  ];
  /** The identity headers the gateway got, one value each, and no forged value anywhere. */
  function attribution(seen: { rawHeaders: string[] }): Record<string, string[]> {
    const values = seen.rawHeaders.filter((_, i) => i % 2 === 1).join('\n');
    for (const v of ['mallory', '203.0.113.', 'evil.example', 'gopher', 'operator.admin']) expect(values, v).not.toContain(v);
    const of = (name: string) => seen.rawHeaders.filter((_, i, a) => i % 2 === 1 && a[i - 1]!.toLowerCase() === name);
    return Object.fromEntries(
      ['x-forwarded-for', 'x-forwarded-user', 'x-forwarded-proto', 'x-forwarded-host', 'x-real-ip', 'forwarded', 'x-openclaw-scopes'].map(
        (n) => [n, of(n)],
      ),
    );
  }
  /** A loopback client on the local stack: 192.0.2.1 (TEST-NET-1), the user DEV_USER, the issuer's own scheme and host. */
  const expected = () => ({
    'x-forwarded-for': ['192.0.2.1'],
    'x-forwarded-user': [USER],
    'x-forwarded-proto': ['http'],
    'x-forwarded-host': [`127.0.0.1:${port()}`],
    'x-real-ip': [],
    forwarded: [],
    'x-openclaw-scopes': [],
  });

  it('HTTP: the gateway sees X-Forwarded-For 192.0.2.1 and X-Forwarded-User = DEV_USER despite forged headers', async () => {
    const res = await rawRequest(port(), [
      'GET /attribution HTTP/1.1',
      `Host: 127.0.0.1:${port()}`,
      ...FORGED.map(([n, v]) => `${n}: ${v}`),
    ]);
    expect(res.status).toBe(200);
    const seen = upstream.requests.at(-1)!;
    expect(seen.url).toBe('/attribution');
    expect(attribution(seen)).toEqual(expected());
  });

  it('WebSocket: the same attribution on the upgrade, despite the same forged headers', async () => {
    const ws = new WebSocket(`${worker.url.replace('http', 'ws')}/ws`, { headers: Object.fromEntries(FORGED) });
    const hello = await new Promise<string>((resolve, reject) => {
      ws.once('message', (d) => resolve(d.toString()));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, r) => reject(new Error(`status ${r.statusCode}`)));
    });
    ws.close();
    expect(JSON.parse(hello)).toEqual({ hello: USER, authorization: `Bearer ${gatewayToken}` });
    expect(attribution(upstream.upgrades.at(-1)!)).toEqual(expected());
  });

  it('locally a client-sent CF-Connecting-IP is what the Worker saw (wrangler dev fills it in only when absent): a public one is used, a loopback one is still 192.0.2.1', async () => {
    const send = async (ip: string) => {
      const res = await rawRequest(port(), ['GET /cf-ip HTTP/1.1', `Host: 127.0.0.1:${port()}`, `CF-Connecting-IP: ${ip}`]);
      expect(res.status).toBe(200);
      return upstream.requests.at(-1)!.headers['x-forwarded-for'];
    };
    expect(await send('198.51.100.77')).toBe('198.51.100.77');
    expect(await send('::1')).toBe('192.0.2.1');
    expect(await send('not-an-address')).toBe('192.0.2.1');
  });
});

it('finding 2: after a flood of 1,100 junk assertions, credctl audit --sandbox main still shows bootstrap and token_issued', async () => {
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const junk = `${enc({ alg: 'EdDSA' })}.${enc({ iss: 'main', sub: 'main' })}.AAAA`;
  const body = new URLSearchParams({
    grant_type: 'client_credentials',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: junk,
  }).toString();
  for (let i = 0; i < 1100; i += 50) {
    const answers = await Promise.all(
      Array.from({ length: 50 }, () =>
        fetch(`${worker.url}/oauth/token`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body }),
      ),
    );
    expect(answers.every((r) => r.status === 401)).toBe(true);
  }
  const bundle = await buildCli(join(dir, 'cli'));
  for (const extra of [[], ['--limit', '500']]) {
    const run = await runProcess(process.execPath, [bundle, 'audit', '--sandbox', 'main', ...extra], {
      cwd: dir,
      env: { ISSUER_URL: worker.url, ADMIN_TOKEN: TEST_ADMIN_TOKEN },
    });
    expect(run.code, run.stderr).toBe(0);
    const events = run.stdout.split('refusals, counted per rule per minute')[0]!;
    expect(events).toMatch(/\bbootstrap\b/);
    expect(events).toMatch(/\btoken_issued\b/);
    const counted = run.stdout.split('refusals, counted per rule per minute')[1]!;
    const total = [...counted.matchAll(/ main +bad_signature +(\d+) +no/g)].reduce((n, m) => n + Number(m[1]), 0);
    expect(total).toBe(1100);
  }
}, 120_000);

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
