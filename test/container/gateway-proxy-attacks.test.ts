/**
 * The attack corpus through the verifying proxy: every bad token or bad Authorization header is
 * refused with 401, the RFC 6750 challenge naming its code, a body that does not echo it, a log
 * that does not hold it, and the upstream is never reached (its hits are counted); a case over the
 * proxy's head limit gets Node's 431 instead (issue 11, finding 11). A good token
 * then goes through, so the count proves the upstream was reachable all along.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { MAX_HEADER_BYTES } from '../../container/lib/proxy/server.js';
import type { RunningProxy } from '../../container/lib/proxy/start.js';
import {
  type AttackCase,
  attackCorpus,
  captureLog,
  type JwksServer,
  makeKey,
  rawRequest,
  startJwksServer,
  startProxy,
  startUpstream,
  type TestKey,
  token,
  type Upstream,
  writeCredentials,
} from './gateway-proxy-fixtures.js';

let key: TestKey;
let jwks: JwksServer;
let upstream: Upstream;
let proxy: RunningProxy;
let dir: string;
let corpus: AttackCase[];
const logs = captureLog();

beforeAll(async () => {
  key = await makeKey();
  jwks = await startJwksServer([key.publicJwk]);
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'gateway-proxy-attacks-'));
  writeCredentials(dir, { GATEWAY_TOKEN: 'gw-secret-value-0123456789' }, 'v1');
  proxy = await startProxy(
    { jwksUrl: jwks.url, upstream: upstream.url, credentialsFile: join(dir, 'credentials.json') },
    { log: logs.log },
  );
  corpus = await attackCorpus(key, await makeKey());
});

afterAll(async () => {
  await proxy?.close();
  await upstream?.close();
  await jwks?.close();
  rmSync(dir, { recursive: true, force: true });
});

function send(c: AttackCase): Promise<{ status: number; head: string; body: string }> {
  return rawRequest(proxy.port, [
    'GET /private HTTP/1.1',
    `Host: 127.0.0.1:${proxy.port}`,
    ...c.authorization.map((v) => `Authorization: ${v}`),
  ]);
}

/**
 * Cases whose Authorization alone is over the proxy's head limit (the 1 MiB header) never reach
 * a handler: Node answers 431 (finding 11). Every other case gets its RFC 6750 code.
 */
const overHeadLimit = (c: AttackCase) => c.authorization.reduce((n, v) => n + v.length, 0) > MAX_HEADER_BYTES;
const expected = (c: AttackCase): [string, number, string | undefined] =>
  overHeadLimit(c) ? [c.name, 431, undefined] : [c.name, 401, `Bearer error="invalid_token", error_description="${c.code}"`];

/** Pieces of a case's credentials long enough to recognise if echoed or logged. */
function fragments(c: AttackCase): string[] {
  return c.authorization
    .flatMap((v) => v.split(/[ .,]+/))
    .filter((f) => f.length >= 16)
    .map((f) => f.slice(0, 64));
}

it('holds at least 30 distinct cases', () => {
  expect(corpus.length).toBeGreaterThanOrEqual(30);
  expect(new Set(corpus.map((c) => c.name)).size).toBe(corpus.length);
  expect(new Set(corpus.map((c) => c.authorization.join('\n'))).size).toBe(corpus.length);
});

it('refuses every case with 401 and its code; the upstream is never reached; no 5xx', async () => {
  const results: { name: string; status: number; challenge: string | undefined; body: string }[] = [];
  for (const c of corpus) {
    const res = await send(c);
    const challenge = /^WWW-Authenticate: (.*)$/im.exec(res.head)?.[1];
    results.push({ name: c.name, status: res.status, challenge, body: res.body });
    for (const f of fragments(c)) {
      expect(res.head + res.body, `${c.name} echoed its credential`).not.toContain(f);
    }
  }
  expect(corpus.filter(overHeadLimit).map((c) => c.name)).toEqual(['1 MiB header']);
  expect(results.map((r) => [r.name, r.status, r.challenge])).toEqual(corpus.map(expected));
  expect(results.map((r) => (r.body ? JSON.parse(r.body) : null))).toEqual(
    corpus.map((c) => (overHeadLimit(c) ? null : { error: 'invalid_token', error_description: c.code })),
  );
  expect(upstream.hits).toBe(0);
  // The unknown kids cost at most one refetch beyond the first fetch.
  expect(jwks.hits).toBeLessThanOrEqual(2);
  const log = logs.text();
  for (const c of corpus) for (const f of fragments(c)) expect(log, `${c.name} in the log`).not.toContain(f);
  expect(logs.lines.filter((l) => l.event === 'request_rejected')).toHaveLength(corpus.filter((c) => !overHeadLimit(c)).length);
});

it('the same cases on WebSocket upgrades: 401 before any upgrade, upstream never reached', async () => {
  for (const c of corpus) {
    const res = await rawRequest(proxy.port, [
      'GET /ws HTTP/1.1',
      `Host: 127.0.0.1:${proxy.port}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      ...c.authorization.map((v) => `Authorization: ${v}`),
    ]);
    const [, status, challenge] = expected(c);
    expect([c.name, res.status]).toEqual([c.name, status]);
    if (challenge) expect(res.head).toContain(`WWW-Authenticate: ${challenge}`);
  }
  expect(upstream.hits).toBe(0);
});

it('a good token after all of it goes through (the upstream was reachable)', async () => {
  const res = await rawRequest(proxy.port, ['GET /private HTTP/1.1', 'Host: x', `Authorization: Bearer ${await token(key)}`]);
  expect(res.status).toBe(200);
  expect(upstream.hits).toBe(1);
});
