/**
 * End to end: the real Worker (wrangler dev, workerd, short TTLs) and the built agent as a child
 * process, on loopback. The agent reaches the issuer through a small counting relay (its
 * --issuer override), so the tests can count its requests.
 */
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startWorker, type WorkerProcess } from '../node/worker-process.js';
import { TEST_ADMIN_TOKEN, TEST_GATEWAY_TOKEN } from '../secrets.js';
import { type AgentProcess, agentBundle, buildContainer, health, removeBundle, startAgent, waitFor } from './agent-process.js';

/** Short lifetimes so several fit in a test: tokens live 10 s, refreshed every 4-6 s. */
const SHORT = { AGENT_TOKEN_TTL: '10s', ACCESS_TOKEN_TTL: '10s', JWKS_MAX_AGE: '5s', CLOCK_SKEW: '5s', ROTATION_PERIOD: '120s' };
const TTL_MS = 10_000;

const dir = mkdtempSync(join(tmpdir(), 'agent-e2e-'));
const state = join(dir, 'state');
let worker: WorkerProcess | undefined;
let workerPort = 0;
let relay: Server;
let relayUrl = '';
/** Token requests seen by the relay, by the assertion's iss (sandbox id). */
const relayCount = new Map<string, number>();
/** Every token request the relay forwarded, in order: whose, and whether it registered an encryption key (enc_jwk). */
const relayLog: { iss: string; encJwk: boolean }[] = [];
const agents: AgentProcess[] = [];

async function startIssuer(master = TEST_GATEWAY_TOKEN): Promise<void> {
  worker = await startWorker({ persistTo: state, port: workerPort || undefined, vars: { ...SHORT, MOLTBOT_GATEWAY_TOKEN: master } });
  workerPort = worker.port;
}

async function stopIssuer(): Promise<void> {
  await worker?.stop();
  worker = undefined;
}

function derived(master: string, sandbox: string): string {
  return createHmac('sha256', master).update(`credential:GATEWAY_TOKEN:${sandbox}`).digest('base64url');
}

async function bootstrap(id: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${workerPort}/api/admin/sandboxes/${id}/bootstrap`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
  });
  expect(res.status).toBe(200);
  const path = join(dir, `${id}.bootstrap.json`);
  writeFileSync(path, await res.text(), { mode: 0o600 });
  return path;
}

async function agentFor(id: string, extra: string[] = []): Promise<{ agent: AgentProcess; out: string; hookLog: string }> {
  const out = join(dir, id);
  const hookLog = join(dir, `${id}.hook.log`);
  const agent = await startAgent([
    '--bootstrap-key',
    await bootstrap(id),
    '--dir',
    out,
    '--issuer',
    relayUrl,
    '--on-change',
    `echo "$CREDENTIALS_FILE" >> ${hookLog}`,
    ...extra,
  ]);
  agents.push(agent);
  return { agent, out, hookLog };
}

/** Runs the built agent to completion (asynchronously: the relay the agent talks to runs in this process). */
async function runAgent(args: string[]): Promise<{ status: number | null; stderr: string }> {
  const { execFile } = await import('node:child_process');
  return new Promise((resolve) => {
    execFile(process.execPath, [agentBundle(), ...args], { timeout: 30_000 }, (err, _stdout, stderr) => {
      resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stderr });
    });
  });
}

const readJson = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
const hookRuns = (p: string) => (existsSync(p) ? readFileSync(p, 'utf8').trim().split('\n').filter(Boolean).length : 0);
const metric = async (url: string, name: string) => {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
};

beforeAll(async () => {
  buildContainer();
  workerPort = await freePort();
  await startIssuer();
  // The relay forwards to whatever port the Worker has; with the Worker down it answers 502.
  relay = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    try {
      const form = new URLSearchParams(Buffer.concat(chunks).toString());
      const jwt = form.get('client_assertion') ?? '';
      const iss = String(JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()).iss);
      relayCount.set(iss, (relayCount.get(iss) ?? 0) + 1);
      relayLog.push({ iss, encJwk: form.has('enc_jwk') });
    } catch {
      /* not a token request */
    }
    try {
      const r = await fetch(`http://127.0.0.1:${workerPort}${req.url}`, {
        method: req.method,
        headers: { 'content-type': String(req.headers['content-type'] ?? '') },
        body: chunks.length ? Buffer.concat(chunks) : undefined,
      });
      res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'text/plain' });
      res.end(Buffer.from(await r.arrayBuffer()));
    } catch {
      res.writeHead(502).end();
    }
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  relayUrl = `http://127.0.0.1:${(relay.address() as { port: number }).port}`;
}, 120_000);

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await stopIssuer();
  await new Promise((r) => relay?.close(r));
  rmSync(dir, { recursive: true, force: true });
  removeBundle();
});

describe('agent against the real issuer', () => {
  it('gets its first credential, then refreshes before expiry across several lifetimes', async () => {
    const { agent, out, hookLog } = await agentFor('e2e-life', ['--max-backoff', '2s']);
    // state.json is written last of the three.
    await waitFor(() => existsSync(join(out, 'state.json')), 20_000, 'the first credential');
    const creds = readJson(join(out, 'credentials.json')) as { version: string; values: Record<string, string> };
    expect(creds.values.GATEWAY_TOKEN).toBe(derived(TEST_GATEWAY_TOKEN, 'e2e-life'));
    expect(statSync(out).mode & 0o777).toBe(0o700);
    for (const f of ['token', 'credentials.json', 'state.json']) expect(statSync(join(out, f)).mode & 0o777).toBe(0o600);
    await waitFor(() => hookRuns(hookLog) === 1, 5_000, 'the hook');
    expect(readFileSync(hookLog, 'utf8').trim()).toBe(join(out, 'credentials.json'));

    // Watch 2.5 lifetimes: healthy throughout, a new token before each one expires.
    const tokens = new Set<string>();
    const until = Date.now() + 2.5 * TTL_MS;
    while (Date.now() < until) {
      expect(await health(agent.url)).toBe(200);
      const st = readJson(join(out, 'state.json'));
      expect((st.expires_at as number) * 1000).toBeGreaterThan(Date.now());
      tokens.add(readFileSync(join(out, 'token'), 'utf8'));
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(tokens.size).toBeGreaterThanOrEqual(4);
    expect(await metric(agent.url, 'credential_agent_refreshes_total{result="ok"}')).toBeGreaterThanOrEqual(5);
    expect(hookRuns(hookLog)).toBe(1); // same version all along
    const text = JSON.stringify(agent.logs());
    expect(text).not.toContain(creds.values.GATEWAY_TOKEN);
    for (const t of tokens) expect(text).not.toContain(t.trim());
    await agent.stop();
  }, 60_000);

  it('issuer down: keeps the token, /healthz 200 until expiry then 503; issuer back: recovers', async () => {
    const { agent, out } = await agentFor('e2e-outage', ['--max-backoff', '2s']);
    await waitFor(async () => (await health(agent.url)) === 200, 20_000, 'a first token');
    await stopIssuer();
    const exp = (readJson(join(out, 'state.json')).expires_at as number) * 1000;
    // Longer than a refresh interval (~5 s) and up to expiry: still healthy on the old token.
    while (Date.now() < exp - 500) {
      expect(await health(agent.url)).toBe(200);
      await new Promise((r) => setTimeout(r, 250));
    }
    await waitFor(async () => (await health(agent.url)) === 503, 3_000, '503 after expiry');
    expect(await metric(agent.url, 'credential_agent_consecutive_failures')).toBeGreaterThan(0);
    expect(agent.logs().some((l) => l.event === 'refresh_failed')).toBe(true);

    await startIssuer();
    await waitFor(async () => (await health(agent.url)) === 200, 15_000, 'recovery once the issuer is back');
    // The new token is served as soon as it is on disk; the count resets once state.json is written too.
    await waitFor(async () => (await metric(agent.url, 'credential_agent_consecutive_failures')) === 0, 5_000, 'the failure count reset');
    expect(await metric(agent.url, 'credential_agent_consecutive_failures')).toBe(0);
    await agent.stop();
  }, 90_000);

  it('a changed master secret: new credentials.json and the hook runs exactly once; POST /refresh picks a change up at once', async () => {
    const { agent, out, hookLog } = await agentFor('e2e-rotate', ['--max-backoff', '2s']);
    await waitFor(() => hookRuns(hookLog) === 1, 20_000, 'the first hook run');
    const v1 = readJson(join(out, 'credentials.json')) as { version: string };

    await stopIssuer();
    await startIssuer('a-rotated-master-value-0123456789');
    await waitFor(
      () => (readJson(join(out, 'credentials.json')) as { version: string }).version !== v1.version,
      20_000,
      'the new credentials',
    );
    const v2 = readJson(join(out, 'credentials.json')) as { version: string; values: Record<string, string> };
    expect(v2.values.GATEWAY_TOKEN).toBe(derived('a-rotated-master-value-0123456789', 'e2e-rotate'));
    await waitFor(() => hookRuns(hookLog) === 2, 5_000, 'the hook for the new version');
    await new Promise((r) => setTimeout(r, TTL_MS)); // more refreshes of the same version...
    expect(hookRuns(hookLog)).toBe(2); // ...run no hook

    // Another change, picked up by a nudge rather than the schedule.
    await stopIssuer();
    await startIssuer('a-third-master-value-0123456789ab');
    const res = await fetch(`${agent.url}/refresh`, { method: 'POST' });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { credentials_version: string };
    expect(body.credentials_version).not.toBe(v2.version);
    const v3 = readJson(join(out, 'credentials.json')) as { version: string; values: Record<string, string> };
    expect(v3.version).toBe(body.credentials_version);
    expect(v3.values.GATEWAY_TOKEN).toBe(derived('a-third-master-value-0123456789ab', 'e2e-rotate'));
    await waitFor(() => hookRuns(hookLog) === 3, 5_000, 'the hook after the nudge');
    // At most one nudge a second.
    const again = await fetch(`${agent.url}/refresh`, { method: 'POST' });
    expect(again.status).toBe(429);
    expect(again.headers.get('retry-after')).toBe('1');
    await agent.stop();
  }, 90_000);

  it('a revoked sandbox: one clear log line, and no more than a handful of requests a minute', async () => {
    const { agent } = await agentFor('e2e-revoked'); // default maximum backoff (5 min)
    await waitFor(async () => (await health(agent.url)) === 200, 20_000, 'a first token');
    const del = await fetch(`http://127.0.0.1:${workerPort}/api/admin/sandboxes/e2e-revoked`, {
      method: 'DELETE',
      headers: { Authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
    });
    expect(del.status).toBe(200);
    const before = relayCount.get('e2e-revoked') ?? 0;
    // Its next scheduled refresh is refused; then it waits minutes, not seconds.
    await waitFor(() => agent.logs().some((l) => l.event === 'bootstrap_refused'), 15_000, 'the refusal log line');
    await new Promise((r) => setTimeout(r, 12_000));
    const requests = (relayCount.get('e2e-revoked') ?? 0) - before;
    expect(requests).toBeGreaterThanOrEqual(1);
    expect(requests).toBeLessThanOrEqual(2);
    const said = agent.logs().filter((l) => l.event === 'bootstrap_refused');
    expect(said).toHaveLength(1);
    expect(String(said[0]!.message)).toContain('client_revoked');
    expect(await health(agent.url)).toBe(503); // the token expired meanwhile
  }, 60_000);
});

describe('agent encryption key', () => {
  it('finding 5: after a --once run with the same bootstrap file replaced its key at the issuer, the running agent re-registers it and recovers within a refresh or two', async () => {
    const { agent, out } = await agentFor('e2e-rekey', ['--max-backoff', '2s']);
    await waitFor(async () => existsSync(join(out, 'state.json')) && (await health(agent.url)) === 200, 20_000, 'a first credential');
    const creds = readJson(join(out, 'credentials.json')) as { version: string; values: Record<string, string> };

    // What the reviewer did: one --once run with the same bootstrap file. The issuer now holds
    // that process's X25519 key, which the running agent does not have.
    const once = await runAgent([
      '--once',
      '--bootstrap-key',
      join(dir, 'e2e-rekey.bootstrap.json'),
      '--dir',
      join(dir, 'e2e-rekey-once'),
      '--issuer',
      relayUrl,
    ]);
    expect(once.status).toBe(0);
    const from = relayLog.length;
    const undecryptable = () => agent.logs().findIndex((l) => l.event === 'refresh_failed' && l.code === 'credentials_undecryptable');

    // Its next scheduled refresh (4-6 s) gets a cred it cannot decrypt; the retry re-sends its key.
    // Healthy throughout: the old token stays in use until the new one is on disk.
    const until = Date.now() + 2.5 * TTL_MS;
    let recovered = false;
    while (Date.now() < until && !recovered) {
      expect(await health(agent.url)).toBe(200);
      const i = undecryptable();
      recovered =
        i >= 0 &&
        agent
          .logs()
          .slice(i)
          .some((l) => l.event === 'token_refreshed');
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(recovered).toBe(true);
    const mine = relayLog.slice(from).filter((r) => r.iss === 'e2e-rekey');
    // The failed request carried no key (it had one registered); the next one did.
    expect(mine.slice(0, 2).map((r) => r.encJwk)).toEqual([false, true]);
    expect(await metric(agent.url, 'credential_agent_refresh_failures_total{code="credentials_undecryptable"}')).toBe(1);
    expect(agent.logs().filter((l) => l.code === 'credentials_undecryptable')).toHaveLength(1);
    expect(readJson(join(out, 'credentials.json'))).toEqual(creds);

    // And it keeps working on the normal schedule: the next refresh decrypts without re-sending.
    const oks = agent.logs().filter((l) => l.event === 'token_refreshed').length;
    await waitFor(() => agent.logs().filter((l) => l.event === 'token_refreshed').length > oks, 2 * TTL_MS, 'the next scheduled refresh');
    expect(
      relayLog
        .slice(from)
        .filter((r) => r.iss === 'e2e-rekey')
        .at(-1)!.encJwk,
    ).toBe(false);
    expect(await health(agent.url)).toBe(200);
    await agent.stop();
  }, 60_000);
});

describe('agent --once', () => {
  it('writes one credential and exits 0; exits non-zero with one clear line when it cannot', async () => {
    const run = runAgent;
    const key = await bootstrap('e2e-once');
    const out = join(dir, 'e2e-once');
    const ok = await run(['--once', '--bootstrap-key', key, '--dir', out, '--issuer', relayUrl]);
    expect(ok.status).toBe(0);
    expect(readJson(join(out, 'credentials.json'))).toHaveProperty('version');

    const unreachable = await run(['--once', '--bootstrap-key', key, '--dir', out, '--issuer', 'http://127.0.0.1:1']);
    expect(unreachable.status).toBe(1);
    expect(unreachable.stderr.trim().split('\n')).toHaveLength(1);
    expect(unreachable.stderr).toMatch(/issuer unreachable/);

    writeFileSync(join(dir, 'bad.json'), '{"client_id": 3}');
    const malformed = await run(['--once', '--bootstrap-key', join(dir, 'bad.json'), '--dir', out]);
    expect(malformed.status).toBe(2);
    expect(malformed.stderr).toMatch(/malformed/);

    await fetch(`http://127.0.0.1:${workerPort}/api/admin/sandboxes/e2e-once/bootstrap`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
    });
    const refused = await run(['--once', '--bootstrap-key', key, '--dir', out, '--issuer', relayUrl]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/bootstrap key refused by the issuer \(invalid_client: kid_mismatch/);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
  }, 60_000);
});
