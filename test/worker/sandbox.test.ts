/**
 * src/sandbox with a typed fake of the Sandbox SDK methods it calls (no Docker engine here);
 * everything behind it (Durable Objects, tokens, WebCrypto) is real.
 */
import { createExecutionContext, env } from 'cloudflare:test';
import { decodeJwt, type JWK } from 'jose';
import { beforeEach, describe, expect, it } from 'vitest';
import { CONTAINER_PORTS } from '../../src/admin-api.js';
import { createApp } from '../../src/app.js';
import { type Env, loadConfig } from '../../src/config.js';
import { deriveValue } from '../../src/issuer/credentials.js';
import { CONTAINER, gatewayProcessEnv, type SandboxApi } from '../../src/sandbox/gateway.js';
import { adminHeaders, BASE, freshStorage } from './helpers.js';
import { assertion, type BootstrapFile, type ErrorBody, requestToken } from './token-helpers.js';

beforeEach(freshStorage);

type Call = { op: string; arg: string; env?: Record<string, string>; port?: number };

/** Records every call; files and processes live in maps. */
class FakeSandbox implements SandboxApi {
  calls: Call[] = [];
  files = new Map<string, string>();
  processes: { id: string; command: string; status: string }[] = [];
  async exec(command: string) {
    this.calls.push({ op: 'exec', arg: command });
    const mv = /mv -f (\S+) (\S+)$/.exec(command);
    if (mv) {
      this.files.set(mv[2]!, this.files.get(mv[1]!)!);
      this.files.delete(mv[1]!);
    }
    return { exitCode: 0, stdout: '', stderr: '' };
  }
  async writeFile(path: string, content: string) {
    this.calls.push({ op: 'writeFile', arg: path });
    this.files.set(path, content);
  }
  async startProcess(command: string, options: { env: Record<string, string> }) {
    this.calls.push({ op: 'startProcess', arg: command, env: options.env });
    const p = { id: `p${this.processes.length}`, command, status: 'running' };
    this.processes.push(p);
    return { id: p.id };
  }
  async listProcesses() {
    return this.processes;
  }
  async killProcess(id: string) {
    this.calls.push({ op: 'killProcess', arg: id });
    const p = this.processes.find((x) => x.id === id);
    if (p) p.status = 'killed';
  }
  requests: Request[] = [];
  async containerFetch(request: Request, port: number) {
    this.calls.push({ op: 'containerFetch', arg: `${request.method} ${new URL(request.url).pathname}`, port });
    this.requests.push(request);
    return new Response('{}', { status: 200 });
  }
  async wsConnect(request: Request, port: number) {
    this.calls.push({ op: 'wsConnect', arg: new URL(request.url).pathname, port });
    this.requests.push(request);
    return new Response('upgrade stand-in', { status: 200 });
  }
}

function withSandbox(fake: FakeSandbox) {
  return createApp({ sandbox: () => fake });
}

async function admin(app: ReturnType<typeof createApp>, path: string) {
  return app.fetch(new Request(`${BASE}${path}`, { method: 'POST', headers: adminHeaders() }), env, createExecutionContext());
}

describe('gateway in the sandbox (fake Sandbox SDK)', () => {
  it('restart writes the bootstrap file atomically with mode 0600 and starts start.sh with no secret in its environment', async () => {
    const fake = new FakeSandbox();
    const res = await admin(withSandbox(fake), '/api/admin/gateway/restart');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ sandbox: 'main', started: true });

    const ops = fake.calls.map((c) => `${c.op}:${c.arg}`);
    const write = fake.calls.findIndex((c) => c.op === 'writeFile');
    const tmp = fake.calls[write]!.arg;
    expect(tmp.startsWith(`${CONTAINER.bootstrapFile}.tmp-`)).toBe(true); // same directory
    expect(fake.calls.some((c) => c.op === 'writeFile' && c.arg === CONTAINER.bootstrapFile)).toBe(false); // never written in place
    expect(ops[write - 1]).toBe(`exec:umask 077 && : > ${tmp}`); // created 0600 before any content
    expect(ops[write + 1]).toBe(`exec:chmod 600 ${tmp} && mv -f ${tmp} ${CONTAINER.bootstrapFile}`);
    expect(ops.indexOf(`startProcess:${CONTAINER.startScript}`)).toBeGreaterThan(write + 1);

    const file = JSON.parse(fake.files.get(CONTAINER.bootstrapFile)!) as BootstrapFile;
    expect(file).toMatchObject({ client_id: 'main', issuer: BASE });

    // Every secret the Worker holds, and every value it delivers, is absent from the process env.
    const start = fake.calls.find((c) => c.op === 'startProcess')!;
    const envText = JSON.stringify(start.env);
    const secrets = [
      env.ADMIN_TOKEN!,
      env.SIGNING_KEY_KEK!,
      env.MOLTBOT_GATEWAY_TOKEN!,
      await deriveValue(env.MOLTBOT_GATEWAY_TOKEN!, 'GATEWAY_TOKEN', 'main'),
      file.key.d as string,
    ];
    for (const s of secrets) expect(envText).not.toContain(s);
    expect(start.env).toEqual(gatewayProcessEnv(loadConfig(env)));
    expect(start.env!.ISSUER_URL).toBe('http://issuer.internal');
  });

  it('restart revokes the previous bootstrap key: the old key is refused, the new one works', async () => {
    const fake = new FakeSandbox();
    const app = withSandbox(fake);
    await admin(app, '/api/admin/gateway/restart');
    const first = JSON.parse(fake.files.get(CONTAINER.bootstrapFile)!) as BootstrapFile;
    expect((await requestToken(await assertion(first))).status).toBe(200);

    await admin(app, '/api/admin/gateway/restart');
    expect(fake.calls.filter((c) => c.op === 'killProcess')).toHaveLength(1);
    const second = JSON.parse(fake.files.get(CONTAINER.bootstrapFile)!) as BootstrapFile;
    expect((second.key as JWK).kid).not.toBe((first.key as JWK).kid);
    const old = await requestToken(await assertion(first));
    expect(old.status).toBe(401);
    expect(((await old.json()) as ErrorBody).error_description).toMatch(/^kid_mismatch:/);
    expect((await requestToken(await assertion(second))).status).toBe(200);
  });

  it('POST /api/admin/sandboxes/:id/refresh asks the agent through the container', async () => {
    const fake = new FakeSandbox();
    const res = await admin(withSandbox(fake), '/api/admin/sandboxes/main/refresh');
    expect(res.status).toBe(200);
    expect(fake.calls).toContainEqual({ op: 'containerFetch', arg: 'POST /refresh', port: CONTAINER_PORTS.agent });
  });

  it('without a Sandbox binding, restart and refresh say so (503)', async () => {
    for (const path of ['/api/admin/gateway/restart', '/api/admin/sandboxes/main/refresh']) {
      const res = await admin(createApp(), path);
      expect(res.status, path).toBe(503);
      expect(((await res.json()) as ErrorBody).error).toBe('gateway_unavailable');
    }
  });

  it('with GATEWAY_UPSTREAM set, restart and refresh refuse (503) and never touch a declared Sandbox binding', async () => {
    const fake = new FakeSandbox();
    const e = { ...env, GATEWAY_UPSTREAM: 'http://127.0.0.1:8789' } as Env;
    for (const path of ['/api/admin/gateway/restart', '/api/admin/sandboxes/main/refresh']) {
      const res = await withSandbox(fake).fetch(
        new Request(`${BASE}${path}`, { method: 'POST', headers: adminHeaders() }),
        e,
        createExecutionContext(),
      );
      expect(res.status, path).toBe(503);
      expect(((await res.json()) as ErrorBody).error_description).toBe(
        'no sandbox to reach: this Worker has no Sandbox binding, or GATEWAY_UPSTREAM sends its gateway traffic elsewhere',
      );
    }
    expect(fake.calls).toEqual([]);
  });

  it('a refresh or restart of a container that does not answer is 502 bad_gateway, not a 500', async () => {
    const fake = new FakeSandbox();
    const down = async () => {
      throw new Error('Containers have not been enabled for this Durable Object class.');
    };
    fake.containerFetch = down;
    fake.listProcesses = down;
    const refresh = await admin(withSandbox(fake), '/api/admin/sandboxes/main/refresh');
    expect(refresh.status).toBe(502);
    expect(await refresh.json()).toEqual({
      error: 'bad_gateway',
      error_description: 'the sandbox did not answer a refresh (is its container running?)',
    });
    const restart = await admin(withSandbox(fake), '/api/admin/gateway/restart');
    expect(restart.status).toBe(502);
    expect(await restart.json()).toEqual({
      error: 'bad_gateway',
      error_description: 'the sandbox did not answer a restart (is its container running?)',
    });
  });

  it('the gateway path starts the gateway once, then goes through the container to the verifying proxy', async () => {
    const fake = new FakeSandbox();
    const app = withSandbox(fake);
    const e = { ...env, DEV_USER: 'dev@example.com' } as Env;
    for (const path of ['/a', '/b']) {
      const res = await app.fetch(
        new Request(`${BASE}${path}?token=old`, { headers: { Authorization: 'Bearer from-client' } }),
        e,
        createExecutionContext(),
      );
      expect(res.status).toBe(200);
    }
    const ws = await app.fetch(new Request(`${BASE}/ws`, { headers: { Upgrade: 'websocket' } }), e, createExecutionContext());
    expect(ws.status).toBe(200);
    expect(fake.calls.filter((c) => c.op === 'startProcess')).toHaveLength(1); // once, not per request
    expect(fake.calls.filter((c) => c.op === 'containerFetch').map((c) => [c.arg, c.port])).toEqual([
      ['GET /a', CONTAINER_PORTS.proxy],
      ['GET /b', CONTAINER_PORTS.proxy],
    ]);
    expect(fake.calls.filter((c) => c.op === 'wsConnect').map((c) => [c.arg, c.port])).toEqual([['/ws', CONTAINER_PORTS.proxy]]);
    for (const r of fake.requests) {
      expect(r.url).not.toContain('token=');
      expect(r.headers.get('Authorization')).toMatch(/^Bearer ey/);
    }
  });

  it('issue 13 item 4 (sandbox): HTTP and WebSocket upgrades reach the proxy with a token whose client_ip is CF-Connecting-IP, or 192.0.2.1 for a loopback client', async () => {
    const fake = new FakeSandbox();
    const app = withSandbox(fake);
    const e = { ...env, DEV_USER: 'dev@example.com' } as Env;
    const forged = { 'X-Forwarded-For': '198.51.100.66', 'X-Real-IP': '198.51.100.67' };
    const sends: [string, Record<string, string>][] = [
      ['/a', { 'CF-Connecting-IP': '203.0.113.7', ...forged }],
      ['/ws', { 'CF-Connecting-IP': '203.0.113.7', Upgrade: 'websocket', ...forged }],
      ['/b', { 'CF-Connecting-IP': '127.0.0.1', ...forged }],
      ['/ws', { Upgrade: 'websocket', ...forged }],
    ];
    for (const [path, headers] of sends) {
      expect((await app.fetch(new Request(`${BASE}${path}`, { headers }), e, createExecutionContext())).status).toBe(200);
    }
    expect(fake.calls.filter((c) => c.op === 'containerFetch' || c.op === 'wsConnect').map((c) => c.op)).toEqual([
      'containerFetch',
      'wsConnect',
      'containerFetch',
      'wsConnect',
    ]);
    const claims = fake.requests.map((r) => decodeJwt(r.headers.get('Authorization')!.slice('Bearer '.length)));
    expect(claims.map((c) => [c.sub, c.client_ip])).toEqual([
      ['dev@example.com', '203.0.113.7'],
      ['dev@example.com', '203.0.113.7'],
      ['dev@example.com', '192.0.2.1'],
      ['dev@example.com', '192.0.2.1'],
    ]);
  });

  it('finding 1 (sandbox): a path beginning with // is refused, and every request keeps the proxy origin and Host', async () => {
    const fake = new FakeSandbox();
    const app = withSandbox(fake);
    const e = { ...env, DEV_USER: 'dev@example.com' } as Env;
    for (const path of [
      '//127.0.0.1:9/steal',
      '///127.0.0.1:9/steal',
      '/\\127.0.0.1:9/steal',
      '//user@127.0.0.1:9/steal',
      '//api/admin/keys',
    ]) {
      for (const upgrade of [false, true]) {
        const res = await app.fetch(
          new Request(`${BASE}${path}`, { headers: upgrade ? { Upgrade: 'websocket' } : {} }),
          e,
          createExecutionContext(),
        );
        expect(res.status, path).toBe(400);
      }
    }
    expect(fake.requests).toHaveLength(0);
    expect(fake.calls.filter((c) => c.op === 'startProcess')).toHaveLength(0);
    await app.fetch(new Request(`${BASE}/a//b`, { headers: { Host: 'evil.example' } }), e, createExecutionContext());
    await app.fetch(new Request(`${BASE}/ws//x`, { headers: { Host: 'evil.example', Upgrade: 'websocket' } }), e, createExecutionContext());
    expect(fake.requests.map((r) => new URL(r.url).href)).toEqual([
      `http://localhost:${CONTAINER_PORTS.proxy}/a//b`,
      `http://localhost:${CONTAINER_PORTS.proxy}/ws//x`,
    ]);
    for (const r of fake.requests) expect([null, `localhost:${CONTAINER_PORTS.proxy}`]).toContain(r.headers.get('Host'));
  });

  it('a secret change pushes once per sandbox through the container', async () => {
    const fake = new FakeSandbox();
    const app = withSandbox(fake);
    await admin(app, '/api/admin/gateway/restart'); // registers "main", records the first fingerprint
    const ctx = createExecutionContext();
    const { waitOnExecutionContext } = await import('cloudflare:test');
    await app.fetch(
      new Request(`${BASE}/.well-known/jwks.json`),
      { ...env, MOLTBOT_GATEWAY_TOKEN: 'rotated-master-0123456789abcdef' } as Env,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(fake.calls.filter((c) => c.op === 'containerFetch')).toEqual([
      { op: 'containerFetch', arg: 'POST /refresh', port: CONTAINER_PORTS.agent },
    ]);
  });

  it('with GATEWAY_UPSTREAM set, a secret change pushes into no sandbox (none runs there)', async () => {
    const fake = new FakeSandbox();
    const app = withSandbox(fake);
    await admin(app, '/api/admin/gateway/restart'); // registers "main", records the first fingerprint
    const calls = fake.calls.length;
    const ctx = createExecutionContext();
    const { waitOnExecutionContext } = await import('cloudflare:test');
    const e = { ...env, GATEWAY_UPSTREAM: 'http://127.0.0.1:8789', MOLTBOT_GATEWAY_TOKEN: 'rotated-master-0123456789abcdef' } as Env;
    expect((await app.fetch(new Request(`${BASE}/.well-known/jwks.json`), e, ctx)).status).toBe(200);
    await waitOnExecutionContext(ctx);
    expect(fake.calls.slice(calls)).toEqual([]);
  });
});
