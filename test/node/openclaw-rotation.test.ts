/**
 * Secrets rotated the local way (`npm run dev:rotate -- NAME`, issue 13 item 6) reach the running
 * real gateway with no restart (item 5), by the flow their delivery calls for.
 *
 * One stack for the file (OpenClaw takes ~30 s to start, a completion 10 to 25 s): `npm run dev --
 * --gateway openclaw` on a fresh copy of the working tree and a free base port, then
 *   - STANDIN_PROVIDER_KEY, delivered at egress (the sandbox holds a sentinel, the Worker's egress
 *     handler puts the key in): the egress flow. The provider accepts the new key, the Worker
 *     restarts, the provider revokes the old key at once, and nothing else happens: no agent
 *     refresh, no change hook, the agent's credentials version and credentials.json unchanged.
 *     The completion right after the restart (the stack's own proof) and the next one reach the
 *     stand-in with the NEW key (its log's fingerprints), never a refusal; the gateway's PID is the
 *     same; a WebSocket to the gateway stays open (the one through the local Worker ends when
 *     wrangler dev restarts, since the Worker relays its frames; that is printed, and a new one
 *     through the chain answers); the delay from the new Worker serving to the first completion
 *     accepted with the new key is printed and is in dev:rotate's report;
 *   - no secret value, old or new, and no sentinel, in openclaw.json, any log of the stack, or the
 *     command line or environment of any of its processes;
 *   - MOLTBOT_GATEWAY_TOKEN, a value the sandbox holds: the push flow (the agent refreshes, the
 *     change hook runs secrets.reload). The hook's failure (a wrong local password) is an exit
 *     code and a line, no secret; in a rotation it is logged and counted by the agent, dev:rotate
 *     says so, the gateway keeps the values it had (its sentinel still valid: completions keep
 *     working), and the agent's retry at its next refresh applies the new ones.
 * Plus the hook on its own, with no gateway: what it does before the gateway starts.
 */
import { type ChildProcess, exec, execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ensureLocalPassword,
  type MiniSocket,
  openWebSocket,
  parseReloadArgs,
  ReloadError,
  reloadSecrets,
} from '../../container/openclaw-reload.js';
import { FIXED_REPLY, keyFingerprint } from '../../scripts/local-stack/model-provider.js';
import { MARKER_ENV } from '../../scripts/local-stack/processes.js';
import { type CredentialsFile, DEV_VARS_FILE, parseDotenv } from '../../src/admin-api.js';
import { assertRealGateway, GATEWAY_PROBLEM, itRealGateway } from './real-gateway.js';
import { freshCopy, processes, spawnOpenClawStack } from './stack-copy.js';
import { freeBase, freePort, ROOT } from './worker-process.js';

const run = promisify(exec);
const runFile = promisify(execFile);
/** issuer, agent, proxy, gateway, model provider, egress hop. */
const PORT_COUNT = 6;
/** wrangler's first bundle, the agent, then OpenClaw (25 to 30 s on two shared cores, more when busy). */
const STACK_UP_MS = 240_000;
/** An agent run through OpenClaw: 10 to 25 s measured on two shared cores. */
const COMPLETION_MS = 90_000;
/** The Worker's restart, then the hook or a completion through the chain: seconds; dev:rotate itself allows 200 s. */
const ROTATE_MS = 210_000;
/** The change hook runs at most 30 s (HOOK_TIMEOUT_MS), usually under a second. */
const HOOK_MS = 35_000;
/** Ctrl-C: each child gets 8 s of grace. */
const STOP_MS = 45_000;
const READY_LINE = /^Then the operator CLI/m;
/** The Worker secrets of keys.example (its "--- secrets ---" part): the values searched for. */
const SECRET_NAMES = ['ADMIN_TOKEN', 'SIGNING_KEY_KEK', 'MOLTBOT_GATEWAY_TOKEN', 'STANDIN_PROVIDER_KEY'];

function devVars(dir: string): Record<string, string> {
  return parseDotenv(readFileSync(join(dir, DEV_VARS_FILE), 'utf8'));
}

/** A completion through the whole chain: Worker -> proxy -> OpenClaw -> stand-in model provider. */
async function completion(issuer: string): Promise<{ status: number; content: string; sentAt: number; doneAt: number }> {
  const sentAt = Date.now();
  const res = await fetch(`${issuer}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'openclaw', messages: [{ role: 'user', content: 'hello' }] }),
    signal: AbortSignal.timeout(COMPLETION_MS),
  });
  const body = (await res.json().catch(() => ({}))) as { choices?: { message?: { content?: string } }[] };
  return {
    status: res.status,
    content: body.choices?.[0]?.message?.content ?? JSON.stringify(body).slice(0, 300),
    sentAt,
    doneAt: Date.now(),
  };
}

/** The stand-in provider's log: `<ISO time> POST /v1/chat/completions key <fp>: accepted ...`. */
function providerLines(dir: string): { at: number; key: string; ok: boolean; line: string }[] {
  const text = readFileSync(join(dir, '.dev-stack', 'logs', 'model-provider.log'), 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const m = /^(\S+) (\S+) (\S+) (?:key (\w+)|no key): (.*)$/.exec(line);
      return { at: Date.parse(m?.[1] ?? ''), key: m?.[4] ?? '', ok: (m?.[5] ?? '').startsWith('accepted'), line };
    });
}

/** OpenClaw's CLI connect through the chain: no token, the chain vouches for DEV_USER. */
const CLI_CONNECT = {
  client: { id: 'cli', version: 'rotation-test', platform: process.platform, mode: 'cli' },
  role: 'operator',
  scopes: ['operator.read'],
};

/** A WebSocket client of the gateway: connect with `params`, then `call(method)`. */
function gatewaySocket(
  url: string,
  params: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<{ ws: MiniSocket; call(method: string): Promise<{ ok: boolean; error?: unknown }>; closed(): string | undefined }> {
  return new Promise((resolve, reject) => {
    let closedWith: string | undefined;
    const pending = new Map<string, (f: { ok: boolean; error?: unknown }) => void>();
    let n = 0;
    const ws = openWebSocket(
      url,
      {
        open: () => undefined,
        error: (d) => reject(new Error(`WebSocket failed: ${d}`)),
        close: (d) => {
          closedWith = d;
          reject(new Error(`closed before connect: ${d}`));
        },
        message: (text) => {
          const f = JSON.parse(text) as { type: string; event?: string; id?: string; ok: boolean; error?: unknown };
          if (f.type === 'event' && f.event === 'connect.challenge') {
            ws.send(
              JSON.stringify({ type: 'req', id: 'connect', method: 'connect', params: { minProtocol: 4, maxProtocol: 4, ...params } }),
            );
            return;
          }
          if (f.type !== 'res') return;
          if (f.id === 'connect') {
            if (!f.ok) return reject(new Error(`connect refused: ${JSON.stringify(f.error)}`));
            return resolve({
              ws,
              closed: () => closedWith,
              call: (method) =>
                new Promise((r) => {
                  const id = `call-${++n}`;
                  pending.set(id, r);
                  ws.send(JSON.stringify({ type: 'req', id, method, params: {} }));
                }),
            });
          }
          pending.get(f.id ?? '')?.(f);
          pending.delete(f.id ?? '');
        },
      },
      headers,
    );
  });
}

describe('the change hook on its own', () => {
  const dir = mkdtempSync(join(tmpdir(), 'openclaw-reload-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('creates the local password once, 0600, and keeps it', () => {
    const file = join(dir, 'sub', 'openclaw-local-auth.json');
    const pw = ensureLocalPassword(file);
    expect(pw.length).toBeGreaterThanOrEqual(32);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(ensureLocalPassword(file)).toBe(pw);
    writeFileSync(join(dir, 'short.json'), '{"password":"x"}', { mode: 0o600 });
    expect(() => ensureLocalPassword(join(dir, 'short.json'))).toThrow(ReloadError);
  });

  it("concurrent first runs (the stack and the agent's first hook) all read one complete password", async () => {
    const file = join(dir, 'race', 'openclaw-local-auth.json');
    const script = `import { ensureLocalPassword } from ${JSON.stringify(`${ROOT}container/openclaw-reload.ts`)}; process.stdout.write(ensureLocalPassword(${JSON.stringify(file)}));`;
    const runs = await Promise.all(
      Array.from({ length: 8 }, () =>
        promisify(execFile)(process.execPath, ['--import', `${ROOT}scripts/register-ts.mjs`, '--input-type=module', '-e', script], {
          cwd: ROOT,
        }),
      ),
    );
    const passwords = new Set(runs.map((r) => r.stdout));
    expect(passwords.size).toBe(1);
    expect([...passwords][0]!.length).toBeGreaterThanOrEqual(32);
    expect(readdirSync(dirname(file))).toEqual(['openclaw-local-auth.json']);
  });

  it('with no gateway listening it succeeds: the gateway resolves the file when it starts', async () => {
    const port = await freePort();
    const r = await reloadSecrets(`ws://127.0.0.1:${port}`, 'x'.repeat(40));
    expect(r.outcome).toBe('no-gateway');
  });

  it('takes only a loopback ws:// URL, and finds the password next to CREDENTIALS_FILE', () => {
    expect(() => parseReloadArgs(['--url', 'ws://203.0.113.7:18789'], {})).toThrow(/loopback/);
    // The contract's one loopback rule (isLoopbackUrl), over ws:// and without credentials in the URL.
    for (const url of [
      'ws://evil.localhost:1',
      'ws://localhost.:1',
      'ws://127.0.0.1.nip.io:1',
      'wss://127.0.0.1:1',
      'http://127.0.0.1:1',
      'ws://u:p@127.0.0.1:1',
      'ws://0.0.0.0:1',
      'not a url',
    ]) {
      expect(() => parseReloadArgs(['--url', url], { CREDENTIALS_FILE: '/c/credentials.json' }), url).toThrow(/loopback/);
    }
    for (const url of ['ws://127.0.0.1:1', 'ws://127.3.4.5:1/', 'ws://[::1]:1', 'ws://localhost:1']) {
      expect(parseReloadArgs(['--url', url], { CREDENTIALS_FILE: '/c/credentials.json' }).url).toBe(url);
    }
    expect(() => parseReloadArgs([], {})).toThrow(/CREDENTIALS_FILE/);
    expect(parseReloadArgs([], { CREDENTIALS_FILE: '/c/credentials.json', GATEWAY_PORT: '19000' })).toEqual({
      url: 'ws://127.0.0.1:19000',
      authFile: '/c/openclaw-local-auth.json',
    });
  });
});

describe('rotating secrets locally, into the running real gateway', () => {
  const dir = mkdtempSync(join(tmpdir(), 'issuer-openclaw-rotation-'));
  let child: ChildProcess | undefined;
  let output = () => '';
  let base = 0;
  let exited: Promise<string> | undefined;
  const home = join(dir, '.dev-stack', 'openclaw-home');

  /** The agent as it reports itself: its credentials version, refreshes and hook runs. */
  const agentState = async () => {
    const agentUrl = `http://127.0.0.1:${base + 1}`;
    const health = (await (await fetch(`${agentUrl}/healthz`)).json()) as { credentials_version: string | null };
    const text = await (await fetch(`${agentUrl}/metrics`)).text();
    const n = (metric: string, r: string) => Number(new RegExp(`^${metric}\\{result="${r}"\\} (\\d+)$`, 'm').exec(text)?.[1]);
    return {
      version: health.credentials_version,
      refreshes: n('credential_agent_refreshes_total', 'ok'),
      hooks: { ok: n('credential_agent_hook_runs_total', 'ok'), error: n('credential_agent_hook_runs_total', 'error') },
    };
  };
  /** The agent's state.json: identifiers and times only. */
  const stateFile = () =>
    JSON.parse(readFileSync(join(dir, '.dev-stack', 'agent', 'state.json'), 'utf8')) as {
      credentials_version?: string;
      hook_version?: string;
      last_refresh?: string;
      jti?: string;
    };
  /** POST /refresh (one a second), then the change hook's run for the new version. */
  const nudgeAndWaitHook = async () => {
    const before = (await agentState()).hooks;
    for (let i = 0; ; i++) {
      const res = await fetch(`http://127.0.0.1:${base + 1}/refresh`, { method: 'POST' });
      await res.body?.cancel();
      if (res.status !== 429 || i > 5) break;
      await new Promise((r) => setTimeout(r, 1_000));
    }
    const deadline = Date.now() + HOOK_MS;
    for (;;) {
      const now = (await agentState()).hooks;
      if (now.ok > before.ok || now.error > before.error) return now.ok > before.ok ? 'ok' : 'failed';
      if (Date.now() > deadline) return 'no hook run';
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  beforeAll(async () => {
    if (GATEWAY_PROBLEM !== undefined) return; // the test itself fails or skips (real-gateway.ts)
    await freshCopy(dir, { gateway: true });
    base = await freeBase(PORT_COUNT);
    const stack = spawnOpenClawStack(dir, base);
    child = stack.child;
    exited = stack.exited;
    output = stack.output;
    const deadline = Date.now() + STACK_UP_MS;
    while (!READY_LINE.test(output())) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`npm run dev stopped:\n${output()}`);
      if (Date.now() > deadline) throw new Error(`the stack was not up within ${STACK_UP_MS} ms:\n${output()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }, STACK_UP_MS + 60_000);

  afterAll(async () => {
    // Ctrl-C as a terminal sends it; then whatever of the stack still runs is killed, and named.
    if (child?.pid && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, 'SIGINT');
      } catch {
        /* gone */
      }
      await Promise.race([exited, new Promise((r) => setTimeout(r, STOP_MS))]);
    }
    const left = processes().filter(
      (p) =>
        p.pid !== process.pid &&
        (p.env.includes(`HOME=${home}`) || (p.cwd.startsWith(dir) && p.env.some((e) => e.startsWith(`${MARKER_ENV}=`)))),
    );
    for (const p of left) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    // The stack's logs outlive a failed run in .test-results/ (git-ignored); never a secret in them (checked above).
    if (existsSync(join(dir, '.dev-stack', 'logs'))) {
      const keep = join(ROOT, '.test-results', 'openclaw-rotation-logs');
      rmSync(keep, { recursive: true, force: true });
      cpSync(join(dir, '.dev-stack', 'logs'), keep, { recursive: true });
    }
    rmSync(dir, { recursive: true, force: true });
    expect(left.map((p) => `${p.pid} ${p.cmd}`)).toEqual([]);
  }, STOP_MS + 30_000);

  itRealGateway(
    'the egress-delivered provider key: the Worker alone applies it, the completion right after carries the new key, the agent is untouched, no secret anywhere',
    async () => {
      assertRealGateway();
      const issuer = `http://127.0.0.1:${base}`;
      const credentialsFile = join(dir, '.dev-stack', 'agent', 'credentials.json');
      const localAuthFile = join(dir, '.dev-stack', 'agent', 'openclaw-local-auth.json');
      const configFile = join(home, '.openclaw', 'openclaw.json');
      const agentLogFile = join(dir, '.dev-stack', 'logs', 'agent.log');
      const before = devVars(dir);
      const oldKey = before.STANDIN_PROVIDER_KEY!;
      expect(statSync(credentialsFile).mode & 0o777).toBe(0o600);
      expect(statSync(localAuthFile).mode & 0o777).toBe(0o600);

      // A fresh agent token first: its scheduled refresh is then at least 4 minutes away (40% of
      // AGENT_TOKEN_TTL), so any change of the agent during the rotation would be the rotation's.
      expect(await nudgeAndWaitHook()).toBe('ok');
      const oldCredentialsText = readFileSync(credentialsFile, 'utf8');
      const oldCredentials = JSON.parse(oldCredentialsText) as CredentialsFile;
      // The sandbox holds a sentinel for the provider key, never the key.
      expect(oldCredentials.values.PROVIDER_API_KEY).toMatch(/^eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+$/);
      expect(oldCredentialsText).not.toContain(oldKey);

      // The gateway process (OpenClaw names itself openclaw-gateway) and its PID.
      const gatewayPids = () =>
        processes()
          .filter((p) => p.env.includes(`HOME=${home}`) && p.cmd.trim() === 'openclaw-gateway')
          .map((p) => p.pid);
      const pidBefore = gatewayPids();
      expect(pidBefore).toHaveLength(1);

      // A completion with the old key, and a WebSocket through the whole chain, both before.
      const first = await completion(issuer);
      expect(first.status).toBe(200);
      expect(first.content).toBe(FIXED_REPLY);
      expect(
        providerLines(dir)
          .filter((l) => l.ok)
          .map((l) => l.key),
      ).toContain(keyFingerprint(oldKey));
      // Two WebSockets: one through the whole chain, and one straight to the gateway (as the hook
      // connects: the backend client with the local password). wrangler dev's restart ends every
      // connection that runs through the local Worker, so the first shows that; the second shows
      // that the gateway itself is not touched by the rotation at all.
      const chainBefore = await gatewaySocket(`ws://127.0.0.1:${base}`, CLI_CONNECT);
      expect((await chainBefore.call('health')).ok).toBe(true);
      const localPassword = (JSON.parse(readFileSync(localAuthFile, 'utf8')) as { password: string }).password;
      const direct = await gatewaySocket(`ws://127.0.0.1:${base + 3}`, {
        client: { id: 'gateway-client', version: 'rotation-test', platform: process.platform, mode: 'backend' },
        role: 'operator',
        scopes: ['operator.admin'],
        auth: { password: localPassword },
      });
      expect((await direct.call('health')).ok).toBe(true);
      const agentBefore = await agentState();
      const stateBefore = stateFile();
      const hookLinesBefore = (readFileSync(agentLogFile, 'utf8').match(/openclaw-reload: /g) ?? []).length;
      const gatewayReloadsBefore = (readFileSync(join(dir, '.dev-stack', 'logs', 'gateway.log'), 'utf8').match(/secrets\.reload/g) ?? [])
        .length;

      // The rotation, as the operator runs it.
      const rotateStarted = Date.now();
      const { stdout } = await run('npm run --silent dev:rotate -- STANDIN_PROVIDER_KEY', { cwd: dir, timeout: ROTATE_MS });
      const rotateDone = Date.now();
      const report = JSON.parse(stdout.trim().split('\n').pop()!) as {
        ok: boolean;
        changed: string[];
        flow: string;
        events: { step: string; at: number; detail?: string }[];
      };
      expect(report.ok).toBe(true);
      expect(report.changed).toEqual(['STANDIN_PROVIDER_KEY']);
      // The report says which flow ran; the egress flow has no agent step and no hook step.
      expect(report.flow).toBe('egress');
      expect(stdout).toMatch(/^dev:rotate: egress flow: /m);
      expect(
        report.events.map((e) => e.step).filter((s) => /agent refreshed|re-resolved|hook/.test(s) && !/no change hook/.test(s)),
      ).toEqual([]);
      const at = (step: string) => report.events.find((e) => e.step.startsWith(step))?.at ?? NaN;
      const newKey = devVars(dir).STANDIN_PROVIDER_KEY!;
      expect(newKey).not.toBe(oldKey);
      expect(stdout).not.toContain(newKey);
      expect(stdout).not.toContain(oldKey);
      // New key accepted before the Worker restarted; the old one revoked right after it served, then the proof.
      expect(at('model provider accepts')).toBeLessThan(at('Worker stopped'));
      expect(at('Worker stopped')).toBeLessThan(at('Worker serves'));
      expect(at('model provider revoked')).toBeGreaterThanOrEqual(at('Worker serves'));
      expect(at('first completion with the new key accepted')).toBeGreaterThanOrEqual(at('model provider revoked'));
      expect(report.events.find((e) => e.step.startsWith('first completion'))?.detail).toContain(`key ${keyFingerprint(newKey)}`);
      expect(report.events.map((e) => e.step)).toContain('agent untouched (no refresh, no change hook)');

      // The completion right after the Worker restart (the stack's proof) carried the new key: the
      // first provider call after the new Worker served, and every one since.
      const serves = at('Worker serves');
      const sinceServes = providerLines(dir).filter((l) => l.at >= serves - 1);
      expect(sinceServes.length).toBeGreaterThan(0);
      expect(sinceServes.map((l) => `${l.key} ${l.ok}`)).toEqual(sinceServes.map(() => `${keyFingerprint(newKey)} true`));

      // The next completion: the new key at the provider.
      const linesBefore = providerLines(dir).length;
      const next = await completion(issuer);
      expect(next.status).toBe(200);
      expect(next.content).toBe(FIXED_REPLY);
      const after = providerLines(dir).slice(linesBefore);
      expect(after.length).toBeGreaterThan(0);
      expect(after.map((l) => l.key)).toEqual(after.map(() => keyFingerprint(newKey)));
      // No completion failed in the whole run: never a refusal at the provider (OpenClaw would have
      // disabled the key for a minute), never a refusal at the egress hop.
      expect(
        providerLines(dir)
          .filter((l) => !l.ok)
          .map((l) => l.line),
      ).toEqual([]);
      const hopLines = readFileSync(join(dir, '.dev-stack', 'logs', 'egress-hop.log'), 'utf8')
        .split('\n')
        .filter(Boolean);
      expect(hopLines.filter((l) => !/ 200 \(\d+ ms\)$/.test(l))).toEqual([]);

      // The agent did nothing: same credentials version, same credentials.json, no refresh, no hook.
      const agentAfter = await agentState();
      expect(agentAfter).toEqual(agentBefore);
      expect(agentAfter.version).toBe(oldCredentials.version);
      expect(readFileSync(credentialsFile, 'utf8')).toBe(oldCredentialsText);
      expect(stateFile()).toEqual(stateBefore);
      expect((readFileSync(agentLogFile, 'utf8').match(/openclaw-reload: /g) ?? []).length).toBe(hookLinesBefore);
      expect((readFileSync(join(dir, '.dev-stack', 'logs', 'gateway.log'), 'utf8').match(/secrets\.reload/g) ?? []).length).toBe(
        gatewayReloadsBefore,
      );

      // Same gateway process; the WebSocket opened before the rotation still answers.
      expect(gatewayPids()).toEqual(pidBefore);
      expect(direct.closed()).toBeUndefined();
      expect((await direct.call('health')).ok).toBe(true);
      direct.ws.close();
      console.log(
        `the WebSocket through the local Worker: ${chainBefore.closed() === undefined ? 'still open' : `closed by the Worker's restart (${chainBefore.closed()})`}`,
      );
      chainBefore.ws.close();
      const chainAfter = await gatewaySocket(`ws://127.0.0.1:${base}`, CLI_CONNECT).catch((e: Error) => {
        const gw = readFileSync(join(dir, '.dev-stack', 'logs', 'gateway.log'), 'utf8')
          .split('\n')
          .filter((l) => /closed|unauthori|refus|ws\]/.test(l))
          .slice(-8)
          .join('\n');
        const proxyLog = readFileSync(join(dir, '.dev-stack', 'logs', 'proxy.log'), 'utf8')
          .split('\n')
          .slice(-8)
          .join('\n');
        throw new Error(`${e.message}\ngateway:\n${gw}\nproxy:\n${proxyLog}`);
      });
      expect((await chainAfter.call('health')).ok).toBe(true);
      chainAfter.ws.close();

      // The figures (bench/README.md): the delay is the report's, and the provider's log agrees.
      const delay = at('first completion with the new key accepted') - serves;
      const firstNewAtProvider = sinceServes[0]!.at;
      const figures = {
        workerRestartMs: serves - at('Worker stopped'),
        servesToFirstCompletionAcceptedWithNewKeyMs: delay,
        servesToFirstProviderRequestWithNewKeyMs: firstNewAtProvider - serves,
        nextCompletionMs: next.doneAt - next.sentAt,
        devRotateCommandMs: rotateDone - rotateStarted,
      };
      expect(Math.abs(figures.servesToFirstProviderRequestWithNewKeyMs - delay)).toBeLessThan(50);
      expect(stdout).toContain(`dev:rotate: from the new Worker serving to the first completion accepted with the new value: ${delay} ms`);
      console.log(`egress rotation: from the new Worker serving to the first completion accepted with the new key: ${delay} ms`);
      console.log(`rotation figures: ${JSON.stringify(figures)}`);

      // The hook's failure: a wrong local password is refused, an exit code and one line, no secret.
      const bad = join(dir, 'wrong-auth.json');
      writeFileSync(bad, `${JSON.stringify({ password: 'w'.repeat(43) })}\n`, { mode: 0o600 });
      const failed = await runFile(process.execPath, [
        join(dir, '.dev-stack', 'bin', 'openclaw-reload.mjs'),
        '--url',
        `ws://127.0.0.1:${base + 3}`,
        '--auth-file',
        bad,
      ]).then(
        () => undefined,
        (e: { code: number; stderr: string }) => e,
      );
      expect(failed?.code).toBe(1);
      expect(failed!.stderr).toMatch(/refused the connection .*password/);
      expect(failed!.stderr).not.toContain('w'.repeat(43));

      // The local password is for direct local callers only: with a forwarded header (what every
      // request through the verifying proxy carries) OpenClaw refuses it.
      const forwarded = await gatewaySocket(
        `ws://127.0.0.1:${base + 3}`,
        {
          client: { id: 'gateway-client', version: 'rotation-test', platform: process.platform, mode: 'backend' },
          role: 'operator',
          scopes: ['operator.admin'],
          auth: { password: localPassword },
        },
        { 'x-forwarded-for': '203.0.113.7' },
      ).then(
        (s) => (s.ws.close(), 'accepted'),
        (e: Error) => e.message,
      );
      expect(forwarded).not.toBe('accepted');
      console.log(`the local password with X-Forwarded-For: ${forwarded.slice(0, 200)}`);

      // No secret value, old or new, and no sentinel, anywhere it must not be.
      const secrets = new Set<string>([
        ...SECRET_NAMES.map((n) => before[n]!),
        ...SECRET_NAMES.map((n) => devVars(dir)[n]!),
        ...Object.values(oldCredentials.values),
        (JSON.parse(readFileSync(localAuthFile, 'utf8')) as { password: string }).password,
      ]);
      expect([...secrets].every((s) => typeof s === 'string' && s.length >= 32)).toBe(true);
      expect(secrets.size).toBeGreaterThanOrEqual(8);
      const config = readFileSync(configFile, 'utf8');
      const logs: [string, string][] = [
        ['npm run dev output', output()],
        ['dev:rotate output', stdout],
      ];
      const walk = (d: string) => {
        for (const e of readdirSync(d, { withFileTypes: true })) {
          const p = join(d, e.name);
          if (e.isDirectory()) walk(p);
          else if (/\.(log|jsonl)$/.test(e.name)) logs.push([p.slice(dir.length + 1), readFileSync(p, 'utf8')]);
        }
      };
      walk(join(dir, '.dev-stack'));
      if (existsSync(join(dir, '.wrangler'))) walk(join(dir, '.wrangler'));
      expect(logs.map(([n]) => n)).toEqual(
        expect.arrayContaining([
          '.dev-stack/logs/agent.log',
          '.dev-stack/logs/gateway.log',
          '.dev-stack/logs/openclaw.jsonl',
          '.dev-stack/logs/issuer.log',
          '.dev-stack/logs/model-provider.log',
          '.dev-stack/logs/egress-hop.log',
          '.dev-stack/logs/proxy.log',
        ]),
      );
      // Every process of the stack: npm, the stack script, and everything carrying its marker or the gateway's HOME.
      const stackPid = String(child!.pid);
      const all = processes();
      // The stack script's pid is in the marker it gives its children (`<pid>:<name>`).
      const gatewayMarker = all.find((p) => p.env.includes(`HOME=${home}`))?.env.find((e) => e.startsWith(`${MARKER_ENV}=`)) ?? '';
      const scriptPid = Number(/=(\d+):/.exec(gatewayMarker)?.[1]);
      expect(scriptPid).toBeGreaterThan(0);
      const stack = all.filter(
        (p) =>
          String(p.pid) === stackPid ||
          p.pid === scriptPid ||
          p.cwd.startsWith(dir) ||
          p.env.includes(`HOME=${home}`) ||
          p.env.some((e) => e.startsWith(`${MARKER_ENV}=${scriptPid}:`)),
      );
      expect(stack.map((p) => p.cmd).join('\n')).toMatch(/openclaw-gateway/);
      expect(stack.map((p) => p.cmd).join('\n')).toMatch(/refresh\.ts/);
      const found: string[] = [];
      for (const s of secrets) {
        const fp = keyFingerprint(s);
        if (config.includes(s)) found.push(`openclaw.json holds ${fp}`);
        for (const [name, text] of logs) if (text.includes(s)) found.push(`${name} holds ${fp}`);
        for (const p of stack) {
          if (p.cmdline.includes(s)) found.push(`cmdline of ${p.pid} (${p.cmd.slice(0, 60)}) holds ${fp}`);
          if (p.environ.includes(s)) found.push(`environ of ${p.pid} (${p.cmd.slice(0, 60)}) holds ${fp}`);
        }
      }
      expect(found).toEqual([]);
    },
    HOOK_MS + COMPLETION_MS * 2 + ROTATE_MS + 60_000,
  );

  itRealGateway(
    'a value the sandbox holds (MOLTBOT_GATEWAY_TOKEN): the push flow; a failed hook is logged and counted, the gateway keeps its values, and the retry at the next refresh applies the new ones',
    async () => {
      assertRealGateway();
      const issuer = `http://127.0.0.1:${base}`;
      const localAuthFile = join(dir, '.dev-stack', 'agent', 'openclaw-local-auth.json');
      const credentialsFile = join(dir, '.dev-stack', 'agent', 'credentials.json');
      const providerKey = devVars(dir).STANDIN_PROVIDER_KEY!;
      const inUse = devVars(dir).MOLTBOT_GATEWAY_TOKEN!;
      const tokenBefore = (JSON.parse(readFileSync(credentialsFile, 'utf8')) as { values: Record<string, string> }).values.GATEWAY_TOKEN;
      const good = readFileSync(localAuthFile, 'utf8');
      const wrong = 'f'.repeat(43);
      const before = (await agentState()).hooks;
      // The hook fails: the gateway refuses its password (as it would refuse a hook that lost it).
      writeFileSync(localAuthFile, `${JSON.stringify({ password: wrong })}\n`, { mode: 0o600 });
      let failed: { code?: number; stdout?: string; stderr?: string } | undefined;
      try {
        failed = await run('npm run --silent dev:rotate -- MOLTBOT_GATEWAY_TOKEN', { cwd: dir, timeout: ROTATE_MS }).then(
          () => undefined,
          (e: { code: number; stdout: string; stderr: string }) => e,
        );
      } finally {
        writeFileSync(localAuthFile, good, { mode: 0o600 });
      }
      expect(failed?.code).toBe(1);
      expect(failed?.stderr).toMatch(/change hook failed: the gateway keeps the old values \(see /);
      expect(failed?.stderr).not.toMatch(/model provider/);
      const report = JSON.parse(failed!.stdout!.trim().split('\n').pop()!) as {
        ok: boolean;
        flow: string;
        changed: string[];
        events: { step: string }[];
      };
      expect(report).toMatchObject({ ok: false, flow: 'push', changed: ['MOLTBOT_GATEWAY_TOKEN'] });
      expect(failed?.stdout).toMatch(/^dev:rotate: push flow: /m);
      expect(report.events.map((e) => e.step)).toContain('agent refreshed');
      const afterFailure = (await agentState()).hooks;
      expect(afterFailure.error).toBe(before.error + 1);
      expect(afterFailure.ok).toBe(before.ok);
      const agentLog = readFileSync(join(dir, '.dev-stack', 'logs', 'agent.log'), 'utf8');
      expect(agentLog).toMatch(/"event":"hook_failed".*"retry":"at the next refresh"/);
      expect(agentLog).toMatch(/openclaw-reload: the gateway refused the connection/);
      const next = devVars(dir).MOLTBOT_GATEWAY_TOKEN!;
      expect(next).not.toBe(inUse);
      // The agent has the new values; the hook has not succeeded for them.
      const delivered = JSON.parse(readFileSync(credentialsFile, 'utf8')) as CredentialsFile;
      expect(delivered.values.GATEWAY_TOKEN).not.toBe(tokenBefore);
      expect(stateFile().credentials_version).toBe(delivered.version);
      expect(stateFile().hook_version).not.toBe(delivered.version);

      // The gateway keeps what it had: its sentinel is still valid, so completions keep working,
      // with the provider key the Worker holds (unchanged by this rotation).
      let from = providerLines(dir).length;
      const stale = await completion(issuer);
      expect(stale.status).toBe(200);
      expect(stale.content).toBe(FIXED_REPLY);
      const staleLines = providerLines(dir).slice(from);
      expect(staleLines.length).toBeGreaterThan(0);
      expect(staleLines.map((l) => l.key)).toEqual(staleLines.map(() => keyFingerprint(providerKey)));

      // Fixed: the agent runs the hook again at its next refresh (here: a nudge) and the new values apply.
      expect(await nudgeAndWaitHook()).toBe('ok');
      expect((await agentState()).hooks.ok).toBe(before.ok + 1);
      expect(stateFile().hook_version).toBe(stateFile().credentials_version);
      from = providerLines(dir).length;
      const fresh = await completion(issuer);
      expect(fresh.status).toBe(200);
      expect(fresh.content).toBe(FIXED_REPLY);
      const freshLines = providerLines(dir).slice(from);
      expect(freshLines.length).toBeGreaterThan(0);
      expect(freshLines.map((l) => l.key)).toEqual(freshLines.map(() => keyFingerprint(providerKey)));
      expect(
        providerLines(dir)
          .filter((l) => !l.ok)
          .map((l) => l.line),
      ).toEqual([]);

      // Neither the new token (nor what the sandbox got from it) nor the wrong password in a log or the config.
      const gatewayToken = (JSON.parse(readFileSync(credentialsFile, 'utf8')) as { values: Record<string, string> }).values.GATEWAY_TOKEN!;
      const texts = [output(), readFileSync(join(home, '.openclaw', 'openclaw.json'), 'utf8'), failed?.stderr ?? '', failed?.stdout ?? ''];
      for (const f of readdirSync(join(dir, '.dev-stack', 'logs'))) texts.push(readFileSync(join(dir, '.dev-stack', 'logs', f), 'utf8'));
      for (const v of [next, gatewayToken, wrong]) expect(texts.filter((t) => t.includes(v)).length).toBe(0);
    },
    HOOK_MS + COMPLETION_MS * 2 + ROTATE_MS + 60_000,
  );
});
